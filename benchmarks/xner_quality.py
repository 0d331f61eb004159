"""X-NER span-mining quality with causal LMs: precision@K per label on CoNLL-2003 train.

A fixed random sample of ``../shared/data/conll2003/train.jsonl`` sentences (<= 30 tokens,
the paper's cap; ``random.Random(seed)``) gets the official candidates (``nertools.xner.candidates``)
and is scored against the paper's seeds (PER "Masaki Yoshida", LOC "Singapore", ORG "Boston
Celtics", MISC "Japanese"). K is the same fraction of candidates as the paper's P@1000 on the
full train set: ``K = round(1000 * sample candidates / full-train candidates)`` (~0.9%).

One scoring pass (``rows="all"`` with per-row details at every ``--temperatures``) yields
every divergence variant: 1-way / 2-way x rows "next" (only the position right after the
span, + template rows) / "all" (every right-context position) x temperature; further passes
give cosine and prompt. Each variant's ranking is evaluated

* ``raw``: every candidate ranked by its score for the label;
* ``nms``: per sentence, a candidate overlapping a better-scored one (same label) is dropped;
* ``fix``: the name-boundary rule of ``nertools.xner.pseudo`` for PER, then ``nms``;
* ``fix*``: the boundary rule for every label, then ``nms``;
* ``pseudo``: what ``ner-pseudo --top-k K --normalize none`` emits (best label only, overlaps
  resolved across labels, boundary rule for PER); ``pseudo-rank``: the same with
  ``--normalize rank`` (the default); ``pseudo-rank-all``: also ``--boundary-fix`` for every label.

A pick is correct when a gold span of that label has exactly its boundaries.

    python benchmarks/xner_quality.py --model smollm2-135m --sentences 453
    python benchmarks/xner_quality.py --model gemma-3-270m --sentences 267

Writes ``benchmarks/out/xner_quality-<model>-<n>.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TRAIN = SHARED / "data" / "conll2003" / "train.jsonl"
LABELS = ("PER", "LOC", "ORG", "MISC")
MODES = ("raw", "nms", "fix", "fix*", "pseudo", "pseudo-rank", "pseudo-rank-all")


def load_sample(n: int, seed: int, max_tokens: int = 30):
    from nertools.core.jsonl import read_records
    from nertools.xner.candidates import SpanRules, add_candidates

    rules = SpanRules(max_tokens=max_tokens)
    records = list(add_candidates(read_records(TRAIN), rules))
    total = sum(len(r["candidates"]) for r in records)
    pool = [r for r in records if len(r["tokens"]) <= max_tokens]
    sample = random.Random(seed).sample(pool, n)
    return sample, total


def gold_set(records):
    gold = set()
    for ri, r in enumerate(records):
        for s in r["spans"]:
            gold.add((ri, s["token_start"], s["token_end"], s["label"]))
    return gold


def precision_at_k(records, scores, gold, k, mode):
    """scores: list per record of list per candidate of {label: score}."""
    from nertools.xner.pseudo import LabelNormalizer, Selection, demote_partial_names, resolve_overlaps, sentence_picks

    out = {}
    if mode.startswith("pseudo"):
        norm = "none" if mode == "pseudo" else "rank"
        boundary = LABELS if mode == "pseudo-rank-all" else ("PER",)
        scored = [dict(r, candidates=[dict(c, scores=s) for c, s in zip(r["candidates"], scores[ri])])
                  for ri, r in enumerate(records)]
        sel = Selection(top_k=k, labels=LABELS, boundary_labels=boundary, normalize=norm)
        normalizer = None if norm == "none" else LabelNormalizer.fit(norm, scored, LABELS)
        picks = []
        for ri, rr in enumerate(scored):
            picks += [(ri, c, lab, v) for c, lab, v in sentence_picks(rr, sel, normalizer)]
        for lab in LABELS:
            top = sorted((v, ri, c) for ri, c, l2, v in picks if l2 == lab)[:k]
            hits = sum((ri, records[ri]["candidates"][c]["token_start"],
                        records[ri]["candidates"][c]["token_end"], lab) in gold for _, ri, c in top)
            out[lab] = 100.0 * hits / k
        return out
    for lab in LABELS:
        ranked = []
        for ri, r in enumerate(records):
            cands = r["candidates"]
            sc = scores[ri]
            if mode in ("fix", "fix*") and (lab == "PER" or mode == "fix*"):
                sc = demote_partial_names(r, sc, [lab])
            picks = [(c, lab, sc[c][lab]) for c in range(len(cands))]
            if mode != "raw":
                picks = resolve_overlaps(cands, picks)
            ranked += [(v, ri, c) for c, _, v in picks]
        ranked.sort()
        top = ranked[:k]
        hits = sum((ri, records[ri]["candidates"][c]["token_start"],
                    records[ri]["candidates"][c]["token_end"], lab) in gold for _, ri, c in top)
        out[lab] = 100.0 * hits / k
    return out


def variants_from_details(scored, temps):
    """Per variant name: scores[record][candidate][label]."""
    out = {}
    for t in temps:
        for way in ("1way", "2way"):
            for rows in ("next", "all"):
                name = f"{way}-{rows}-T{t:g}"
                per_rec = []
                for r in scored:
                    per_c = []
                    for c in r["candidates"]:
                        d = {}
                        for lab in LABELS:
                            row = c["divergence_rows"][lab][str(float(t))]
                            s = row["sentence"] if rows == "all" else row["sentence"][:1]
                            if way == "1way":
                                d[lab] = float(np.mean(s))
                            else:
                                d[lab] = (sum(s) + row["template_sum"]) / (len(s) + row["template_n"])
                        per_c.append(d)
                    per_rec.append(per_c)
                out[name] = per_rec
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sentences", type=int, default=453)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--temperatures", default="2,1", help="comma-separated; the first is the pass's own")
    ap.add_argument("--methods", default="divergence,cosine,prompt")
    ap.add_argument("--batch-tokens", type=int, default=2048)
    ap.add_argument("--all-rows-sentences", type=int, default=0,
                    help="also compare rows next/all on the first N sample sentences")
    ap.add_argument("--out", default=None)
    ap.add_argument("--start-token", default="auto",
                    help="the scorer's start_token ('auto', a token string, or '' for none)")
    ap.add_argument("--template", default=None, help="template of the 2-way test (scorer default if omitted)")
    ap.add_argument("--tag", default="", help="appended to the output file names")
    ap.add_argument("--from-scores", default=None, metavar="FILE",
                    help="re-evaluate the scores saved by an earlier run (no model is loaded)")
    args = ap.parse_args(argv)

    import torch

    from nertools.xner.causal import CausalDivergenceScorer
    from nertools.runtime.models import load_lm
    from nertools.xner.seeds import PAPER_SEEDS, Seed

    torch.set_num_threads(args.threads)
    if not TRAIN.is_file():
        sys.exit(f"missing {TRAIN}")
    records, total = load_sample(args.sentences, args.seed)
    n_cands = sum(len(r["candidates"]) for r in records)
    k = max(1, round(1000 * n_cands / total))
    print(f"# {args.model}: {len(records)} sentences, {n_cands} candidates (full train {total}); "
          f"K = {k}", file=sys.stderr, flush=True)
    gold = gold_set(records)
    scores_path = ROOT / "benchmarks" / "out" / f"xner_scores-{args.model}-{len(records)}-s{args.seed}{args.tag}.json"
    if args.from_scores:
        saved = json.loads(Path(args.from_scores).read_text())
        if saved["sentences"] != len(records) or saved["seed"] != args.seed:
            sys.exit(f"{args.from_scores}: scores of another sample")
        variants = {name: [[dict(zip(LABELS, c)) for c in rec] for rec in per_rec]
                    for name, per_rec in saved["variants"].items()}
        report(args, argv, records, total, n_cands, k, gold, variants, saved["spans_per_s"],
               {}, saved.get("load_s", 0.0))
        return
    t0 = time.time()
    lm = load_lm(args.model, device="cpu", dtype="float32")
    load_s = time.time() - t0
    seeds = [Seed.make(lab, txt) for lab, txt in PAPER_SEEDS["conll2003"].items()]
    temps = [float(x) for x in args.temperatures.split(",")]
    variants = {}
    timings = {}
    methods = args.methods.split(",")

    extra = {"start_token": args.start_token}
    if args.template:
        extra["template"] = args.template

    def score_2way(rows: str, recs: list, n: int) -> list:
        """2-way scores with per-row details at every temperature; records the span rate."""
        sc = CausalDivergenceScorer(lm, seeds, method="2way", rows=rows, temperature=temps[0], **extra,
                                    extra_temperatures=temps[1:], row_details=True,
                                    batch_tokens=args.batch_tokens, progress=True)
        t = time.time()
        out = list(sc.score_records(copy.deepcopy(recs)))
        timings[f"2way {rows} (2 temperatures, details)"] = n / (time.time() - t)
        return out
    if "divergence" in methods:
        # rows="next" pass, every temperature: 1-way and 2-way, the default row choice
        scored = score_2way("next", records, n_cands)
        variants.update({k2: v for k2, v in variants_from_details(scored, temps).items()
                         if "-next-" in k2})
        del scored
    subset_results = {}
    if args.all_rows_sentences:
        # rows="all" is far slower: compare the row choices on the first N sample sentences
        sub = records[:args.all_rows_sentences]
        sub_cands = sum(len(r["candidates"]) for r in sub)
        sub_k = max(1, round(1000 * sub_cands / total))
        scored = score_2way("all", sub, sub_cands)
        sub_gold = gold_set(sub)
        for name, scores in variants_from_details(scored, temps).items():
            subset_results[name] = {mode: precision_at_k(sub, scores, sub_gold, sub_k, mode)
                                    for mode in ("raw", "nms", "fix")}
        subset_results["_meta"] = {"sentences": len(sub), "candidates": sub_cands, "K": sub_k}
        del scored
    for method in ("cosine", "prompt"):
        if method not in methods:
            continue
        sc = CausalDivergenceScorer(lm, seeds, method=method, temperature=1.0, start_token=args.start_token,
                                    batch_tokens=args.batch_tokens, progress=True)
        t = time.time()
        scored = list(sc.score_records(copy.deepcopy(records)))
        timings[method] = n_cands / (time.time() - t)
        variants[method] = [[c["scores"] for c in r["candidates"]] for r in scored]
    scores_path.parent.mkdir(parents=True, exist_ok=True)
    scores_path.write_text(json.dumps({
        "model": args.model, "sentences": len(records), "seed": args.seed, "labels": LABELS,
        "spans_per_s": timings, "load_s": load_s,
        "variants": {name: [[[c[lab] for lab in LABELS] for c in rec] for rec in per_rec]
                     for name, per_rec in variants.items()}}))
    print(f"scores saved to {scores_path}", file=sys.stderr)
    report(args, argv, records, total, n_cands, k, gold, variants, timings, subset_results, load_s)


def report(args, argv, records, total, n_cands, k, gold, variants, timings, subset_results, load_s):
    """P@K of every variant under every selection mode; JSON file + Markdown on stdout."""
    results = {}
    for name, scores in variants.items():
        results[name] = {mode: precision_at_k(records, scores, gold, k, mode)
                         for mode in MODES}
    summary = {"model": args.model, "sentences": len(records), "candidates": n_cands,
               "full_train_candidates": total, "K": k, "seed": args.seed, "load_s": load_s,
               "spans_per_s": timings, "precision_at_k": results,
               "row_choice_subset": subset_results,
               "command": "python benchmarks/xner_quality.py " + " ".join(argv or sys.argv[1:])}
    out = Path(args.out or ROOT / "benchmarks" / "out" / f"xner_quality-{args.model}-{len(records)}{args.tag}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    print(f"\n{args.model}, {len(records)} sentences, {n_cands} candidates, K = {k} "
          f"(P@K in %, PER/LOC/ORG/MISC)\n")
    print("| variant | raw | nms | fix (PER) | fix (all) | ner-pseudo, raw, PER rule | ner-pseudo, rank, PER rule | ner-pseudo defaults (rank, rule for all labels) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, res in results.items():
        cells = [" / ".join(f"{res[m][lab]:.0f}" for lab in LABELS) for m in MODES]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if subset_results:
        meta = subset_results["_meta"]
        print(f"\nRow choice on the first {meta['sentences']} sentences ({meta['candidates']} "
              f"candidates, K = {meta['K']}):\n")
        print("| variant | raw | nms | fix (PER) |")
        print("|---|---|---|---|")
        for name, res in subset_results.items():
            if name == "_meta":
                continue
            cells = [" / ".join(f"{res[m][lab]:.0f}" for lab in LABELS) for m in ("raw", "nms", "fix")]
            print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nspans/s: " + ", ".join(f"{k2} {v:.1f}" for k2, v in timings.items()))
    print(f"written {out}")


if __name__ == "__main__":
    main()
