"""LITSET with MiniLM: label-interpretation training on the shared datasets' types, then zero- and
few-shot tagging of held-out datasets' types.

Phase 1 (methods spec §3.4-3.6): ``ner-biencoder train --objective labels`` (softmax CE over
"outside" + the batch's labels, IO) from all-minilm-l6-v2 on --phase1-sentences sentences of
the shared train sets that are NOT held out (about as many from each), each type named with its
dataset ("crossner_ai/person": types of the same name in two datasets stay two labels, as
LITSET keeps one label per label record) and verbalised from benchmarks/label_descriptions/:

  * ``desc``  --verbalize mixed (LITSET's sampled_desc: the description or some type names, p=0.5);
  * ``names`` --verbalize names (bare type names only: the ablation);
  * ``plain`` no phase 1 (all-minilm-l6-v2 as both encoders: "no label-interpretation training").

The held-out datasets (default MIT Restaurant and WNUT-17; WNUT-16, WNUT-17's twin, is left out
of phase 1 too) are never seen in phase 1: by default one phase 1 leaves all of them out;
``--leave-one-out`` trains one phase 1 per held-out dataset that leaves out only that dataset
(and its twin), as LITSET's leave-one-dataset-out protocol does. Phase 2 (§3.7): for k in --ks and run r (seed r), a
k~2k support set from the held-out train split (MIT Restaurant: its first 80%) and
``ner-biencoder train --objective labels --init PHASE1 --train SUPPORT --label-desc TARGET``
(nothing frozen; the library call train_biencoder is the same code) with the target types
verbalised as the model was trained (desc: descriptions; names: names; plain: descriptions);
k = 0 is zero-shot tagging of the phase-1 model. Evaluation: strict entity micro F1 of IO
spans (ner-eval's function) and LITSET's token-level micro F1, on --eval-size sentences
(MIT Restaurant: the last ones of train; WNUT-17: the first of dev).

  python benchmarks/litset.py --out benchmarks/out/litset --threads 1

Prints Markdown tables (mean ± std over the runs), writes OUT/results.json after every run and
--plot (default benchmarks/litset.png) when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
DESC = ROOT / "benchmarks" / "label_descriptions"
TWINS = {"wnut17": {"wnut16"}, "wnut16": {"wnut17"}, "mit_movie": {"mit_movie_trivia10k13"},
         "mit_movie_trivia10k13": {"mit_movie"}}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_split(name: str, split: str) -> list[dict]:
    from nertools.core.jsonl import read_records

    return list(read_records(DATA / name / f"{split}.jsonl"))


def label_rows(dataset: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in (DESC / f"{dataset}.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            label, desc, names = line.split("\t")
            rows.append((label, desc, names))
    return rows


def label_infos(dataset: str, variant: str, prefix: bool = False):
    from nertools.biencoder.labels import LabelInfo

    out = []
    for label, desc, names in label_rows(dataset):
        name = f"{dataset}/{label}" if prefix else label
        out.append(LabelInfo(name, None if variant == "names" else desc, [n.strip() for n in names.split(",")]))
    return out


def phase1_data(heldout: set[str], n: int, seed: int = 0):
    sources = sorted(p.name for p in DATA.iterdir() if (p / "train.jsonl").is_file() and p.name not in heldout)
    rng = random.Random(seed)
    per = -(-n // len(sources))
    records, infos = [], []
    for name in sources:
        recs = [r for r in load_split(name, "train") if r["spans"]]
        rng.shuffle(recs)
        for r in recs[:per]:
            records.append({**r, "spans": [{**s, "label": f"{name}/{s['label']}"} for s in r["spans"]]})
        infos.extend(label_infos(name, "desc", prefix=True))
    rng.shuffle(records)
    return records[:n], infos, sources


def eval_split(name: str, size: int):
    train = load_split(name, "train")
    if (DATA / name / "dev.jsonl").is_file():
        return train, load_split(name, "dev")[:size]
    cut = int(0.8 * len(train))
    assert len(train) - size >= cut
    return train[:cut], train[-size:]


def score(model_dir: Path, evalset: list[dict], labels) -> dict:
    from nertools.biencoder import BiEncoder
    from nertools.evaluation import evaluate
    from nertools.fewshot.metrics import token_scores, word_labels

    model = BiEncoder.load(model_dir, device="cpu")
    pred = list(model.tag_records([dict(r) for r in evalset], labels))
    ent = evaluate(evalset, pred)
    tok = token_scores([word_labels(r) for r in evalset], [word_labels(r) for r in pred])
    return {"entity_f1": round(100 * ent["micro"]["f1"], 2), "token_micro_f1": tok["micro_f1"],
            "token_macro_f1": tok["macro_f1"]}


def train(args_kw: dict, records, labels, out: Path, threads: int) -> float:
    from nertools.biencoder.train import BiEncoderArgs, train_biencoder
    from nertools.runtime.progress import set_quiet

    if out.exists():
        shutil.rmtree(out)
    set_quiet(True)
    t = time.time()
    train_biencoder(BiEncoderArgs(objective="labels", device="cpu", **args_kw), records, None, out, label_desc=labels)
    set_quiet(False)
    return time.time() - t


def summarise(rows, metric):
    out = {}
    for key in {(r["model"], r["dataset"], r["k"]) for r in rows}:
        vals = [r[metric] for r in rows if (r["model"], r["dataset"], r["k"]) == key]
        out[key] = (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals))
    return out


def markdown(rows, metric, models):
    s = summarise(rows, metric)
    dsets = list(dict.fromkeys(r["dataset"] for r in rows))
    ks = sorted({r["k"] for r in rows})
    lines = ["| held-out dataset | k | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for d in dsets:
        for k in ks:
            cells = []
            for m in models:
                v = s.get((m, d, k))
                cells.append("n/a" if v is None else f"{v[0]:.1f} ± {v[1]:.1f} ({v[2]})")
            lines.append(f"| {d} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows, metric, models, path: Path, title: str) -> None:
    try:
        import matplotlib
    except ImportError:
        log("matplotlib is not installed (pip install '.[bench]'): no plot")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summarise(rows, metric)
    dsets = list(dict.fromkeys(r["dataset"] for r in rows))
    ks = sorted({r["k"] for r in rows})
    fig, axes = plt.subplots(1, len(dsets), figsize=(4.2 * len(dsets), 3.4), sharey=True, squeeze=False)
    for ax, d in zip(axes[0], dsets):
        for m in models:
            pts = [(k, s[(m, d, k)]) for k in ks if (m, d, k) in s]
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1][0] for p in pts], yerr=[p[1][1] for p in pts],
                            marker="o", capsize=3, label=m)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_title(f"held out: {d}")
        ax.set_xlabel("k (k~2k mentions per type; 0 = zero-shot)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric.replace("_", " "))
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "litset")
    ap.add_argument("--heldout", default="mit_restaurant,wnut17")
    ap.add_argument("--leave-one-out", action="store_true",
                    help="one phase 1 per held-out dataset, leaving out only it (and its twin)")
    ap.add_argument("--phase1-sentences", type=int, default=1600)
    ap.add_argument("--phase1-steps", type=int, default=100)
    ap.add_argument("--phase1-lr", type=float, default=5e-5)
    ap.add_argument("--ks", default="0,1,5")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fewshot-steps", default="1:20,5:30,10:40", help="k:steps of phase 2")
    ap.add_argument("--fewshot-lr", type=float, default=5e-5)
    ap.add_argument("--eval-size", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "litset.png")
    ap.add_argument("--from-results", type=Path, default=None, metavar="JSON",
                    help="only print the tables and draw the plot of an earlier (possibly partial) results.json")
    args = ap.parse_args()
    if args.from_results:
        saved = json.loads(args.from_results.read_text())
        report(saved["rows"], args.plot)
        print("\n" + json.dumps(saved["info"]))
        return

    import torch

    from nertools.fewshot.sampler import sample_support

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    heldout = args.heldout.split(",")
    excluded = set(heldout) | {t for h in heldout for t in TWINS.get(h, ())}
    ks = [int(k) for k in args.ks.split(",")]
    steps_for = {int(a): int(b) for a, b in (x.split(":") for x in args.fewshot_steps.split(","))}
    common = {"max_steps": args.phase1_steps, "lr": args.phase1_lr, "batch_size": 16, "seed": 0, "freeze_layers": 0}
    # One phase 1 for all held-out datasets (each excluded from it, with its twins), or with
    # --leave-one-out one per held-out dataset that excludes only that dataset and its twins.
    groups = ({h: {h} | TWINS.get(h, set()) for h in heldout} if args.leave_one_out else {"all": excluded})
    info = {"phase1": {}, "leave_one_out": args.leave_one_out}
    phase1 = {}   # (held-out dataset, variant) -> model dir
    for group, excl in groups.items():
        records, infos, sources = phase1_data(excl, args.phase1_sentences)
        gi = info["phase1"][group] = {
            "sources": sources, "excluded": sorted(excl), "sentences": len(records),
            "labels": len({s["label"] for r in records for s in r["spans"]}),
            "steps": args.phase1_steps, "lr": args.phase1_lr, "batch_size": 16}
        log(json.dumps({group: gi}))
        for variant, verbalize in (("desc", "mixed"), ("names", "names")):
            out = args.out / (f"phase1-{variant}" if group == "all" else f"phase1-{group}-{variant}")
            if not (out / "nertools.json").is_file():
                secs = train({"model": "all-minilm-l6-v2", "verbalize": verbalize, **common}, records, infos, out,
                             args.threads)
                log(f"phase 1 {group} {variant}: {secs:.0f} s")
                gi[f"{variant}_seconds"] = round(secs)
            for h in (heldout if group == "all" else [group]):
                phase1[h, variant] = out
    models = ["desc", "names", "plain"]
    data = {h: eval_split(h, args.eval_size) for h in heldout}
    rows = []
    results = args.out / "results.json"

    def save():
        results.write_text(json.dumps({"info": info, "args": vars(args) | {"out": str(args.out), "plot": str(args.plot)},
                                       "rows": rows}, indent=1, default=str))

    for h, (pool, evalset) in data.items():   # zero-shot
        for m in ("desc", "names"):
            t = time.time()
            sc = score(phase1[h, m], evalset, label_infos(h, m))
            rows.append({"model": m, "dataset": h, "k": 0, "run": 0, **sc})
            log(f"zero-shot {m} {h}: {sc} ({time.time() - t:.0f} s)")
            save()
    for r in range(args.runs):
        for k in [k for k in ks if k > 0]:
            for h, (pool, evalset) in data.items():
                s = sample_support(pool, k, r)
                for m in models:
                    target = label_infos(h, "names" if m == "names" else "desc")
                    kw = {"max_steps": steps_for[k], "lr": args.fewshot_lr, "batch_size": 8, "seed": r,
                          "freeze_layers": 0, "verbalize": "names" if m == "names" else "description"}
                    if m == "plain":
                        kw["model"] = "all-minilm-l6-v2"
                    else:
                        kw["init"] = str(phase1[h, m])
                    out = args.out / "fewshot-tmp"
                    secs = train(kw, s.records, target, out, args.threads)
                    sc = score(out, evalset, target)
                    rows.append({"model": m, "dataset": h, "k": k, "run": r, "support_sentences": len(s.selected),
                                 "shortfall": s.shortfall, "train_seconds": round(secs, 1), **sc})
                    log(f"run {r} k={k} {h} {m}: {sc} ({len(s.selected)} sentences, {secs:.0f} s)")
                    save()
    report(rows, args.plot)


def report(rows, plot_path: Path, models=("desc", "names", "plain")) -> None:
    models = list(models)
    print("entity micro F1 (%), mean ± std (runs)\n")
    print(markdown(rows, "entity_f1", models))
    print("\ntoken micro F1 (%, LITSET's code metric), mean ± std (runs)\n")
    print(markdown(rows, "token_micro_f1", models))
    plot(rows, "entity_f1", models, plot_path, "LITSET-style label interpretation, MiniLM bi-encoder")


if __name__ == "__main__":
    main()
