#!/usr/bin/env python3
"""Batched vs one-prompt-at-a-time generation of ner-annotate's local backend: the same model,
the same prompts, the same greedy settings; prints sentences/s for each and the ratio.

    PYTHONPATH=$PWD python benchmarks/annotate_throughput.py [--n 16] [--batch-size 8]
        [--model smollm2-135m] [--max-new-tokens 32] [--threads 2] [--prompt instructmine]

Both passes see identical prompts (the first N CoNLL-2003 dev sentences); the answers of the two
passes are compared and the number that differ is printed (left padding should change none, up
to float rounding).

Measured 2026-12-02 (--n 8 --batch-size 8 --max-new-tokens 24 --threads 1, SmolLM2-135M, CPU under a
load of 30-70 from other jobs): one-at-a-time 0.073 sentences/s, batched 0.246 sentences/s, ratio
3.35x, 0/8 answers differ.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from nertools.annotate import prompts as P
from nertools.annotate.backends import LocalBackend
from nertools.runtime.models import load_lm
from nertools.xner.seeds import PAPER_SEEDS, Seed

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003" / "dev.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", choices=["instructmine", "nuner"], default="instructmine")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(DEV) as fh:
        texts = [json.loads(line)["text"] for _, line in zip(range(a.n), fh)]
    if a.prompt == "instructmine":
        tmpl = P.instructmine_prompt([Seed.make(k, v) for k, v in PAPER_SEEDS["conll2003"].items()])
    else:
        tmpl = P.nuner_prompt()
    msgs = [tmpl.render(t) for t in texts]
    lm = load_lm(a.model, device=a.device)
    results = {}
    for name, bs in (("one-at-a-time", 1), (f"batched({a.batch_size})", a.batch_size)):
        b = LocalBackend(lm, max_new_tokens=a.max_new_tokens, batch_size=bs, batch_tokens=1 << 20)
        b.run([(0, msgs[0])]).__next__()  # warm-up
        b.meter.completion_tokens = 0
        t = time.perf_counter()
        answers = [ans.content for _, ans in b.run(enumerate(msgs))]
        secs = time.perf_counter() - t
        results[name] = (secs, answers, b.meter.completion_tokens)
        print(f"{name:>16}: {a.n} sentences in {secs:.1f}s = {a.n / secs:.3f} sentences/s, "
              f"{b.meter.completion_tokens} new tokens", flush=True)
    (s1, ans1, _), (sb, ansb, _) = results.values()
    differ = sum(x != y for x, y in zip(ans1, ansb))
    print(f"ratio batched / one-at-a-time: {s1 / sb:.2f}x  (model {a.model}, prompt {a.prompt}, "
          f"max_new_tokens {a.max_new_tokens}, threads {a.threads}, device {a.device}); "
          f"answers that differ: {differ}/{a.n}")


if __name__ == "__main__":
    main()
