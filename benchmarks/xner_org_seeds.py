#!/usr/bin/env python3
"""Beyond the paper for CoNLL's weakest type: other and several ORG seeds, on the end-to-end sample.

X-NER's ORG seed "Boston Celtics" is plural; most CoNLL organisations are not. On the first
``--records`` sentences of ``benchmarks/xws_conll.py``'s end-to-end corpus (its candidates and
4-label fast-mode scores, written by the run in ``--e2e``), this re-scores ORG alone with

* ``singular``: one singular seed (``--singular``, default "Microsoft");
* ``several``: the paper's seed plus the others (``--several``), ``--seed-combine mean``;
* ``several-min``: the same run's per-seed scores combined by min, what ``--seed-combine min``
  (the default) writes (read from "seed_scores", no extra scoring);

through the real ``ner-divscore`` with the same fast-mode options as the end-to-end run, and
reports for each, next to the paper's seed: ORG P@K against gold (raw ranking by the ORG score,
K = 0.9% of the sample's candidates, as benchmarks/xner_fastmode.py) and the ORG precision of
the picks ``ner-pseudo``'s selection makes when the other labels keep their scores (K per label).

    python benchmarks/xner_org_seeds.py --e2e benchmarks/out/e2e5000 --records 1024
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xner_quality import LABELS, gold_set, precision_at_k  # noqa: E402

PAPER_ORG = "Boston Celtics"


def head(src: Path, dst: Path, n: int) -> Path:
    if not dst.exists():
        with src.open() as f:
            dst.write_text("".join(line for _, line in zip(range(n), f)))
    return dst


def score(args, out: Path, seeds: list[str], name: str, extra: tuple[str, ...] = ()) -> list[dict]:
    path = out / f"org-{name}.jsonl"
    if not path.with_suffix(".done").exists():
        cmd = ["ner-divscore", "--model", args.model, "--threads", str(args.threads), "--no-progress",
               *shlex.split(args.divscore_args), *extra, *[a for s in seeds for a in ("--seed", f"ORG={s}")],
               str(out / "candidates.jsonl"), "-o", str(path), "--resume"]
        print("$ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
        path.with_suffix(".done").write_text("")
    return [json.loads(x) for x in path.read_text().splitlines()]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--e2e", type=Path, default=Path("benchmarks/out/e2e5000"))
    ap.add_argument("--records", type=int, default=1024, help="a multiple of 256 keeps ner-divscore's blocks")
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--divscore-args", default="--dtype bfloat16 --cascade 1way --cascade-keep 0.1")
    ap.add_argument("--singular", default="Microsoft")
    ap.add_argument("--several", default="Microsoft,United Nations")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    out = args.e2e / f"org-seeds-{args.records}"
    out.mkdir(parents=True, exist_ok=True)
    head(args.e2e / "xws_candidates.jsonl", out / "candidates.jsonl", args.records)
    base = [json.loads(x) for x in head(args.e2e / "xws_scored.jsonl", out / "paper.jsonl", args.records)
            .read_text().splitlines()]
    gold_recs = [json.loads(x) for x in head(args.e2e / "xws_corpus_gold.jsonl", out / "gold.jsonl",
                                              args.records).read_text().splitlines()]
    assert [r["tokens"] for r in gold_recs] == [r["tokens"] for r in base], "sample and scores differ"
    recs = [dict(b, spans=g["spans"]) for b, g in zip(base, gold_recs)]
    gold = gold_set(recs)
    n_cands = sum(len(r["candidates"]) for r in recs)
    k = max(1, round(0.009 * n_cands))

    org = {"paper": [[c["scores"]["ORG"] for c in r["candidates"]] for r in base]}
    singular = score(args, out, [args.singular], "singular")
    org["singular: " + args.singular] = [[c["scores"]["ORG"] for c in r["candidates"]] for r in singular]
    several_seeds = [PAPER_ORG] + [s.strip() for s in args.several.split(",") if s.strip()]
    several = score(args, out, several_seeds, "several", ("--seed-combine", "mean"))
    name = " + ".join(several_seeds)
    org[f"several, mean: {name}"] = [[c["scores"]["ORG"] for c in r["candidates"]] for r in several]
    org[f"several, min: {name}"] = [[min(c["seed_scores"]["ORG"]) for c in r["candidates"]] for r in several]

    rows = []
    for variant, values in org.items():
        scores = [[dict(c["scores"], ORG=v) for c, v in zip(r["candidates"], vals)]
                  for r, vals in zip(recs, values)]
        raw = precision_at_k(recs, scores, gold, k, "raw")["ORG"]
        pseudo = precision_at_k(recs, scores, gold, k, "pseudo-rank-all")["ORG"]
        rows.append({"variant": variant, "raw_p_at_k": round(raw, 1), "pseudo_p_at_k": round(pseudo, 1)})
    summary = {"records": args.records, "candidates": n_cands, "k": k, "gold_org": sum(
        1 for g in gold if g[3] == "ORG"), "model": args.model, "divscore_args": args.divscore_args, "rows": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"ORG seeds, {args.model} ({args.divscore_args}), first {args.records} sentences of the end-to-end "
          f"sample, {n_cands} candidates, K = {k}")
    print("| ORG seed(s) | raw P@K | P@K through ner-pseudo's selection |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['raw_p_at_k']} | {r['pseudo_p_at_k']} |")


if __name__ == "__main__":
    main()
