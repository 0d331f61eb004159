"""NuNER's frozen-encoder probe (Table 3, protocol A) with MiniLM: plain vs concept-pre-trained.

For every model, dataset, k and run r (seed r): a k~2k support set (nertools.fewshot.sampler),
frozen final-layer word vectors (first sub-token), a linear layer over types + None trained by
full-batch Adam (lr 1e-3, 200 epochs, zero init), token-level macro F1 (None excluded) on a fixed
evaluation set; also entity-level micro F1 of the IO spans. Word vectors of a sentence do not
depend on the support set it is in, so each model embeds the evaluation set and the union of
all support sentences once.

Splits (no test split is used anywhere):
  mit_restaurant, mit_movie: support from the first 80% of train, evaluation = the last N
                             sentences of train (N = --eval-size, default 1000; disjoint);
  wnut17:                    support from train, evaluation = the first N sentences of dev.

Models: ``--model NAME=PATH`` (an encoder folder or alias; a bi-encoder's ``DIR/text_encoder``)
and ``--pretrain NAME=RECORDS.jsonl``, which first runs
``ner-biencoder train --objective concepts --train RECORDS --model all-minilm-l6-v2`` (NuNER's
objective, bottom half frozen, tau 5) into OUT/NAME and probes OUT/NAME/text_encoder.
``--gold-concepts N`` writes such a RECORDS file from N sentences of the other shared train sets
(the gold type of each span as its concept, in plain words): an annotator that makes no mistakes,
for comparison with an LLM's annotations.

  python benchmarks/nuner_probe.py --out benchmarks/out/nuner --model plain=all-minilm-l6-v2 \\
      --pretrain smollm2=benchmarks/out/nuner/smollm2_annotations.jsonl --gold-concepts 1000 \\
      --ks 1,2,4,8,16 --runs 5 --threads 1

Prints a Markdown table (mean ± std over the runs, token macro F1) and writes OUT/results.json;
with matplotlib (``pip install '.[bench]'``) also --plot (default benchmarks/nuner_probe.png).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
DESC = ROOT / "benchmarks" / "label_descriptions"
EVAL_DATASETS = ("mit_restaurant", "mit_movie", "wnut17")
#: Datasets never used for concept pre-training (the evaluation sets and their near twins).
HELD_OUT = {"mit_restaurant", "mit_movie", "mit_movie_trivia10k13", "wnut17", "wnut16"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_split(name: str, split: str) -> list[dict]:
    from nertools.core.jsonl import read_records

    return list(read_records(DATA / name / f"{split}.jsonl"))


def datasets(names, eval_size: int) -> dict:
    out = {}
    for name in names:
        train = load_split(name, "train")
        if name == "wnut17":
            pool, evalset = train, load_split(name, "dev")[:eval_size]
        else:
            cut = int(0.8 * len(train))
            pool, evalset = train[:cut], train[-eval_size:]
            assert len(train) - eval_size >= cut, "evaluation overlaps the support pool"
        out[name] = (pool, evalset)
    return out


def plain_names(dataset: str) -> dict[str, str]:
    """label -> its first plain type name (benchmarks/label_descriptions)."""
    out = {}
    for line in (DESC / f"{dataset}.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            label, _, names = line.split("\t")
            out[label] = names.split(",")[0].strip()
    return out


def gold_concepts(n: int, path: Path, seed: int = 0) -> dict:
    """N sentences with spans from the shared train sets outside HELD_OUT, each span's label
    replaced by its plain type name (the 'concept'); about the same number from each set."""
    from nertools.core.jsonl import write_jsonl

    sources = sorted(p.name for p in DATA.iterdir() if (p / "train.jsonl").is_file() and p.name not in HELD_OUT)
    rng = random.Random(seed)
    per = -(-n // len(sources))
    picked = []
    for name in sources:
        names = plain_names(name)
        recs = [r for r in load_split(name, "train") if r["spans"]]
        rng.shuffle(recs)
        for r in recs[:per]:
            picked.append({**r, "spans": [{**s, "label": names[s["label"]]} for s in r["spans"]]})
    rng.shuffle(picked)
    picked = picked[:n]
    write_jsonl(path, picked)
    concepts = {s["label"] for r in picked for s in r["spans"]}
    return {"sentences": len(picked), "spans": sum(len(r["spans"]) for r in picked),
            "concepts": len(concepts), "sources": sources}


def annotation_stats(path: Path) -> dict:
    n = items = placed = spans = 0
    concepts = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        n += 1
        spans += len(r.get("spans", []))
        for it in (r.get("annotation") or {}).get("items", []):
            items += 1
            if it.get("status") in ("placed", "overlap"):
                placed += 1
                concepts.add(str(it.get("label") or it.get("concept")))
    return {"sentences": n, "items": items, "placed_items": placed, "spans": spans, "concepts": len(concepts)}


def with_concepts(records: Path, out: Path) -> tuple[Path, int]:
    """The records that carry at least one concept (a span, or a placed annotation item):
    ner-biencoder's concepts objective fails on a batch without any concept (reported to its
    owner), and a sentence without one only adds negatives."""
    kept = []
    for line in records.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        items = (r.get("annotation") or {}).get("items", [])
        if r.get("spans") or any(i.get("status") in ("placed", "overlap") for i in items):
            kept.append(line)
    out.write_text("".join(x + "\n" for x in kept), encoding="utf-8")
    return out, len(kept)


def pretrain(name: str, records: Path, out: Path, steps: int, threads: int, lr: float | None = None,
             epochs: float | None = None) -> str:
    """Concept pre-training into OUT/NAME (kept: a finished one is reused); ``epochs``: the
    number of steps is then epochs x sentences / 16 (the batch size), rounded up."""
    target = out / name
    if not (target / "nertools.json").is_file():
        records, n = with_concepts(records, out / f"{name}.train.jsonl")
        if epochs:
            steps = max(1, -(-int(epochs * n) // 16))
        log(f"pre-training {name} on {n} sentences with a concept, {steps} steps of 16")
        cmd = ["ner-biencoder", "train", "--objective", "concepts", "--train", str(records),
               "--model", "all-minilm-l6-v2", "--out", str(target), "--max-steps", str(steps),
               "--threads", str(threads), "--seed", "0", "-q"] + (["--lr", str(lr)] if lr else [])
        log("pre-training: " + " ".join(cmd))
        t = time.time()
        subprocess.run(cmd, check=True)
        log(f"pre-training {name}: {time.time() - t:.0f} s")
    return str(target / "text_encoder")


def probe_model(model_path: str, data: dict, ks, runs: int) -> list[dict]:
    from nertools.fewshot.probe import fit_linear_head, io_targets, probe_scores, word_vectors
    from nertools.fewshot.sampler import sample_support
    from nertools.runtime.models import ENCODER, load_pretrained

    model, tok = load_pretrained(model_path, ENCODER)
    model.eval()
    rows = []
    for name, (pool, evalset) in data.items():
        t = time.time()
        eval_vecs = word_vectors(model, tok, evalset, max_length=128)
        samples = {(k, r): sample_support(pool, k, r) for k in ks for r in range(runs)}
        needed = sorted({i for s in samples.values() for i in s.selected})
        vecs = dict(zip(needed, word_vectors(model, tok, [pool[i] for i in needed], max_length=128)))
        log(f"  {name}: embedded {len(evalset)} eval + {len(needed)} support sentences in {time.time() - t:.0f} s")
        for (k, r), s in samples.items():
            labels = s.labels
            head = fit_linear_head([vecs[i] for i in s.selected], io_targets(s.records, labels), labels)
            sc = probe_scores(head, eval_vecs, evalset)
            rows.append({"dataset": name, "k": k, "run": r, "support_sentences": len(s.selected),
                         "shortfall": s.shortfall, "token_macro_f1": sc["token_macro_f1"],
                         "token_micro_f1": sc["token_micro_f1"], "entity_f1": sc["entity_f1"]})
    return rows


def summarise(rows: list[dict], metric: str) -> dict:
    """(model, dataset|'mean', k) -> (mean, std, n). 'mean' averages the datasets per run."""
    out = {}
    keys = {(r["model"], r["dataset"], r["k"]) for r in rows}
    for m, d, k in keys:
        vals = [r[metric] for r in rows if (r["model"], r["dataset"], r["k"]) == (m, d, k)]
        out[(m, d, k)] = (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals))
    for m, k in {(r["model"], r["k"]) for r in rows}:
        per_run = {}
        for r in rows:
            if (r["model"], r["k"]) == (m, k):
                per_run.setdefault(r["run"], []).append(r[metric])
        vals = [statistics.mean(v) for v in per_run.values()]
        out[(m, "mean", k)] = (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals))
    return out


def markdown(rows: list[dict], metric: str) -> str:
    s = summarise(rows, metric)
    models = list(dict.fromkeys(r["model"] for r in rows))
    dsets = list(dict.fromkeys(r["dataset"] for r in rows)) + ["mean"]
    ks = sorted({r["k"] for r in rows})
    head = "| dataset | k | " + " | ".join(models) + " |\n|---|---|" + "---|" * len(models) + "\n"
    lines = []
    for d in dsets:
        for k in ks:
            cells = [f"{s[(m, d, k)][0]:.1f} ± {s[(m, d, k)][1]:.1f}" if (m, d, k) in s else "" for m in models]
            lines.append(f"| {d} | {k} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def plot(rows: list[dict], metric: str, path: Path, title: str) -> None:
    try:
        import matplotlib
    except ImportError:
        log("matplotlib is not installed (pip install '.[bench]'): no plot")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summarise(rows, metric)
    models = list(dict.fromkeys(r["model"] for r in rows))
    dsets = list(dict.fromkeys(r["dataset"] for r in rows)) + ["mean"]
    ks = sorted({r["k"] for r in rows})
    fig, axes = plt.subplots(1, len(dsets), figsize=(3.6 * len(dsets), 3.4), sharey=True)
    for ax, d in zip(axes, dsets):
        for m in models:
            mean = [s[(m, d, k)][0] for k in ks]
            std = [s[(m, d, k)][1] for k in ks]
            ax.errorbar(ks, mean, yerr=std, marker="o", capsize=3, label=m)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_title(d)
        ax.set_xlabel("k (k~2k mentions per type)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric.replace("_", " "))
    axes[-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "nuner")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--pretrain", action="append", default=[], metavar="NAME=RECORDS")
    ap.add_argument("--gold-concepts", type=int, default=0, metavar="N",
                    help="also pre-train on N gold-typed sentences of the other shared datasets (model 'gold-concepts')")
    ap.add_argument("--pretrain-steps", type=int, default=100)
    ap.add_argument("--pretrain-epochs", type=float, default=None,
                    help="instead of --pretrain-steps: epochs over each pre-training set (batch 16)")
    ap.add_argument("--pretrain-lr", type=float, default=None, help="default: ner-biencoder's (3e-5 for concepts)")
    ap.add_argument("--datasets", default=",".join(EVAL_DATASETS))
    ap.add_argument("--ks", default="1,2,4,8,16")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--eval-size", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "nuner_probe.png")
    ap.add_argument("--from-results", type=Path, default=None, metavar="JSON",
                    help="only print the tables and draw the plot of an earlier (possibly partial) results.json")
    args = ap.parse_args()
    if args.from_results:
        saved = json.loads(args.from_results.read_text())
        report(saved["rows"], args.plot, saved["info"])
        return

    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    ks = [int(k) for k in args.ks.split(",")]
    data = datasets(args.datasets.split(","), args.eval_size)
    info = {"datasets": {n: {"pool": len(p), "eval": len(e)} for n, (p, e) in data.items()}, "pretraining": {}}
    models = dict(m.split("=", 1) for m in args.model)
    for spec in args.pretrain:
        name, records = spec.split("=", 1)
        info["pretraining"][name] = {"records": records, **annotation_stats(Path(records)),
                                     "steps": None if args.pretrain_epochs else args.pretrain_steps,
                                     "epochs": args.pretrain_epochs,
                                     "lr": args.pretrain_lr}
        models[name] = pretrain(name, Path(records), args.out, args.pretrain_steps, args.threads, args.pretrain_lr,
                                args.pretrain_epochs)
    if args.gold_concepts:
        path = args.out / "gold_concepts.jsonl"
        info["pretraining"]["gold-concepts"] = {"records": str(path), **gold_concepts(args.gold_concepts, path),
                                                "steps": args.pretrain_steps, "lr": args.pretrain_lr}
        models["gold-concepts"] = pretrain("gold-concepts", path, args.out, args.pretrain_steps, args.threads,
                                           args.pretrain_lr)
    log(f"models: {models}; {json.dumps(info)}")
    rows = []
    results = args.out / "results.json"
    for name, path in models.items():
        t = time.time()
        log(f"probing {name} ({path})")
        for row in probe_model(path, data, ks, args.runs):
            rows.append({"model": name, **row})
        log(f"{name}: {time.time() - t:.0f} s")
        results.write_text(json.dumps({"info": info, "models": models, "rows": rows}, indent=1))
    report(rows, args.plot, info)


def report(rows: list[dict], plot_path: Path, info: dict) -> None:
    runs = len({r["run"] for r in rows})
    print(f"token macro F1 (%), mean ± std over {runs} support sets per k; 'mean' = mean of the datasets\n")
    print(markdown(rows, "token_macro_f1"))
    print("\nentity micro F1 (%), IO spans\n")
    print(markdown(rows, "entity_f1"))
    print("\n" + json.dumps(info))
    plot(rows, "token_macro_f1", plot_path,
         f"NuNER protocol A (frozen MiniLM + linear probe), {runs} support sets per k")


if __name__ == "__main__":
    main()
