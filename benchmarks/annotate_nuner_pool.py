#!/usr/bin/env python3
"""The unlabelled sentence pool for the NuNER statistics (issue #11) and the bi-encoder data (#12).

    python benchmarks/annotate_nuner_pool.py [--lines 3000] [--seed 0] [--chunk 250] OUTDIR

Takes the first --lines records of each of shared/data/{conll2003,wnut17,mit_restaurant,mit_movie}/
train.jsonl, shuffles each data set's records with random.Random(seed), interleaves the data sets
round-robin, strips `spans` (the gold annotation) and writes OUTDIR/pool.jsonl plus
OUTDIR/input-NNN.jsonl chunks of --chunk records (the inputs of `ner-annotate --prompt nuner`).
Records whose text is empty or a -DOCSTART- marker are skipped.
"""
from __future__ import annotations

import argparse
import json
import random
from itertools import zip_longest
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = ("conll2003", "wnut17", "mit_restaurant", "mit_movie")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--lines", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=250)
    a = ap.parse_args()
    per_set = []
    for name in SETS:
        recs = []
        with open(DATA / name / "train.jsonl") as fh:
            for i, line in enumerate(fh):
                if i >= a.lines:
                    break
                r = json.loads(line)
                if not r["text"].strip() or r["text"].startswith("-DOCSTART-"):
                    continue
                r.pop("spans", None)
                recs.append(r)
        random.Random(a.seed).shuffle(recs)
        per_set.append(recs)
    pool = [r for group in zip_longest(*per_set) for r in group if r is not None]
    a.outdir.mkdir(parents=True, exist_ok=True)
    with open(a.outdir / "pool.jsonl", "w") as fh:
        for r in pool:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    for c in range(0, len(pool), a.chunk):
        with open(a.outdir / f"input-{c // a.chunk:03d}.jsonl", "w") as fh:
            for r in pool[c:c + a.chunk]:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(pool)} records ({', '.join(f'{n} {len(s)}' for n, s in zip(SETS, per_set))}) "
          f"-> {a.outdir}, {(len(pool) + a.chunk - 1) // a.chunk} chunks of {a.chunk}")


if __name__ == "__main__":
    main()
