"""Benchmark: record I/O at corpus scale, canonical against compact form, side by side.

Corpus: ``../shared/data/conll2003/train.jsonl`` (14,041 sentences, 203,621 tokens) repeated
``--copies`` times, written once in the canonical form (as shipped) and once in the compact
form (nertools-format(5), COMPACT; :func:`nertools.core.record.to_compact`). Dictionary: the
100 k-entry dictionary of ``benchmarks/dictmatch_speed.py`` (every CoNLL train entity plus
synthetic proper-noun phrases).

Everything runs pinned to one CPU core; the two forms alternate run by run (A B A B ...), and
each figure is the median over ``--runs`` runs of the process's CPU time (user + system), so a
machine whose speed drifts hurts both forms alike; the ratio is taken pair by pair.

1. parse only: ``read_jsonl`` (``orjson.loads`` of every line) -- what a command pays before
   it looks at a record;
2. read: ``read_records`` (parse + validation into canonical record dicts with token objects)
   -- what every command but ``ner-dictmatch`` does;
3. write: ``RecordWriter`` of the canonical records in each form (to a file);
4. end to end: the real ``ner-dictmatch`` command, a file in and ``-o`` a file out, canonical in
   and out against compact in and out (``--compact``), the whole process (interpreter start,
   imports, dictionary load, matching, output): tokens per CPU second of the process, and per
   CPU second of what is left after the fixed cost (the same command on a one-record input,
   run beside each big run: start-up, imports, dictionary load);
5. where the compact loop's time goes, stage by stage, in process (printed before 4).

With ``--baseline CHECKOUT`` (e.g. ``../main``) the canonical read path of another checkout
is timed against this tree's, in the same alternating way.

Usage: ``python benchmarks/io_speed.py [--copies 25] [--runs 5] [--entries 100000] [--baseline ../main]``
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dictmatch_speed import build_dictionary, calibrate, pin_one_core  # noqa: E402
from nertools.core.jsonl import RecordWriter, read_jsonl, read_records  # noqa: E402
from nertools.core.record import to_compact  # noqa: E402


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def run_command(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(CPU seconds of the child, wall seconds, stderr) of one run of ``cmd``."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {err}")
    return usage.ru_utime + usage.ru_stime, wall, err


def median_pairs(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Median of a, of b, and of the pairwise ratios a/b."""
    return statistics.median(a), statistics.median(b), statistics.median(x / y for x, y in zip(a, b))


def stages(dict_path: Path, compact_path: Path, n_tokens: int, runs: int) -> None:
    """Where the time of ``ner-dictmatch --compact`` goes, in process: each stage adds one
    step of the command's loop to the one before (median CPU time of ``runs``)."""
    from nertools.core.jsonl import dumps
    from nertools.gener.dictionary import Dictionary
    from nertools.gener.dictmatch import DictionaryMatcher, fast_compact

    d = Dictionary.load(dict_path)
    lines = compact_path.read_bytes().splitlines()
    m = DictionaryMatcher(d)
    for line in lines[:20000]:  # warm the token caches, as a long run has them
        m.match_words(orjson.loads(line)["toks"])
    loads = orjson.loads

    def parse():
        for line in lines:
            loads(line)

    def check():
        for line in lines:
            fast_compact(loads(line), "1")

    def match():
        for line in lines:
            m.match_words(fast_compact(loads(line), "1"))

    def annotate():
        for line in lines:
            o = loads(line)
            m.annotate_compact(o, fast_compact(o, "1"))

    def write():
        for line in lines:
            o = loads(line)
            dumps(m.annotate_compact(o, fast_compact(o, "1")))

    steps = [("orjson.loads", parse), ("+ fast_compact (structure checks)", check),
             ("+ match_words (dictionary look-ups)", match),
             ("+ rest of annotate_compact (rules 8-10, overlaps, spans)", annotate),
             ("+ orjson.dumps of the result", write)]
    times: dict[str, list[float]] = {name: [] for name, _ in steps}
    for _ in range(runs):
        for name, fn in steps:
            c = cpu()
            fn()
            times[name].append(cpu() - c)
    print(f"\n| where `ner-dictmatch --compact` spends its loop, in process, {n_tokens:,} tokens | "
          f"cumulative ns/token (CPU) | this step ns/token |")
    print("|---|---:|---:|")
    prev = 0.0
    for name, _ in steps:
        ns = statistics.median(times[name]) / n_tokens * 1e9
        print(f"| {name} | {ns:.0f} | {ns - prev:.0f} |")
        prev = ns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=25, help="copies of CoNLL-2003 train (25 = 5.09 M tokens)")
    ap.add_argument("--read-copies", type=int, default=3,
                    help="copies for the in-process read/write figures (sections 1-3)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--baseline", metavar="CHECKOUT", default=None,
                    help="another nertools checkout (e.g. the main branch): also time its "
                         "normalize_record against this tree's on the canonical records")
    args = ap.parse_args()
    train = SHARED / "conll2003" / "train.jsonl"
    if not train.exists():
        sys.exit(f"missing {train}")
    print(f"# record I/O, canonical vs compact ({pin_one_core()}; python {sys.version.split()[0]})")
    print(f"machine load: {calibrate()}")
    tmp = Path(tempfile.mkdtemp(prefix="io-bench-"))
    data = train.read_bytes()
    lines = data.splitlines()
    per_copy = sum(len(orjson.loads(l)["tokens"]) for l in lines)
    compact = b"".join(orjson.dumps(to_compact(orjson.loads(l))) + b"\n" for l in lines)
    files = {}
    for copies, tag in ((args.read_copies, "small"), (args.copies, "big")):
        for form, blob in (("canonical", data), ("compact", compact)):
            path = tmp / f"{tag}-{form}.jsonl"
            with path.open("wb") as fh:
                for _ in range(copies):
                    fh.write(blob)
            files[tag, form] = path
    print(f"corpus: conll2003/train, {len(lines):,} sentences, {per_copy:,} tokens per copy; "
          f"{len(data) / per_copy:.1f} bytes/token canonical, {len(compact) / per_copy:.1f} compact "
          f"({len(data) / len(compact):.2f}x smaller)")

    # ---------------------------------------------------------------- 1-3: in process
    n_small = per_copy * args.read_copies
    figures: dict[str, dict[str, list[float]]] = {}

    def timed(name: str, form: str, fn) -> None:
        c = cpu()
        fn()
        figures.setdefault(name, {}).setdefault(form, []).append(cpu() - c)

    def parse(path):
        for _ in read_jsonl(path):
            pass

    def read(path):
        for _ in read_records(path):
            pass

    records = list(read_records(files["small", "canonical"]))
    out = tmp / "out.jsonl"

    def write(form):
        with RecordWriter(out, form=form) as w:
            for r in records:
                w.write(r)

    for _ in range(args.runs):
        for form in ("canonical", "compact"):
            timed("parse only (read_jsonl: orjson.loads per line)", form,
                  lambda: parse(files["small", form]))
            timed("read (read_records: parse + validate into canonical records)", form,
                  lambda: read(files["small", form]))
            timed("write (RecordWriter of canonical records)", form, lambda: write(form))
    del records
    if args.baseline:
        import importlib.util

        from nertools.core.record import normalize_record

        spec = importlib.util.spec_from_file_location(
            "baseline_record", Path(args.baseline) / "nertools" / "core" / "record.py")
        base_mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(base_mod)
        canon_lines = files["small", "canonical"].read_bytes().splitlines()

        def norm_all(fn):
            for line in canon_lines:
                fn(orjson.loads(line))

        for _ in range(args.runs):
            for form, fn in (("canonical", base_mod.normalize_record), ("compact", normalize_record)):
                timed("canonical records: orjson.loads + normalize_record, baseline (left) vs this tree (right)",
                      form, lambda: norm_all(fn))
        del canon_lines
    print(f"\n| in process, one core, {n_small:,} tokens, median of {args.runs} | canonical tokens/CPU-s "
          f"| compact tokens/CPU-s | compact / canonical |")
    print("|---|---:|---:|---:|")
    for name, by_form in figures.items():
        a, b, r = median_pairs(by_form["canonical"], by_form["compact"])
        print(f"| {name} | {n_small / a:,.0f} | {n_small / b:,.0f} | {r:.2f}x |")

    # ---------------------------------------------------------------- 4: ner-dictmatch
    dict_path = tmp / "dict100k.tsv"
    build_dictionary(dict_path, train, args.entries)
    stages(dict_path, files["small", "compact"], n_small, args.runs)
    if not args.skip_e2e:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        exe = Path(sys.executable).with_name("ner-dictmatch")
        base = [str(exe) if exe.exists() else "ner-dictmatch", "--dict", str(dict_path)]
        runs = {"canonical": [], "compact": []}
        fixed = {"canonical": [], "compact": []}
        n_big = per_copy * args.copies
        one = {}
        for form in ("canonical", "compact"):  # start-up + imports + dictionary load alone
            one[form] = tmp / f"one-{form}.jsonl"
            one[form].write_bytes(files["small", form].read_bytes().split(b"\n", 1)[0] + b"\n")
        for _ in range(args.runs):
            for form in ("canonical", "compact"):
                extra = ["--compact"] if form == "compact" else []
                c, w, err = run_command(base + extra + [str(files["big", form]), "-o", str(out)], env)
                m = re.search(r"\(([\d,]+) tokens, ([\d,]+) tokens/s\)", err)
                if not m or int(m.group(1).replace(",", "")) != n_big:
                    sys.exit(f"unexpected ner-dictmatch summary: {err}")
                runs[form].append((c, w))
                fixed[form].append(run_command(base + extra + [str(one[form]), "-o", str(out)], env)[0])
        print(f"\n| `ner-dictmatch`, {n_big:,} tokens, file in, -o file out, median of {args.runs} "
              f"| CPU s | tokens/CPU-s (whole process) | wall s | fixed CPU s (1-record input) "
              f"| tokens/CPU-s (the rest: reading, matching, writing) |")
        print("|---|---:|---:|---:|---:|---:|")
        loop = {}
        for form in ("canonical", "compact"):
            c = statistics.median(r[0] for r in runs[form])
            w = statistics.median(r[1] for r in runs[form])
            f0 = statistics.median(fixed[form])
            loop[form] = [r[0] - f for r, f in zip(runs[form], fixed[form])]
            label = "canonical in and out" if form == "canonical" else "compact in and out (`--compact`)"
            print(f"| {label} | {c:.2f} | {n_big / c:,.0f} | {w:.2f} | {f0:.2f} | "
                  f"{n_big / statistics.median(loop[form]):,.0f} |")
        ratio_cpu = statistics.median(a[0] / b[0] for a, b in zip(runs["canonical"], runs["compact"]))
        ratio_loop = statistics.median(a / b for a, b in zip(loop["canonical"], loop["compact"]))
        print(f"\ncompact is {ratio_cpu:.2f}x the canonical form's speed for the whole process "
              f"(CPU time, median of pairwise ratios), {ratio_loop:.2f}x without the fixed cost")
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()
    print(f"\nmachine load at the end: {calibrate()}")


if __name__ == "__main__":
    main()
