"""Throughput of the causal-LM X-NER scorer (candidate spans per second), side by side.

On the first N CoNLL-2003 train sentences of 5-30 tokens (official candidates, the paper's
four seeds), runs each configuration in turn in one process and reports spans/s and the ratio
to the reference path (``kv_cache=False``: every seed-side sequence recomputes its left
context). Interleaved repeats (``--repeats``) damp the noise of a shared machine; the best
run of each configuration is reported.

    python benchmarks/xner_causal_speed.py --model smollm2-135m --sentences 20
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT.parent / "shared" / "data" / "conll2003" / "train.jsonl"

CONFIGS = {
    "2way next, kv cache": dict(method="2way", rows="next", kv_cache=True),
    "2way next, no cache": dict(method="2way", rows="next", kv_cache=False),
    "1way next, kv cache": dict(method="1way", rows="next", kv_cache=True),
    "1way next, no cache": dict(method="1way", rows="next", kv_cache=False),
    "2way all, kv cache": dict(method="2way", rows="all", kv_cache=True),
    "2way all, no cache": dict(method="2way", rows="all", kv_cache=False),
    "cosine": dict(method="cosine"),
    "prompt": dict(method="prompt"),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sentences", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names (see CONFIGS)")
    args = ap.parse_args(argv)

    import torch

    from nertools.xner.causal import CausalDivergenceScorer
    from nertools.core.jsonl import read_records
    from nertools.runtime.models import load_lm
    from nertools.xner.seeds import PAPER_SEEDS, Seed
    from nertools.xner.candidates import SpanRules, add_candidates

    torch.set_num_threads(args.threads)
    recs = list(itertools.islice(add_candidates((r for r in read_records(TRAIN) if 5 <= len(r["tokens"]) <= 30),
                                                SpanRules(max_tokens=30)), args.sentences))
    n = sum(len(r["candidates"]) for r in recs)
    lm = load_lm(args.model, device="cpu", dtype="float32")
    seeds = [Seed.make(lab, txt) for lab, txt in PAPER_SEEDS["conll2003"].items()]
    names, buf = [], ""
    for part in args.configs.split(","):  # names contain commas: grow until a known name
        buf = f"{buf},{part}" if buf else part
        if buf.strip() in CONFIGS:
            names.append(buf.strip())
            buf = ""
    if buf.strip():
        sys.exit(f"unknown configuration {buf.strip()!r}; known: {'; '.join(CONFIGS)}")
    best: dict[str, float] = {}
    for _ in range(args.repeats):
        for name in names:
            sc = CausalDivergenceScorer(lm, seeds, progress=False, **CONFIGS[name])
            t = time.perf_counter()
            for _rec in sc.score_records(copy.deepcopy(recs)):
                pass
            rate = n / (time.perf_counter() - t)
            best[name] = max(best.get(name, 0.0), rate)
            print(f"{name}: {rate:.2f} spans/s", file=sys.stderr, flush=True)
    print(f"\n{args.model}, {len(recs)} sentences, {n} candidate spans, 4 labels, "
          f"{args.threads} threads, best of {args.repeats}\n")
    print("| configuration | spans/s | vs. no cache |")
    print("|---|---|---|")
    for name in names:
        base = name.replace("kv cache", "no cache")
        ratio = f"{best[name] / best[base]:.2f}x" if base in best and base != name else ""
        print(f"| {name} | {best[name]:.2f} | {ratio} |")
    out = ROOT / "benchmarks" / "out" / f"xner_causal_speed-{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "sentences": len(recs), "spans": n,
                               "threads": args.threads, "spans_per_s": best}, indent=1))


if __name__ == "__main__":
    main()
