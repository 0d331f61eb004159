#!/usr/bin/env python3
"""Batched vs one-prompt-at-a-time generation of ner-annotate's local backend, and batched with
the shared-prefix key-value cache (the default) vs without: the same model, the same prompts,
the same greedy settings; prints sentences/s for each pass and the ratios.

    PYTHONPATH=$PWD python benchmarks/annotate_throughput.py [--n 16] [--batch-size 8]
        [--model smollm2-135m] [--max-new-tokens 32] [--threads 2] [--prompt instructmine]
        [--passes one,batched,prefix] [--repeat 1]

Passes: ``one`` (batch 1, no prefix cache), ``batched`` (--batch-size, no prefix cache),
``prefix`` (--batch-size with the prefix cache). All see identical prompts (the first N
CoNLL-2003 dev sentences); answers are compared with the first pass's and the number that
differ is printed (left padding and the cache should change none, up to float rounding).
--repeat R runs the passes R times in alternation (ratios per round, then their median).

Measured 2026-12-02 (--n 8 --batch-size 8 --max-new-tokens 24 --threads 1, SmolLM2-135M, CPU under a
load of 30-70 from other jobs): one-at-a-time 0.073 sentences/s, batched 0.246 sentences/s, ratio
3.35x, 0/8 answers differ.
"""
from __future__ import annotations

import argparse
import json
import statistics
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
    ap.add_argument("--passes", default="one,batched,prefix")
    ap.add_argument("--repeat", type=int, default=1)
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
    setups = {"one": (1, False), "batched": (a.batch_size, False), "prefix": (a.batch_size, True)}
    passes = a.passes.split(",")
    rounds = []
    for rnd in range(a.repeat):
        results = {}
        for name in passes:
            bs, cache = setups[name]
            b = LocalBackend(lm, max_new_tokens=a.max_new_tokens, batch_size=bs, batch_tokens=1 << 20,
                             prefix_cache=cache)
            b.run([(0, msgs[0])]).__next__()  # warm-up
            b.meter.completion_tokens = 0
            t = time.perf_counter()
            answers = [ans.content for _, ans in b.run(enumerate(msgs))]
            secs = time.perf_counter() - t
            results[name] = (secs, answers)
            print(f"round {rnd + 1} {name:>8} (batch {bs}, prefix cache {'on' if cache else 'off'}): {a.n} sentences "
                  f"in {secs:.1f}s = {a.n / secs:.3f} sentences/s, {b.meter.completion_tokens} new tokens, "
                  f"{b.prefix_tokens_reused} prompt tokens from the prefix cache", flush=True)
        first = results[passes[0]][1]
        for name in passes[1:]:
            differ = sum(x != y for x, y in zip(first, results[name][1]))
            print(f"round {rnd + 1} {name}: answers that differ from {passes[0]}'s: {differ}/{a.n}")
        rounds.append({n: r[0] for n, r in results.items()})
    pairs = [("batched", "one"), ("prefix", "batched"), ("prefix", "one")]
    for fast, slow in pairs:
        if fast in passes and slow in passes:
            ratios = sorted(r[slow] / r[fast] for r in rounds)
            print(f"ratio {fast} / {slow}: median {statistics.median(ratios):.2f}x over {len(ratios)} rounds "
                  f"(min {ratios[0]:.2f}, max {ratios[-1]:.2f}; model {a.model}, prompt {a.prompt}, "
                  f"max_new_tokens {a.max_new_tokens}, threads {a.threads}, device {a.device})")


if __name__ == "__main__":
    main()
