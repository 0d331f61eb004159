"""LAR label-alignment ablation for token classifiers: head initialised from the aligned source
rows (LA) against the same source backbone with a fresh head (Ori).

Source: a MiniLM tagger trained by ner-selftrain on CoNLL-2003 train (a sample; see the README).
Targets:
* MIT Restaurant and MIT Movie trivia10k13, 1%, 5% and 10% of train (Restaurant 77 / 383 / 766
  sentences, counted on the full 7,660; Movie 78 / 391 / 782 of 7,816), sampled from train minus
  its last 1,000 sentences, which are the evaluation set and never sampled; model selection on
  100 further pool sentences disjoint from the sample; one sample per seed.
* CrossNER domains: their train set; dev split into a selection part (first 100 sentences)
  and a report part (the rest), so the reported numbers are not the ones selected on.

The alignment table is built from the source tagger's predictions on the *training* sample
(``nertools.align.table.build_table``, what ``ner-align table`` runs; the README's numbers were
measured with a stand-in of the same rule written before that function was merged).

Both arms use identical hyper-parameters and seeds; entity micro F1 (strict) on the report
set; mean ± std over seeds.

    PYTHONPATH=. python benchmarks/lar_reassign.py --build-source SRC --threads 1   # the source tagger
    PYTHONPATH=. nice -n 10 python benchmarks/lar_reassign.py --source-model SRC --work DIR \\
        --threads 1 > results.json 2> runs.log
    python benchmarks/lar_reassign.py --summarize runs.log [more.log ...]   # the README table

``--keep-predictions`` writes, per run, the report set's predictions as ``ner-align predict``
writes them (``label`` the target type, ``source_label`` the table's source type) to
``DIR/<setting>-<arm>-s<seed>.pred.jsonl``, the report gold to ``DIR/<setting>.report.jsonl``
and the table to ``DIR/<setting>.table.json``: the input of enhanced inference on top of the
reassigned model (``ner-align choose --table DIR/<setting>.table.json < ....pred.jsonl``, then
``ner-eval --gold DIR/<setting>.report.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def read(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def fraction_sample(pool, n, seed, dev_size):
    """``(train, dev)``: ``n`` pool sentences and ``dev_size`` more, by a seed-and-size shuffle
    (the samples of every LAR benchmark: lar_generative.py uses the same ones)."""
    idx = list(range(len(pool)))
    random.Random(1000 * seed + n).shuffle(idx)
    return [pool[i] for i in idx[:n]], [pool[i] for i in idx[n:n + dev_size]]


def build_table(gold_records, pred_records, source_labels, misc="MISC"):
    """The vote table of ``ner-align table`` (nertools.align.table.build_table), as its JSON."""
    from nertools.align.table import build_table as votes_table

    return votes_table(pred_records, gold_records, misc=misc, source_labels=source_labels).to_json()


def f1_on(model_dir, records):
    from nertools.tagging.tagger import Tagger
    from nertools.tagging.train import span_metrics

    tagger = Tagger.load(model_dir, device="cpu")
    pred = [r["spans"] for r in tagger.tag([dict(r) for r in records])]
    return span_metrics(records, pred)


def predictions(model_dir, records, assign):
    """The report records with the model's spans, as ``ner-align predict`` writes them."""
    from nertools.tagging.tagger import Tagger

    tagger = Tagger.load(model_dir, device="cpu")
    out = []
    for r in tagger.tag([json.loads(json.dumps(r)) for r in records]):
        for s in r["spans"]:
            s["source"] = "ner-align"
            if s["label"] in assign:
                s["source_label"] = assign[s["label"]]
        out.append(r)
    return out


def one_run(name, arm, seed, train, dev, report, table, src, work, epochs, lr, noise=1.0, keep=False):
    from nertools.align.reassign import train_classifier
    from nertools.tagging.train import TrainArgs

    out = work / f"{name}-{arm}-s{seed}"
    args = TrainArgs(model=str(src), seed=seed, lr=lr, batch_size=16, epochs=epochs, patience=3,
                     max_length=128, device="cpu")
    t0 = time.time()
    meta = train_classifier(args, src, train, dev, out, table=table, ori=(arm == "ori"), noise=noise,
                            log=lambda m: print(f"  [{name} {arm} s{seed}] {m}", file=sys.stderr, flush=True))
    m = f1_on(out, report)
    if arm != "ori":
        arm = f"la-noise{noise:g}"  # the README's two LA columns: 0.1 (the old default) and 1.0
    row = {"setting": name, "arm": arm, "seed": seed, "train": len(train), "dev": len(dev), "report": len(report),
           "dev_f1": meta["dev_metrics"]["f1"], "f1": m["f1"], "precision": m["precision"],
           "recall": m["recall"], "best_step": meta["best_step"], "seconds": round(time.time() - t0, 1),
           "per_label": {k: v["f1"] for k, v in m["per_label"].items()}}
    print(json.dumps(row), file=sys.stderr, flush=True)
    if keep:
        from nertools.core.jsonl import write_jsonl

        write_jsonl(work / f"{name}-{arm}-s{seed}.pred.jsonl", predictions(out, report, table["assign"]))
        write_jsonl(work / f"{name}.report.jsonl", report)
        (work / f"{name}.table.json").write_text(json.dumps(table, indent=1))
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    return row


def summarize(paths):
    """The README table from the per-run JSON lines several (parallel) runs wrote to stderr."""
    import os

    seen = {}
    for f in [f for f in paths if os.path.exists(f)]:
        for line in open(f, encoding="utf-8"):
            if line.startswith('{"setting"'):
                r = json.loads(line)
                if r["arm"] == "la" and "parse" not in r:  # classifier logs from before the noise in arm names
                    r["arm"] = "la-noise0.1"
                seen[(r["setting"], r["arm"], r["seed"])] = r
    rows = list(seen.values())
    print("| setting | arm | runs (arm/Ori) | arm F1 mean ± std | Ori F1 mean ± std | arm − Ori (paired) |")
    print("|---|---|---|---|---|---|")

    def ms(d):
        v = list(d.values())
        if not v:
            return "–"
        return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"

    for name in sorted({r["setting"] for r in rows}):
        ori = {r["seed"]: r["f1"] for r in rows if r["setting"] == name and r["arm"] == "ori"}
        arms = sorted({r["arm"] for r in rows if r["setting"] == name and r["arm"] != "ori"}) or ["la"]
        for arm in arms:
            la = {r["seed"]: r["f1"] for r in rows if r["setting"] == name and r["arm"] == arm}
            both = sorted(set(la) & set(ori))
            diff = [la[k] - ori[k] for k in both]
            d = (f"{statistics.mean(diff):+.2f} (per seed {', '.join(f'{x:+.1f}' for x in diff)})" if diff else "–")
            print(f"| {name} | {arm} | {len(la)}/{len(ori)} | {ms(la)} | {ms(ori)} | {d} |")
    print()
    for r in sorted(rows, key=lambda r: (r["setting"], r["seed"], r["arm"])):
        print(r["setting"], r["arm"], f"seed {r['seed']}", f"F1 {r['f1']}", f"P {r['precision']}",
              f"R {r['recall']}", f"dev {r['dev_f1']}", f"best_step {r['best_step']}", f"{r['seconds']}s")


def build_source(out, threads, n=3000, n_dev=500, seed=0):
    """The README's source tagger: MiniLM, ner-selftrain on ``n`` random CoNLL-2003 train
    sentences (``random.Random(seed)``), selected on ``n_dev`` random dev sentences."""
    import torch

    from nertools.tagging.train import TrainArgs, train_tagger

    torch.set_num_threads(threads)
    train = read(DATA / "conll2003" / "train.jsonl")
    dev = read(DATA / "conll2003" / "dev.jsonl")
    rng = random.Random(seed)
    rng.shuffle(train)
    rng.shuffle(dev)
    args = TrainArgs(model="all-minilm-l6-v2", seed=seed, lr=1e-4, batch_size=16, epochs=3, max_length=128,
                     device="cpu")
    t0 = time.time()
    meta = train_tagger(args, train[:n], dev[:n_dev], out)
    print(json.dumps({"source": str(out), "train": n, "dev": n_dev, "dev_f1": meta["dev_metrics"]["f1"],
                      "seconds": round(time.time() - t0, 1)}), file=sys.stderr, flush=True)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--summarize":
        return summarize(sys.argv[2:])
    if len(sys.argv) > 2 and sys.argv[1] == "--build-source":
        threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1
        return build_source(Path(sys.argv[2]), threads)
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-model", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--crossner", default="politics,music")
    ap.add_argument("--crossner-seeds", default="1,2")
    ap.add_argument("--fractions", default="0.01,0.05")
    ap.add_argument("--datasets", default="mit_restaurant",
                    help="the fraction settings' data sets (mit_restaurant, mit_movie_trivia10k13)")
    ap.add_argument("--dev-size", type=int, default=100, help="restaurant selection sentences")
    ap.add_argument("--epochs-small", type=float, default=8, help="restaurant 1%% epochs")
    ap.add_argument("--epochs-large", type=float, default=4, help="restaurant 5%% and 10%% epochs")
    ap.add_argument("--epochs-crossner", type=float, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--init-noise", type=float, default=1.0,
                    help="LA: noise on the copied head rows in units of the source head's weight std "
                         "(ner-align train's default; runs are reported as arm la-noiseX)")
    ap.add_argument("--arms", default="la,ori", help="run only these arms (to run them in parallel processes)")
    ap.add_argument("--keep-predictions", action="store_true",
                    help="write each run's report predictions, the report gold and the table to --work")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from nertools.tagging.tagger import Tagger

    src = Path(args.source_model)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    source = Tagger.load(src, device="cpu")
    source_labels = source.scheme.labels
    rows, tables = [], {}

    def table_for(key, train):
        pred = list(source.tag([dict(r) for r in train]))
        t = build_table(train, pred, source_labels)
        tables[key] = t
        print(f"table {key}: {json.dumps(t['assign'])}", file=sys.stderr, flush=True)
        return t

    fractions = [float(x) for x in args.fractions.split(",") if x]
    short = {"mit_restaurant": "restaurant", "mit_movie_trivia10k13": "movie"}
    for ds in [d for d in args.datasets.split(",") if d] if fractions else []:
        rest = read(DATA / ds / "train.jsonl")
        n_total = len(rest)
        pool, held = rest[:-1000], rest[-1000:]
        for seed in [int(s) for s in args.seeds.split(",") if s]:
            for frac in fractions:
                n = round(frac * n_total)
                train, dev = fraction_sample(pool, n, seed, args.dev_size)
                name = f"{short.get(ds, ds)}-{frac:g}"
                table = table_for(f"{name}-s{seed}", train)
                epochs = args.epochs_small if n < 200 else args.epochs_large
                for arm in args.arms.split(","):
                    rows.append(one_run(name, arm, seed, train, dev, held, table, src, work, epochs, args.lr,
                                         args.init_noise, args.keep_predictions))
    for dom in [d for d in args.crossner.split(",") if d]:
        train = read(DATA / f"crossner_{dom}" / "train.jsonl")
        dv = read(DATA / f"crossner_{dom}" / "dev.jsonl")
        sel, report = dv[:100], dv[100:]
        table = table_for(dom, train)
        for seed in [int(s) for s in args.crossner_seeds.split(",") if s]:
            for arm in args.arms.split(","):
                rows.append(one_run(f"crossner-{dom}", arm, seed, train, sel, report, table, src, work,
                                    args.epochs_crossner, args.lr, args.init_noise, args.keep_predictions))

    summary = {}
    for key in sorted({(r["setting"], r["arm"]) for r in rows}):
        f = [r["f1"] for r in rows if (r["setting"], r["arm"]) == key]
        summary[f"{key[0]} {key[1]}"] = {"mean": round(statistics.mean(f), 2),
                                          "std": round(statistics.stdev(f), 2) if len(f) > 1 else 0.0, "runs": len(f)}
    print(json.dumps({"summary": summary, "tables": tables, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
