"""Benchmark: ner-dictmatch speed (issue 5's bar: >= 1 M tokens/s on one core).

Corpus: ``../shared/data/conll2003/train`` repeated until it has at least ``--min-tokens``
tokens (default 5 M). Dictionary: every gold entity string of CoNLL train plus synthetic
phrases (1-4 random capitalised corpus words) up to ``--entries`` (default 100 k).

Reported, side by side in one run, pinned to one CPU core:

1. matching throughput of :class:`nertools.gener.dictmatch.DictionaryMatcher.match_words` on the
   token strings (the library hot path);
2. the same for a naive matcher (at each token try every phrase length from the longest down,
   joining and lower-casing the tokens each time) on a slice of the corpus, and the ratio;
3. end-to-end throughput of the real ``ner-dictmatch`` command (JSONL parse, fast-path
   validation, matching, JSON output) with the corpus piped in, the same with ``--strict``
   (full :func:`nertools.core.record.normalize_record` validation of every record), and with
   the corpus in the compact record form in and out (``--compact``; ``benchmarks/io_speed.py``
   compares the two forms run by run);
4. loading a 1 M-entry dictionary: seconds and peak RSS of a fresh process.

Usage: ``python benchmarks/dictmatch_speed.py [--min-tokens 5000000] [--entries 100000]``
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from nertools.gener.dictionary import Dictionary  # noqa: E402
from nertools.gener.dictmatch import DictionaryMatcher  # noqa: E402


def pin_one_core() -> str:
    try:
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):
        return "not pinned (no sched_setaffinity)"


def calibrate() -> str:
    """How busy the machine is: load average and the time of a fixed pure-Python loop (on an
    idle core of a current x86 machine this loop takes roughly 40-60 ns per iteration)."""
    d: dict[int, int] = {}
    t = time.perf_counter()
    for i in range(2_000_000):
        d.get(i)
    ns = (time.perf_counter() - t) / 2_000_000 * 1e9
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    return f"load average {load} on {os.cpu_count()} CPUs; calibration loop {ns:.0f} ns/iteration"


def build_dictionary(path: Path, train: Path, entries: int, seed: int = 0,
                     vocabulary: str = "proper") -> int:
    """Real CoNLL train entities + synthetic phrases of 1-4 random words, ``entries`` lines.

    ``vocabulary="proper"``: the words are proper-noun-like (seen capitalised in the corpus
    other than sentence-initially, not stop words) -- what gazetteer entries are made of.
    ``"all"``: any corpus word, capitalised (adversarial: "The Of Said" makes every "the"
    the start of a possible match)."""
    from nertools.gener.phrase_rules import STOP_WORDS

    rng = random.Random(seed)
    real: dict[tuple[str, str], int] = {}
    vocab = set()
    for line in train.open("rb"):
        r = orjson.loads(line)
        toks = [t["text"] for t in r["tokens"]]
        for k, w in enumerate(toks):
            if not w[:1].isalpha():
                continue
            if vocabulary == "all":
                vocab.add(w.capitalize())
            elif k > 0 and w[:1].isupper() and not w.isupper() and w.lower() not in STOP_WORDS:
                vocab.add(w)
        for s in r["spans"]:
            key = (r["text"][s["start"]:s["end"]], s["label"])
            real[key] = real.get(key, 0) + 1
    vocab = sorted(vocab)
    labels = ["PER", "LOC", "ORG", "MISC"]
    lines = [f"{p}\t{lab}\t{c}" for (p, lab), c in real.items()]
    seen = {p.lower() for p, _ in real}
    while len(lines) < entries:
        p = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 4)))
        if p.lower() in seen:
            continue
        seen.add(p.lower())
        lines.append(f"{p}\t{rng.choice(labels)}\t{rng.randint(1, 5)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(real)


def time_matcher(dictionary, sentences, reps) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, matches) for ``reps`` passes."""
    m = DictionaryMatcher(dictionary)
    n_matches = 0
    t, c = time.perf_counter(), time.process_time()
    for _ in range(reps):
        for ws in sentences:
            n_matches += len(m.match_words(ws))
    return time.perf_counter() - t, time.process_time() - c, n_matches


def naive_match(words, entries: dict[str, str], max_len: int):
    """Baseline: at each start, try lengths max_len..1, re-joining lower-cased tokens."""
    out = []
    n = len(words)
    i = 0
    while i < n:
        for L in range(min(max_len, n - i), 0, -1):
            key = " ".join(w.lower() for w in words[i:i + L])
            lab = entries.get(key)
            if lab is not None:
                out.append((i, i + L - 1, lab))
                i += L
                break
        else:
            i += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min-tokens", type=int, default=5_000_000)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--naive-tokens", type=int, default=1_000_000,
                    help="tokens the (slow) naive baseline runs on")
    ap.add_argument("--big-entries", type=int, default=1_000_000)
    ap.add_argument("--skip-e2e", action="store_true", help="leave out the end-to-end runs")
    args = ap.parse_args()
    train = SHARED / "conll2003" / "train.jsonl"
    if not train.exists():
        sys.exit(f"missing {train}")
    print(f"# ner-dictmatch speed ({pin_one_core()}; python {sys.version.split()[0]})")
    print(f"machine load: {calibrate()}")
    tmp = Path(tempfile.mkdtemp(prefix="dictmatch-bench-"))
    sentences = [[t["text"] for t in orjson.loads(l)["tokens"]] for l in train.open("rb")]
    per_pass = sum(len(s) for s in sentences)
    reps = -(-args.min_tokens // per_pass)
    total = per_pass * reps
    print(f"corpus: conll2003/train {len(sentences)} sentences, {per_pass} tokens x {reps} "
          f"= {total:,} tokens")

    dicts = {}
    for vocab in ("proper", "all"):
        path = tmp / f"dict100k-{vocab}.tsv"
        n_real = build_dictionary(path, train, args.entries, vocabulary=vocab)
        t = time.perf_counter()
        dicts[vocab] = (path, Dictionary.load(path))
        print(f"dictionary ({vocab} vocabulary): {args.entries} lines ({n_real} real CoNLL train "
              f"entities), {len(dicts[vocab][1])} phrases after the rules, loaded in "
              f"{time.perf_counter() - t:.2f}s")
    dict_path, d = dicts["proper"]

    # 1. library matcher on token strings (wall clock and this process's CPU time)
    rows = []
    for vocab in ("proper", "all"):
        wall, cpu, n_matches = time_matcher(dicts[vocab][1], sentences, reps)
        rows.append((vocab, wall, cpu, n_matches // reps))

    # 2. naive baseline on a slice, same dictionary
    entries = {k: lab for k, lab, _ in d.items()}
    max_len = max(k.count(" ") + 1 for k in entries)
    naive_sents = []
    k = 0
    while k < args.naive_tokens:
        for ws in sentences:
            naive_sents.append(ws)
            k += len(ws)
            if k >= args.naive_tokens:
                break
    t, c = time.perf_counter(), time.process_time()
    for ws in naive_sents:
        naive_match(ws, entries, max_len)
    naive_wall, naive_cpu = time.perf_counter() - t, time.process_time() - c

    print("\n| matcher (100k-entry dictionary) | tokens | wall s | tokens/s (wall) | CPU s | "
          "tokens/s (CPU) | matches/pass | vs naive (CPU) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    naive_tps = k / naive_cpu
    for vocab, wall, cpu, per in rows:
        print(f"| nertools `DictionaryMatcher.match_words`, {vocab}-vocabulary synthetic phrases | "
              f"{total:,} | {wall:.2f} | {total / wall:,.0f} | {cpu:.2f} | {total / cpu:,.0f} | "
              f"{per:,} | {(total / cpu) / naive_tps:.1f}x |" if vocab == "proper" else
              f"| nertools `DictionaryMatcher.match_words`, {vocab}-vocabulary synthetic phrases "
              f"(adversarial) | {total:,} | {wall:.2f} | {total / wall:,.0f} | {cpu:.2f} | "
              f"{total / cpu:,.0f} | {per:,} | |")
    print(f"| naive: every length <= {max_len} at each token, proper-vocabulary dictionary | {k:,} | "
          f"{naive_wall:.2f} | {k / naive_wall:,.0f} | {naive_cpu:.2f} | {naive_tps:,.0f} | | 1.0x |")

    # 3. end-to-end through the console script (one process; it is single-threaded)
    print("\n| end-to-end `ner-dictmatch` (stdin JSONL -> stdout JSONL; proper-vocabulary dictionary) "
          "| tokens | wall s | tokens/s (wall) | CPU s (command) | tokens/s (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    e2e_reps = reps
    notes: list[str] = []
    from nertools.core.record import to_compact

    canonical_data = train.read_bytes()
    compact_data = b"".join(orjson.dumps(to_compact(orjson.loads(l))) + b"\n"
                            for l in canonical_data.splitlines())
    for label, extra in (() if args.skip_e2e else
                         (("fast path (default)", []), ("--strict (full validation)", ["--strict"]),
                          ("compact records in and out (--compact)", ["--compact"]))):
        cmd = ["ner-dictmatch", "--dict", str(dict_path), *extra]
        t = time.perf_counter()
        ch0 = os.times()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        data = compact_data if "--compact" in extra else canonical_data
        for _ in range(e2e_reps):
            proc.stdin.write(data)
        proc.stdin.close()
        err = proc.stderr.read().decode()
        proc.wait()
        dt = time.perf_counter() - t
        ch1 = os.times()
        cpu = (ch1.children_user - ch0.children_user) + (ch1.children_system - ch0.children_system)
        if proc.returncode != 0:
            sys.exit(f"ner-dictmatch failed: {err}")
        n_tok = per_pass * e2e_reps
        print(f"| {label} | {n_tok:,} | {dt:.2f} | {n_tok / dt:,.0f} | {cpu:.2f} | {n_tok / cpu:,.0f} |")
        notes.extend(f"{label}: {line}" for line in err.strip().splitlines())

    print("\n(the input keeps CoNLL's gold spans, so the existing-span checks run too; the command's "
          "time includes loading the dictionary)")
    for line in notes:
        print(f"    {line}")

    # 4. 1 M-entry dictionary: load time and peak RSS in a fresh process
    big = tmp / "dict1m.tsv"
    rng = random.Random(1)
    vocab = sorted({w for ws in sentences for w in ws if w[:1].isalpha()})
    with big.open("w", encoding="utf-8") as fh:
        seen = set()
        while len(seen) < args.big_entries:
            p = " ".join(rng.choice(vocab).capitalize() for _ in range(rng.randint(1, 4)))
            if p in seen:
                continue
            seen.add(p)
            fh.write(f"{p}\t{rng.choice(['PER', 'LOC', 'ORG', 'MISC'])}\t{rng.randint(1, 9)}\n")
    del seen
    code = (
        "import sys, time\n"
        "def hwm():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1]) // 1024\n"
        "sys.path.insert(0, %r)\n"
        "from nertools.gener.dictionary import Dictionary\n"
        "r0 = hwm()\n"
        "t, c = time.perf_counter(), time.process_time(); d = Dictionary.load(%r)\n"
        "dt, dc = time.perf_counter() - t, time.process_time() - c\n"
        "print(len(d), len(d._index), round(dt, 2), round(dc, 2), hwm(), r0)\n") % (str(ROOT), str(big))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n, keys, secs, cpu_s, rss, rss0 = out.stdout.split()
    print(f"\n1 M-entry dictionary ({big.stat().st_size / 1e6:.0f} MB TSV, 1-4 words per phrase): "
          f"{int(n):,} phrases ({int(keys):,} index keys with prefixes) loaded in {secs}s wall, "
          f"{cpu_s}s CPU; peak RSS {rss} MiB (of which {rss0} MiB before loading: interpreter "
          f"and imports)")
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()
    print(f"\nmachine load at the end: {calibrate()}")


if __name__ == "__main__":
    main()
