"""LAR label-alignment ablation in the paper's generative formulation (``ner-align train --mode
generative``): a causal LM fine-tuned first on the source types (CoNLL-2003, ``type : span``),
then on the target domain either with the alignment (LA: ``source : span -> target``) or
without it (Ori: ``type : span`` with the target types; same source-stage model, same steps).

Stages (each one process, each can be re-run alone; outputs under --work):

1. ``--stage source``: fine-tune --model on --source-n random CoNLL-2003 train sentences
   (select on the first --source-dev CoNLL dev sentences); writes WORK/source.
2. ``--stage target``: for each seed, sample the target training set, build the vote table from
   the *source model's own generations* on that sample (``nertools.align.table.build_table``,
   what ``ner-align table`` runs), train the arms named by --arms from WORK/source, and score
   each on the report set (strict entity micro F1). One JSON line per run on stderr
   (``{"setting": ...}``), the lines ``lar_reassign.py --summarize`` reads. The LA arm's report
   generations are also parsed under each off-candidate policy of --policies (``ner-align
   train --off-candidate``; arms ``la-default``, ``la-target``; training and selection used
   ``drop``), and every arm's raw generations are kept in WORK/<setting>-<arm>-s<seed>.report.jsonl.

Targets: MIT Restaurant at --fraction of train (77 sentences at 1%, counted on the full 7,660),
sampled from train minus its last 1,000 sentences; selection on --dev-size further pool
sentences; report on the first --report-size of those last 1,000 (decoding is the slow part on
CPU). Or a CrossNER domain (--target crossner_politics): its train set, selection on the first
--dev-size dev sentences, report on the next --report-size.

    PYTHONPATH=. python benchmarks/lar_generative.py --stage source --work W --threads 1
    PYTHONPATH=. python benchmarks/lar_generative.py --stage target --work W --seeds 1 --arms la 2> la.log
    python benchmarks/lar_reassign.py --summarize la.log ori.log
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from lar_reassign import DATA, fraction_sample, read  # benchmarks/ is on sys.path when run as a script


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def gen_args(args, seed, epochs):
    from nertools.align.generative import GenArgs

    return GenArgs(model="", seed=seed, lr=args.lr, batch_size=args.batch_size, epochs=epochs,
                   patience=args.patience, max_prompt=args.max_prompt, max_answer=args.max_answer,
                   max_new_tokens=args.max_new_tokens, eval_sentences=args.eval_sentences,
                   batch_tokens=args.batch_tokens, device="cpu")


def score(model_dir, records, args, save=None):
    """Strict entity P/R/F1 of a generative directory on ``records`` (+ parse counts, seconds);
    ``save``: a JSONL path for the raw generations (``meta.generated``), to re-parse them."""
    from nertools.align.generative import Generator
    from nertools.tagging.train import span_metrics

    t0 = time.time()
    gen = Generator.load(model_dir, device="cpu")
    out = list(gen.tag([{k: v for k, v in r.items() if k != "spans"} | {"spans": []} for r in records],
                       max_new_tokens=args.max_new_tokens, batch_tokens=args.batch_tokens, keep_text=True))
    pred = [r["spans"] for r in out]
    m = span_metrics(records, pred)
    m["parse"] = gen.stats.summary()
    m["seconds"] = round(time.time() - t0, 1)
    if save is not None:
        with open(save, "w", encoding="utf-8") as fh:
            for r in out:
                fh.write(json.dumps({"id": r.get("id"), "generated": r["meta"]["generated"]}) + "\n")
    m["texts"] = [r["meta"]["generated"] for r in out]
    m["linearizer"] = gen.meta["linearizer"]
    return m, pred


def reparse(lin_config, texts, records, policy):
    """Strict entity scores of stored generations parsed under another off-candidate policy."""
    from nertools.align.generative import parse_texts
    from nertools.align.linearize import Linearizer
    from nertools.tagging.train import span_metrics

    pred, stats = parse_texts(Linearizer.from_config(lin_config, off_candidate=policy), records, texts)
    m = span_metrics(records, pred)
    m["parse"] = stats.summary()
    return m


def stage_source(args, work):
    from dataclasses import replace

    from nertools.align.generative import train_generative
    from nertools.align.linearize import Linearizer

    train = read(DATA / "conll2003" / "train.jsonl")
    random.Random(args.source_seed).shuffle(train)
    train = train[:args.source_n]
    dev = read(DATA / "conll2003" / "dev.jsonl")[:args.source_dev]
    labels = sorted({s["label"] for r in train for s in r["spans"]})
    lin = Linearizer("direct", labels, labels)
    ga = replace(gen_args(args, args.source_seed, args.source_epochs), model=args.model)
    t0 = time.time()
    meta = train_generative(ga, lin, train, dev, work / "source", log=log)
    log(json.dumps({"stage": "source", "train": len(train), "dev": len(dev), "dev_f1": meta["dev_metrics"]["f1"],
                    "best_step": meta["best_step"], "seconds": round(time.time() - t0, 1)}))


def target_data(args, seed):
    if args.target == "mit_restaurant":
        rest = read(DATA / "mit_restaurant" / "train.jsonl")
        pool, held = rest[:-1000], rest[-1000:]
        train, dev = fraction_sample(pool, round(args.fraction * len(rest)), seed, args.dev_size)
        return f"gen-restaurant-{args.fraction:g}", train, dev, held[:args.report_size]
    train = read(DATA / args.target / "train.jsonl")
    dv = read(DATA / args.target / "dev.jsonl")
    name = "gen-" + args.target.replace("_", "-")
    return name, train, dv[:args.dev_size], dv[args.dev_size:args.dev_size + args.report_size]


def stage_target(args, work):
    from dataclasses import replace

    from nertools.align.generative import read_meta, train_generative
    from nertools.align.linearize import Linearizer, table_fields
    from nertools.align.table import build_table

    src = work / "source"
    source_labels = read_meta(src)["linearizer"]["labels"]
    for seed in [int(s) for s in args.seeds.split(",") if s]:
        name, train, dev, report = target_data(args, seed)
        table_path = work / f"{name}-s{seed}.table.json"
        if table_path.exists():
            table = json.loads(table_path.read_text())
        else:
            _, pred = score(src, train, args)
            table = build_table([dict(r, spans=p) for r, p in zip(train, pred)], train, misc="MISC",
                                source_labels=source_labels).to_json()
            table_path.write_text(json.dumps(table))
        log(f"table {name}-s{seed}: {json.dumps(table['assign'])}")
        sources, targets, assign, candidates = table_fields(table)
        for arm in args.arms.split(","):
            # selection parses with "drop" (as the README's runs did); the report generations are
            # scored under every policy of --policies below
            lin = (Linearizer("reassign", targets, sources, assign, candidates, default=table.get("default") or {},
                              off_candidate="drop")
                   if arm == "la" else Linearizer("direct", targets, sources))
            out = work / f"{name}-{arm}-s{seed}"
            ga = replace(gen_args(args, seed, args.epochs), model=str(src))
            t0 = time.time()
            meta = train_generative(ga, lin, train, dev, out,
                                    log=lambda m, a=arm: log(f"  [{name} {a} s{seed}] {m}"))
            train_s = round(time.time() - t0, 1)
            m, _ = score(out, report, args, save=work / f"{name}-{arm}-s{seed}.report.jsonl")
            row = {"setting": name, "arm": arm, "seed": seed, "train": len(train), "dev": len(dev),
                   "report": len(report), "dev_f1": meta["dev_metrics"]["f1"], "f1": m["f1"],
                   "precision": m["precision"], "recall": m["recall"], "best_step": meta["best_step"],
                   "seconds": round(train_s + m["seconds"], 1), "train_seconds": train_s,
                   "parse": m["parse"], "per_label": {k: v["f1"] for k, v in m["per_label"].items()}}
            log(json.dumps(row))
            # the same generations under the other off-candidate policies (selection used "drop")
            for policy in [p for p in args.policies.split(",") if p and p != "drop"] if arm == "la" else []:
                r = reparse(m["linearizer"], m["texts"], report, policy)
                log(json.dumps(dict(row, arm=f"la-{policy}", f1=r["f1"], precision=r["precision"],
                                    recall=r["recall"], parse=r["parse"],
                                    per_label={k: v["f1"] for k, v in r["per_label"].items()})))
            if not args.keep:
                import shutil

                shutil.rmtree(out, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", choices=("source", "target"), required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--model", default="smollm2-135m",
                    help="the LM of the source stage, causal or encoder-decoder (ner-align train --model)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--source-n", type=int, default=1000)
    ap.add_argument("--source-dev", type=int, default=100)
    ap.add_argument("--source-epochs", type=float, default=1.0)
    ap.add_argument("--source-seed", type=int, default=1)
    ap.add_argument("--target", default="mit_restaurant",
                    help="mit_restaurant or a CrossNER folder of ../shared/data (crossner_politics)")
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--arms", default="la,ori")
    ap.add_argument("--epochs", type=float, default=8)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--dev-size", type=int, default=50)
    ap.add_argument("--report-size", type=int, default=300)
    ap.add_argument("--eval-sentences", type=int, default=None)
    ap.add_argument("--max-prompt", type=int, default=256)
    ap.add_argument("--max-answer", type=int, default=128)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--keep", action="store_true", help="keep the target-stage model directories")
    ap.add_argument("--policies", default="drop,default,target",
                    help="LA: also score the report generations under these off-candidate policies "
                         "(ner-align train --off-candidate; training and selection use drop)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    (stage_source if args.stage == "source" else stage_target)(args, work)


if __name__ == "__main__":
    main()
