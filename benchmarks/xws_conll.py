#!/usr/bin/env python3
"""End-to-end CoNLL-2003 benchmark: extremely weak supervision (one seed per type) -> F1.

Experiments (``--experiments``, comma-separated, run in this order):

* ``references`` — supervised taggers trained on 1% and 10% of gold train (same backbone);
* ``oweight``    — simulated partial labels: the 10% sample with half of its entities removed
  (unmined entities look like O, as in pseudo data), trained with ``--o-weight 1`` and with
  ``--o-weight W``; the full-label 10% reference is the ceiling;
* ``bond``       — the partial-label data with BOND self-training (``--self-train``);
* ``xws``        — the X-NER pipeline: the paper's four seeds -> ``ner-spans`` ->
  ``ner-divscore`` -> ``ner-pseudo`` -> ``ner-selftrain`` (without and with BOND) -> ``ner-tag``.

Every model is selected on a *selection* slice of CoNLL dev (``--select-dev`` sentences from
the start of dev) and reported on a disjoint *report* slice (``--report-dev`` sentences from
``--report-offset``), so the reported F1 is not the number the model was selected on. CoNLL
test is not used at all. Scoring uses ``ner-eval`` when it is installed, else the same strict
IOB2 span F1 (seqeval) that ``ner-selftrain`` uses.

Everything runs through the console scripts; every command is logged to ``OUT/commands.sh``
and every result to ``OUT/results.jsonl``; a finished run is skipped when the script is rerun.

Example (the sizes reported in the README; ~1 h on 2 shared CPU cores)::

    python benchmarks/xws_conll.py --out benchmarks/out/xws --experiments references,oweight,bond
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"
SEEDS = Path(__file__).resolve().parents[1] / "examples" / "conll_seeds.tsv"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Runner:
    def __init__(self, out: Path):
        self.out = out
        self.commands = out / "commands.sh"
        self.results = out / "results.jsonl"

    def run(self, cmd: list[str], stdout: Path | None = None, stdin: Path | None = None) -> None:
        line = " ".join(shlex.quote(c) for c in cmd)
        if stdin:
            line += f" < {shlex.quote(str(stdin))}"
        if stdout:
            line += f" > {shlex.quote(str(stdout))}"
        with open(self.commands, "a") as fh:
            fh.write(line + "\n")
        log(f"$ {line}")
        t0 = time.time()
        fin = open(stdin, "rb") if stdin else None
        fout = open(str(stdout) + ".part", "wb") if stdout else None
        try:
            proc = subprocess.run(cmd, stdin=fin, stdout=fout)
        finally:
            for f in (fin, fout):
                if f:
                    f.close()
        if proc.returncode != 0:
            raise SystemExit(f"command failed ({proc.returncode}): {line}")
        if stdout:
            Path(str(stdout) + ".part").rename(stdout)
        log(f"  done in {time.time() - t0:.0f}s")

    def done(self, name: str) -> dict | None:
        if not self.results.exists():
            return None
        for line in self.results.read_text().splitlines():
            r = json.loads(line)
            if r["name"] == name:
                return r
        return None

    def record(self, result: dict) -> None:
        with open(self.results, "a") as fh:
            fh.write(json.dumps(result) + "\n")


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write ``lines`` atomically; an identical existing file is left alone (another run of
    this script may be reading it)."""
    text = "".join(x if x.endswith("\n") else x + "\n" for x in lines)
    if path.exists() and path.read_text() == text:
        return path
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def drop_entities(lines: list[str], fraction: float, seed: int) -> list[str]:
    """Remove each span with probability ``fraction`` (simulated partial labels)."""
    rng = random.Random(seed)
    out = []
    for line in lines:
        r = json.loads(line)
        r["spans"] = [s for s in r["spans"] if rng.random() >= fraction]
        out.append(json.dumps(r))
    return out


def strip_spans(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        r = json.loads(line)
        r["spans"] = []
        out.append(json.dumps(r))
    return out


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def score(runner: Runner, tagged: Path, gold: Path, name: str) -> dict:
    """F1 of ``tagged`` against ``gold``: ner-eval when present, else seqeval strict IOB2."""
    if have("nertools.cli.evaluate"):
        report = runner.out / f"{name}.eval.json"
        runner.run(["ner-eval", "--gold", str(gold), "--pred", str(tagged), "--json"], stdout=report)
        data = json.loads(report.read_text())
        micro = data["micro"]
        return {"f1": round(100 * micro["f1"], 2), "precision": round(100 * micro["precision"], 2),
                "recall": round(100 * micro["recall"], 2),
                "per_label": {k: round(100 * v["f1"], 2) for k, v in data["labels"].items()},
                "scorer": "ner-eval"}
    from nertools.core.jsonl import read_records
    from nertools.tagging.train import span_metrics

    gold_recs = list(read_records(gold))
    pred = [r["spans"] for r in read_records(tagged)]
    m = span_metrics(gold_recs, pred)
    return {"f1": m["f1"], "precision": m["precision"], "recall": m["recall"],
            "per_label": {k: v["f1"] for k, v in m["per_label"].items()}, "scorer": "seqeval-strict"}


def train_and_score(runner: Runner, args, name: str, train: Path, extra: list[str]) -> dict:
    if (r := runner.done(name)) is not None:
        log(f"{name}: already done (F1 {r['f1']})")
        return r
    model_dir = runner.out / "models" / name
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = model_dir.parent / f"{name}.lock"  # two copies of this script must not train one model
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
    except FileExistsError:
        log(f"{name}: {lock} exists (another run of this script trains it); skipped")
        return {"name": name, "f1": None, "skipped": "locked"}
    try:
        return _train_and_score(runner, args, name, train, extra, model_dir)
    finally:
        lock.unlink(missing_ok=True)


def _train_and_score(runner: Runner, args, name: str, train: Path, extra: list[str], model_dir: Path) -> dict:
    cmd = ["ner-selftrain", "--train", str(train), "--dev", str(runner.out / "dev_select.jsonl"),
           "--model", args.model, "--out", str(model_dir), "--seed", str(args.seed),
           "--threads", str(args.threads), "--resume"] + extra
    t0 = time.time()
    runner.run(cmd)
    train_s = time.time() - t0
    tagged = runner.out / f"{name}.tagged.jsonl"
    runner.run(["ner-tag", "--model", str(model_dir), "--threads", str(args.threads),
                str(runner.out / "dev_report.jsonl")], stdout=tagged)
    meta = json.loads((model_dir / "nertools.json").read_text())
    res = score(runner, tagged, runner.out / "dev_report.jsonl", name)
    result = {"name": name, "train_file": str(train), "train_sentences": meta["data"]["train"]["records"],
              "select_dev_f1": meta["dev_metrics"]["f1"], "best_step": meta["best_step"],
              "steps_run": meta["steps_run"], "train_seconds": round(train_s), "command": cmd, **res}
    runner.record(result)
    log(f"{name}: report-dev F1 {res['f1']} (selection-dev F1 {meta['dev_metrics']['f1']})")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/out/xws", type=Path)
    ap.add_argument("--experiments", default="references,oweight,bond,xws")
    ap.add_argument("--model", default="all-minilm-l6-v2", help="tagger backbone")
    ap.add_argument("--miner", default="gemma-3-270m", help="ner-divscore model (gemma-3-270m or smollm2-135m)")
    ap.add_argument("--select-dev", type=int, default=200, help="dev sentences for model selection")
    ap.add_argument("--report-dev", type=int, default=600, help="dev sentences for the reported F1")
    ap.add_argument("--report-offset", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=120, help="optimiser steps per training run")
    ap.add_argument("--steps-small", type=int, default=60, help="steps for the 1%% reference")
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--o-weight", type=float, default=0.3)
    ap.add_argument("--drop", type=float, default=0.5, help="fraction of entities removed (oweight)")
    ap.add_argument("--corpus", type=int, default=300, help="train sentences mined by the XWS pipeline")
    ap.add_argument("--top-percent", type=float, default=3.0, help="ner-pseudo --top-percent")
    ap.add_argument("--divscore-args", default="", help="extra ner-divscore options, e.g. "
                    "'--dtype bfloat16 --cascade 1way' (the fast mode)")
    ap.add_argument("--xws-variants", default="o,plain,bond",
                    help="XWS taggers to train, in this order: o (--o-weight W), plain (O weight 1), bond")
    ap.add_argument("--xws-steps", type=int, default=40, help="optimiser steps per XWS training run")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(out)
    experiments = [e.strip() for e in args.experiments.split(",") if e.strip()]

    train_lines = (DATA / "train.jsonl").read_text().splitlines()
    dev_lines = (DATA / "dev.jsonl").read_text().splitlines()
    rng = random.Random(args.seed)
    order = list(range(len(train_lines)))
    rng.shuffle(order)
    n1, n10 = round(0.01 * len(train_lines)), round(0.10 * len(train_lines))
    gold1 = write_lines(out / "train_gold_1pct.jsonl", [train_lines[i] for i in order[:n1]])
    gold10 = write_lines(out / "train_gold_10pct.jsonl", [train_lines[i] for i in order[:n10]])
    write_lines(out / "dev_select.jsonl", dev_lines[:args.select_dev])
    write_lines(out / "dev_report.jsonl", dev_lines[args.report_offset:args.report_offset + args.report_dev])
    common = ["--batch-size", str(args.batch_size), "--lr", str(args.lr), "--eval-every", str(args.eval_every)]
    steps = ["--max-steps", str(args.steps)]

    if "references" in experiments:
        train_and_score(runner, args, "gold-1pct", gold1, common + ["--max-steps", str(args.steps_small)])
        train_and_score(runner, args, "gold-10pct", gold10, common + steps)
    partial = write_lines(out / "train_partial_10pct.jsonl",
                          drop_entities([train_lines[i] for i in order[:n10]], args.drop, args.seed))
    if "oweight" in experiments:
        train_and_score(runner, args, "partial-10pct-o1", partial, common + steps)
        train_and_score(runner, args, f"partial-10pct-o{args.o_weight:g}", partial,
                        common + steps + ["--o-weight", str(args.o_weight)])
    if "bond" in experiments:
        te, tu = args.steps // 2, max(1, args.steps // 6)
        train_and_score(runner, args, f"partial-10pct-o{args.o_weight:g}-bond", partial,
                        common + steps + ["--o-weight", str(args.o_weight), "--self-train",
                                          "--t-early", str(te), "--t-update", str(tu)])
    if "xws" in experiments:
        missing = [m for m in ("spans", "divscore", "pseudo") if not have(f"nertools.cli.{m}")]
        if missing:
            log("xws: skipped, missing commands: " + ", ".join(f"ner-{m}" for m in missing))
            runner.record({"name": "xws", "f1": None, "skipped": "missing " + ", ".join(missing)})
        else:
            corpus = write_lines(out / "xws_corpus.jsonl", strip_spans(
                [train_lines[i] for i in order[n10:n10 + args.corpus]]))
            # the same sentences with their gold labels (for ner-eval of the pseudo labels and
            # for benchmarks/gener_conll.sh's GOLD argument: GeNER on the same sample)
            write_lines(out / "xws_corpus_gold.jsonl", [train_lines[i] for i in order[n10:n10 + args.corpus]])
            cands, scored, pseudo = (out / "xws_candidates.jsonl", out / "xws_scored.jsonl",
                                     out / "xws_pseudo.jsonl")
            if not pseudo.exists():
                runner.run(["ner-spans", "--max-tokens", "30", str(corpus)], stdout=cands)
                # -o + --resume: a killed mining run (hours for thousands of sentences) continues;
                # a finished one (output without its .progress journal) is kept
                finished = scored.exists() and not Path(str(scored) + ".progress").exists()
                if not finished:
                    runner.run(["ner-divscore", "--seeds", str(SEEDS), "--model", args.miner, "--threads",
                                str(args.threads), "--no-progress", *shlex.split(args.divscore_args),
                                str(cands), "-o", str(scored), "--resume"])
                runner.run(["ner-pseudo", "--top-percent", str(args.top_percent), str(scored)],
                           stdout=pseudo)
            xsteps = ["--max-steps", str(args.xws_steps)]
            variants = {v.strip() for v in args.xws_variants.split(",")}
            if "o" in variants:
                train_and_score(runner, args, f"xws-pseudo-o{args.o_weight:g}", pseudo,
                                common + xsteps + ["--o-weight", str(args.o_weight)])
            if "plain" in variants:
                train_and_score(runner, args, "xws-pseudo", pseudo, common + xsteps)
            if "bond" in variants:
                te, tu = args.xws_steps // 2, max(1, args.xws_steps // 6)
                train_and_score(runner, args, f"xws-pseudo-o{args.o_weight:g}-bond", pseudo,
                                common + xsteps + ["--o-weight", str(args.o_weight), "--self-train",
                                                   "--t-early", str(te), "--t-update", str(tu)])

    # summary table
    rows = [json.loads(x) for x in runner.results.read_text().splitlines()] if runner.results.exists() else []
    print(f"| run | train sentences | steps (best) | F1 report-dev ({args.report_dev}) | P | R | F1 select-dev ({args.select_dev}) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("f1") is None:
            print(f"| {r['name']} | - | - | {r.get('skipped', '')} | | | |")
            continue
        print(f"| {r['name']} | {r['train_sentences']} | {r['steps_run']} ({r['best_step']}) | {r['f1']:.2f} | "
              f"{r.get('precision', '')} | {r.get('recall', '')} | {r['select_dev_f1']:.2f} |")


if __name__ == "__main__":
    main()
