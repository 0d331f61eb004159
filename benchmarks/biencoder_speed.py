"""Bi-encoder speed, side by side with the token classifier on the same backbone (issue 12).

Tagging: zero-shot `ner-tag --model BIENCODER --labels ...` (nertools.biencoder.BiEncoder.tag_records,
label vectors computed once per run, included in the time) against `ner-tag --model TAGGER`
(nertools.tagging.tagger.Tagger.tag), both in this process, same records, same thread count,
same --max-tokens, alternating runs (A B A B ...); reported: sentences/s of each (median of the
runs) and their ratio. Training: `ner-biencoder train --objective labels` against
`ner-selftrain`, same backbone, same sentences, batch size and steps; sentences/s of the
optimiser steps (model loading excluded: the loop's own "trained N steps in S s" is not used,
the time is measured around Trainer.fit minus the final write).

Weights do not change the speed, so by default both models are built from the backbone with
untrained heads (the tagger's classification head, the bi-encoder's two MiniLM copies); pass
--biencoder DIR / --tagger DIR to time trained ones.

    python benchmarks/biencoder_speed.py --sentences 500 --repeat 3 --threads 2 --train-steps 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LABELS = "PER=person,LOC=location,ORG=organization,MISC=nationality or event"


def build_tagger(backbone: str, folder: Path) -> Path:
    from nertools.tagging.tagger import META_FILE, META_FORMAT, LabelScheme, load_token_classifier

    scheme = LabelScheme(("LOC", "MISC", "ORG", "PER"))
    model, tok = load_token_classifier(backbone, scheme)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / META_FILE).write_text(json.dumps({"format": META_FORMAT, "labels": list(scheme.labels),
                                                "max_length": 256, "window_overlap": 32}))
    return folder


def build_biencoder(backbone: str, folder: Path) -> Path:
    from nertools.biencoder.model import load_encoder
    from nertools.biencoder.tagger import LABEL_DIR, META_FILE, META_FORMAT, TEXT_DIR

    for sub in (TEXT_DIR, LABEL_DIR):
        model, tok = load_encoder(backbone, subject=backbone)
        model.save_pretrained(folder / sub)
        tok.save_pretrained(folder / sub)
    (folder / META_FILE).write_text(json.dumps({"format": META_FORMAT, "kind": "biencoder", "scoring": "softmax",
                                                "tau": 5.0, "similarity": "dot", "pooling": "mean",
                                                "max_length": 256, "window_overlap": 32}))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="all-minilm-l6-v2")
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/conll2003/dev.jsonl"))
    ap.add_argument("--sentences", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=8192)
    ap.add_argument("--biencoder", help="a trained bi-encoder directory (default: built from --backbone)")
    ap.add_argument("--tagger", help="a trained tagger directory (default: built from --backbone)")
    ap.add_argument("--train-steps", type=int, default=20, help="optimiser steps of each training run (0: skip)")
    ap.add_argument("--train-batch", type=int, default=16)
    args = ap.parse_args()

    import torch

    from nertools.biencoder import BiEncoder, labels_from_option
    from nertools.core.jsonl import read_records
    from nertools.core.labels import parse_list
    from nertools.runtime.models import set_threads
    from nertools.runtime.progress import quiet_transformers
    from nertools.tagging.tagger import Tagger

    quiet_transformers()
    set_threads(args.threads)
    records = []
    for r in read_records(args.data):
        records.append(r)
        if len(records) >= args.sentences:
            break
    n_tokens = sum(len(r["tokens"]) for r in records)
    work = Path(tempfile.mkdtemp(prefix="bienc-speed-"))
    tagger_dir = Path(args.tagger) if args.tagger else build_tagger(args.backbone, work / "tagger")
    bienc_dir = Path(args.biencoder) if args.biencoder else build_biencoder(args.backbone, work / "bienc")
    tagger = Tagger.load(tagger_dir, device="cpu", dtype="float32")
    bienc = BiEncoder.load(bienc_dir, device="cpu", dtype="float32")
    labels = labels_from_option(parse_list(LABELS))

    def run_tagger():
        return sum(len(r["spans"]) for r in tagger.tag((dict(r) for r in records), max_tokens=args.max_tokens))

    def run_bienc():
        return sum(len(r["spans"]) for r in bienc.tag_records((dict(r) for r in records), labels,
                                                               max_tokens=args.max_tokens))

    run_tagger(), run_bienc()   # warm-up (allocator, thread pools)
    times = {"tagger": [], "biencoder": []}
    for _ in range(args.repeat):
        for name, fn in (("tagger", run_tagger), ("biencoder", run_bienc)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"# tagging: {len(records)} sentences ({n_tokens} words) of {args.data}, backbone {args.backbone}, "
          f"{args.threads} threads, max_tokens {args.max_tokens}, {args.repeat} alternating runs each, median")
    print("| model | sentences/s | runs (s) |\n|---|---|---|")
    for k in ("tagger", "biencoder"):
        print(f"| {k} | {len(records) / med[k]:.1f} | {', '.join(f'{x:.2f}' for x in times[k])} |")
    print(f"ratio bi-encoder time / tagger time: {med['biencoder'] / med['tagger']:.3f}x "
          f"(target <= 1.3x)")

    if args.train_steps:
        train_speed(args, records, work, torch)


def train_speed(args, records, work: Path, torch) -> None:
    from nertools.biencoder.labels import read_label_file
    from nertools.biencoder.train import BiEncoderArgs, train_biencoder
    from nertools.tagging.train import TrainArgs, train_tagger
    from nertools.training.loop import Trainer

    fit_times: list[float] = []
    original = Trainer.fit

    def timed_fit(self):
        t = time.perf_counter()
        write = self.write_output

        def untimed_write():
            fit_times.append(time.perf_counter() - t)
            return write()

        self.write_output = untimed_write
        return original(self)

    Trainer.fit = timed_fit
    n = args.train_steps * args.train_batch
    train = [r for r in records if r.get("spans")][:n]
    dev = train[:8]
    desc = read_label_file(ROOT / "examples/conll_label_desc.tsv")
    silent = lambda m: None  # noqa: E731
    t_args = TrainArgs(model=args.backbone, max_steps=args.train_steps, batch_size=args.train_batch, device="cpu",
                       patience=0, eval_every=10**6)
    b_args = BiEncoderArgs(objective="labels", model=args.backbone, max_steps=args.train_steps,
                           batch_size=args.train_batch, device="cpu", patience=0, eval_every=10**6)
    train_tagger(t_args, train, dev, work / "t-train", log=silent)
    train_biencoder(b_args, train, dev, work / "b-train", label_desc=desc, log=silent)
    Trainer.fit = original
    sents = args.train_steps * args.train_batch
    print(f"\n# training: {args.train_steps} steps x batch {args.train_batch} = {sents} sentence-steps "
          f"({len(train)} sentences), {args.threads} threads; time of Trainer.fit up to the model write "
          "(includes one dev evaluation on 8 sentences)")
    print("| trainer | sentences/s | fit (s) |\n|---|---|---|")
    for name, secs in zip(("ner-selftrain (token classifier, 1 encoder)",
                           "ner-biencoder train --objective labels (2 encoders, bottom 3 layers frozen)"),
                          fit_times):
        print(f"| {name} | {sents / secs:.1f} | {secs:.1f} |")


if __name__ == "__main__":
    main()
