#!/usr/bin/env python3
"""Throughput of ner-convert (conll -> jsonl -> conll) and ner-eval (gold vs gold).

Runs the real console scripts on ../shared/data/conll2003/train.* (or --data), each
--repeat times, and prints wall seconds (min and median) and tokens per second. For
ner-eval it also times the baseline, seqeval's classification_report(mode="strict",
scheme=IOB2) on the same data in one process (tags already in memory, which favours it),
and prints the ratio. The machine is shared: numbers are noisy, compare within one run.

    python benchmarks/foundation_throughput.py [--repeat 3] [--data DIR]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "conll2003"


def timed(cmd: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return times


def seqeval_baseline(jsonl: Path, repeat: int) -> list[float]:
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    sys.path.insert(0, str(ROOT))
    from nertools.core.jsonl import read_records
    from nertools.core.tags import encode

    tags = [encode(r["spans"], len(r["tokens"])) for r in read_records(jsonl)]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            classification_report(tags, tags, mode="strict", scheme=IOB2, digits=4)
        times.append(time.perf_counter() - t)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args()
    conll, gold = args.data / "train.conll", args.data / "train.jsonl"
    tokens = sum(1 for line in open(conll, "rb") if line.strip())
    print(f"data: {conll} ({tokens} tokens), repeat {args.repeat}")
    with tempfile.TemporaryDirectory() as tmp:
        js, back = Path(tmp) / "train.jsonl", Path(tmp) / "train.conll"
        runs = {
            "ner-convert conll->jsonl": ["ner-convert", "--from", "conll", "--to", "jsonl",
                                         str(conll), "-o", str(js)],
            "ner-convert jsonl->conll": ["ner-convert", "--from", "jsonl", "--to", "conll",
                                         str(js), "-o", str(back)],
            "ner-eval gold vs gold": ["ner-eval", "--gold", str(gold), "--pred", str(gold),
                                      "--json"],
        }
        results = {}
        for name, cmd in runs.items():
            times = timed(cmd, args.repeat)
            results[name] = times
            best, med = min(times), statistics.median(times)
            print(f"{name:28s} min {best:6.2f} s  median {med:6.2f} s  "
                  f"{tokens / best:9.0f} tokens/s   $ {' '.join(cmd)}")
        assert back.read_bytes() == conll.read_bytes(), "round trip is not byte-identical"
    base = seqeval_baseline(gold, args.repeat)
    ours = min(results["ner-eval gold vs gold"])
    print(f"{'seqeval report (in-process)':28s} min {min(base):6.2f} s  median "
          f"{statistics.median(base):6.2f} s  {tokens / min(base):9.0f} tokens/s")
    print(f"ner-eval (whole command, reading JSONL twice) / seqeval report: "
          f"{ours / min(base):.2f}x the time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
