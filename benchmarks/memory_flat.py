"""Benchmark: peak memory of the corpus commands at two corpus sizes (issue 14: "a run over a
corpus larger than memory keeps memory flat").

Corpora: the first ``--small`` records of ``../shared/data/conll2003/train.jsonl``, once (the small
corpus) and cycled (with new ids) to ``--large`` records (default 10 k and 100 k), so the two
differ in size only; ``ner-divscore`` runs on the ``ner-spans`` candidates of the first
``--small-divscore`` records, cycled to ``--large-divscore`` (default 2 k and 20 k: model work per
record is much larger).
Models: a tiny random BERT (masked LM for ner-divscore, an untrained tagger for ner-tag) built
here, so the run needs no real model; memory that grows with the corpus shows just as well.

Each command runs as a fresh process writing to a file (``-o``); its peak RSS (``ru_maxrss``
from ``wait4``) is reported in MiB at both sizes with the ratio large/small. Flat = the ratio
stays near 1 while the corpus grows 10x.

Usage: ``python benchmarks/memory_flat.py [--small 10000 --large 100000] [--threads 1]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def repeat(src: list[bytes], n: int, path: Path, prefix: str) -> Path:
    with open(path, "wb") as fh:
        for i in range(n):
            obj = orjson.loads(src[i % len(src)])
            obj["id"] = f"{prefix}{i}"
            fh.write(orjson.dumps(obj) + b"\n")
    return path


def peak_rss(argv: list[str], env: dict, scratch: Path) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one run of ``argv``, measured by ``/usr/bin/time``: the
    command is started from that small process, so no page of this (large) one is counted."""
    report = scratch / "time.txt"
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(report), *argv], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    kib = int(report.read_text().split()[-1])
    return kib / 1024, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--large", type=int, default=100_000)
    ap.add_argument("--small-divscore", type=int, default=2_000)
    ap.add_argument("--large-divscore", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default=None, help="comma list of commands to run")
    args = ap.parse_args()

    from corpus_fixtures import tiny_bert, tiny_tagger
    from nertools.core.jsonl import read_records
    from nertools.xner.candidates import SpanRules, add_candidates

    bindir = Path(sys.executable).parent
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    src = [line for line in (SHARED / "conll2003" / "train.jsonl").read_bytes().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory(prefix="memory-flat-") as tmp:
        d = Path(tmp)
        model = tiny_bert(d / "bert")
        tagger = tiny_tagger(model, d / "tagger")
        dict_tsv = d / "dict.tsv"
        dict_tsv.write_text("Germany\tLOC\nEuropean Union\tORG\nPeter Blackburn\tPER\nBritish\tMISC\n")
        # candidates of the first 1,000 sentences (ner-spans' rules), then repeated
        cands = []
        for k, rec in enumerate(add_candidates(read_records(str(SHARED / "conll2003" / "train.jsonl")),
                                               SpanRules(max_tokens=30))):
            if k >= 1000:
                break
            rec.pop("spans", None)
            cands.append(orjson.dumps(rec))
        T = ["--threads", str(args.threads), "--device", "cpu"]
        runs = {
            "ner-validate": (lambda p: ["ner-validate", str(p)], "records"),
            "ner-dictmatch": (lambda p: ["ner-dictmatch", "--dict", str(dict_tsv), str(p)], "records"),
            "ner-tag": (lambda p: ["ner-tag", "--model", str(tagger), "-q", *T, str(p)], "records"),
            "ner-divscore": (lambda p: ["ner-divscore", "--model", str(model), "--seed", "PER=Peter Blackburn",
                                        "--seed", "LOC=Germany", "--no-progress", *T, str(p)], "cands"),
        }
        only = set(args.only.split(",")) if args.only else set(runs)
        print(f"{'command':<14} {'records':>9} {'peak RSS MiB':>13} {'seconds':>8}", flush=True)
        table = {}
        for name, (make, kind) in runs.items():
            if name not in only:
                continue
            sizes = (args.small, args.large) if kind == "records" else (args.small_divscore, args.large_divscore)
            # both sizes cycle over the same distinct records (the first `small` ones), so the large
            # corpus differs only in size: a longer sentence would raise the peak by its batch alone
            pool = (src if kind == "records" else cands)[:sizes[0]]
            for n in sizes:
                inp = repeat(pool, n, d / f"{name}-{n}.jsonl", "m")
                argv = make(inp)
                argv[0] = str(bindir / argv[0])
                mib, secs = peak_rss([*argv, "-o", str(d / "out.jsonl")], env, d)
                table[(name, n)] = mib
                print(f"{name:<14} {n:>9} {mib:>13.1f} {secs:>8.1f}", flush=True)
                inp.unlink()
            small, large = (table[(name, s)] for s in sizes)
            print(f"{name:<14} {'ratio':>9} {large / small:>13.3f}   (x{sizes[1] // sizes[0]} records)", flush=True)


if __name__ == "__main__":
    main()
