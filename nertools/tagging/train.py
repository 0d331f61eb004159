"""Fine-tuning a tagger, plainly: the training loop behind ``ner-selftrain``.

:func:`train` reads like a Hugging Face example script: AdamW, linear warmup then linear
decay, gradient clipping and accumulation, autocast (bf16/fp16 on GPU), a seed. Every
``eval_every`` steps the model is scored on the **dev** set (strict IOB2 span F1, seqeval);
the best dev model is kept, and training stops early when dev F1 has not improved for
``patience`` evaluations. Test data never enters the loop.

With ``self_train`` the run follows BOND (:mod:`nertools.tagging.bond`): stage I is the ordinary
(weighted) cross-entropy on the given labels for ``t_early`` steps; stage II learns from a
teacher's soft labels. Early stopping only counts in the last stage.

State lives in two places next to each other:

* ``OUT.checkpoint/`` — written every evaluation (model, optimizer, scheduler, grad scaler,
  RNG states, step, teacher, best model so far). ``--resume`` continues from it; it is
  deleted once ``OUT`` is written.
* ``OUT/`` — the final model directory: Hugging Face model + tokenizer + ``nertools.json``.

Both are written into a temporary directory beside the target and renamed into place, so a
crash leaves either the old complete directory or none — never a half-written one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from nertools.tagging import bond
from nertools.errors import NertoolsError
from nertools.tagging.tagger import META_FILE, META_FORMAT, LabelScheme, SpecialTokens, Window, collate, is_model_dir, load_token_classifier, make_windows, model_window, predict_probs, word_pieces

CHECKPOINT_SUFFIX = ".checkpoint"
#: Test hook: seconds to sleep after each checkpoint (lets a test kill a run mid-way).
PAUSE_ENV = "NERTOOLS_CHECKPOINT_PAUSE"


@dataclass
class TrainArgs:
    """Every knob of a training run (stored in ``nertools.json``)."""

    model: str
    seed: int = 42
    lr: float | None = None            # None: 1e-5 with self_train (BOND), else 5e-5
    batch_size: int = 16
    grad_accum: int = 1
    epochs: float = 3.0
    max_steps: int | None = None       # overrides epochs
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_length: int | None = 256       # model window in sub-tokens (capped by the model)
    window_overlap: int = 32           # sub-tokens shared by consecutive windows
    eval_every: int | None = None      # None: once per epoch
    patience: int = 5                  # evaluations without dev improvement; 0 = never stop
    eval_max_tokens: int = 8192
    o_weight: float = 1.0              # loss weight of tokens labelled O (stage I / supervised)
    self_train: bool = False
    t_early: int | None = None
    t_update: int | None = None
    threshold: float | None = None
    precision: str = "auto"            # autocast: auto|float32|bfloat16|float16
    device: str = "auto"

    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return bond.BOND_LR if self.self_train else 5e-5


# --------------------------------------------------------------------------- files


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.parent / (out.name + CHECKPOINT_SUFFIX)


def temp_dir_beside(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def replace_dir(tmp: Path, target: Path) -> None:
    """Move the complete directory ``tmp`` to ``target`` by renames (same file system).

    An existing ``target`` is first renamed aside and deleted after the swap: at every
    moment ``target`` is either the old complete directory, absent, or the new one.
    """
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)


def _fsync_dir(path: Path) -> None:
    for f in path.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


# --------------------------------------------------------------------------- data


def training_windows(records: Sequence[dict], scheme: LabelScheme, tokenizer, special: SpecialTokens,
                     max_length: int, overlap: int, o_weight: float) -> tuple[list[Window], int]:
    """Windows with per-word tag ids and loss weights; returns ``(windows, dropped_spans)``.

    Every window of a long sentence is a training example (words in overlaps are seen twice).
    Words labelled ``O`` get weight ``o_weight``, entity words 1.
    """
    windows: list[Window] = []
    dropped = 0
    chunk = 1024
    for c in range(0, len(records), chunk):
        recs = records[c:c + chunk]
        for i, (rec, pieces) in enumerate(zip(recs, word_pieces(tokenizer, recs))):
            ids, d = scheme.tag_ids(len(rec["tokens"]), rec["spans"])
            dropped += d
            for w in make_windows(c + i, pieces, special, max_length, overlap):
                w.labels = ids[w.word_start:w.word_end]
                w.weights = [1.0 if t else o_weight for t in w.labels]
                windows.append(w)
    return windows, dropped


def bio_strings(n_words: int, spans: Sequence[dict]) -> list[str]:
    """IOB2 tag strings for (non-overlapping) spans; later overlapping spans are skipped."""
    tags = ["O"] * n_words
    for s in sorted(spans, key=lambda s: (s["token_start"], -s["token_end"])):
        a, b = s["token_start"], s["token_end"]
        if any(t != "O" for t in tags[a:b + 1]):
            continue
        tags[a] = "B-" + s["label"]
        for i in range(a + 1, b + 1):
            tags[i] = "I-" + s["label"]
    return tags


def span_metrics(gold: Sequence[dict], predicted: Sequence[Sequence[dict]]) -> dict:
    """Strict IOB2 span precision/recall/F1 (seqeval), overall and per label, in percent."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    y_true = [bio_strings(len(r["tokens"]), r["spans"]) for r in gold]
    y_pred = [bio_strings(len(r["tokens"]), p) for r, p in zip(gold, predicted)]
    kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    report = classification_report(y_true, y_pred, output_dict=True, **kw)
    per_label = {k: {"precision": round(100 * v["precision"], 2), "recall": round(100 * v["recall"], 2),
                     "f1": round(100 * v["f1-score"], 2), "support": int(v["support"])}
                 for k, v in report.items() if not k.endswith(" avg")}
    return {"f1": round(100 * f1_score(y_true, y_pred, **kw), 2),
            "precision": round(100 * precision_score(y_true, y_pred, **kw), 2),
            "recall": round(100 * recall_score(y_true, y_pred, **kw), 2),
            "per_label": per_label, "sentences": len(gold)}


def evaluate(model, tokenizer, records: Sequence[dict], scheme: LabelScheme, *, max_length: int,
             overlap: int, max_tokens: int, autocast_dtype=None) -> dict:
    """Dev metrics of ``model`` (see :func:`span_metrics`)."""
    from nertools.tagging.tagger import spans_for

    probs = predict_probs(model, tokenizer, records, scheme=scheme, max_length=max_length,
                          overlap=overlap, max_tokens=max_tokens, autocast_dtype=autocast_dtype)
    predicted = [spans_for(r, p, scheme) for r, p in zip(records, probs)]
    return span_metrics(records, predicted)


# --------------------------------------------------------------------------- precision & RNG


def autocast_dtype(spec: str, device):
    """The autocast dtype for ``--precision``: ``auto`` is bf16 (or fp16) on CUDA, fp32 on CPU."""
    import torch

    from nertools.runtime.models import resolve_dtype

    return resolve_dtype(spec, device) if spec != "auto" else (
        resolve_dtype("auto", device) if device.type == "cuda" else torch.float32)


def rng_state() -> dict:
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _cpu_state(model) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- the loop


@dataclass
class RunState:
    """What a checkpoint restores besides model/optimizer/scheduler weights."""

    step: int = 0            # optimiser steps done
    micro: int = 0           # micro-batches consumed (position in the data order)
    best_f1: float = -1.0
    best_step: int = 0
    best_stage: int = 1
    best_metrics: dict = field(default_factory=dict)
    bad_evals: int = 0
    history: list = field(default_factory=list)
    finished: bool = False


def check_output_paths(out: str | os.PathLike, resume: bool) -> None:
    """Refuse an ``out`` that is something else than a model directory, and an interrupted
    run's checkpoint without ``resume`` (it is not silently thrown away)."""
    out_path = Path(out)
    ckpt = checkpoint_path(out_path)
    if out_path.exists() and (not out_path.is_dir() or
                              (not is_model_dir(out_path) and any(out_path.iterdir()))):
        raise NertoolsError(f"--out {out} exists and is not a nertools model directory; "
                            "choose another path")
    if ckpt.exists() and not resume:
        raise NertoolsError(f"{ckpt} holds an interrupted run: pass --resume to continue it, "
                            "or delete it to start over")


def train(args: TrainArgs, train_records: Sequence[dict], dev_records: Sequence[dict], out: str, *,
          train_path: str, dev_path: str, resume: bool = False,
          log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict:
    """Train a tagger and write the model directory ``out``; returns its ``nertools.json``."""
    import torch
    from torch.optim import AdamW
    from transformers import get_linear_schedule_with_warmup

    from nertools.runtime.models import resolve_device

    out_path = Path(out)
    ckpt = checkpoint_path(out_path)
    check_output_paths(out_path, resume)

    fingerprints = {"train": {"path": str(train_path), "sha256": sha256_file(train_path),
                              "records": len(train_records)},
                    "dev": {"path": str(dev_path), "sha256": sha256_file(dev_path),
                            "records": len(dev_records)}}
    scheme = LabelScheme.from_records(train_records)
    if not scheme.labels:
        raise NertoolsError(f"{train_path}: no spans in the training data: nothing to learn")

    device = resolve_device(args.device)
    amp = autocast_dtype(args.precision, device)
    seed_everything(args.seed)
    log(f"loading {args.model} ...")
    model, tokenizer = load_token_classifier(args.model, scheme)
    model.to(device)
    max_length = model_window(model, tokenizer, args.max_length)
    overlap = min(args.window_overlap, max(0, max_length // 2))
    special = SpecialTokens.of(tokenizer)

    windows, dropped = training_windows(train_records, scheme, tokenizer, special, max_length,
                                        overlap, args.o_weight)
    if dropped:
        log(f"note: {dropped} overlapping span(s) in the training data were skipped (BIO has no overlaps)")
    n_long = sum(1 for w in windows if w.word_start > 0)
    if n_long:
        log(f"note: {n_long} extra window(s) for sentences longer than {max_length} sub-tokens")

    micro_per_epoch = math.ceil(len(windows) / args.batch_size)
    steps_per_epoch = max(1, math.ceil(micro_per_epoch / args.grad_accum))
    total_steps = args.max_steps or max(1, math.ceil(args.epochs * steps_per_epoch))
    eval_every = args.eval_every or steps_per_epoch
    schedule = None
    if args.self_train:
        schedule = bond.scaled_schedule(len(train_records), args.batch_size * args.grad_accum,
                                        t_early=args.t_early, t_update=args.t_update,
                                        threshold=args.threshold)
        if schedule.t_early >= total_steps:
            raise NertoolsError(f"--self-train: T_early ({schedule.t_early}) >= total steps "
                                f"({total_steps}); raise --epochs/--max-steps or lower --t-early")
    lr = args.learning_rate()

    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    groups = [{"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
               "weight_decay": args.weight_decay},
              {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
               "weight_decay": 0.0}]
    optimizer = AdamW(groups, lr=lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps), total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=(device.type == "cuda" and amp == torch.float16))

    run_config = {"args": asdict(args), "data": {k: v["sha256"] for k, v in fingerprints.items()},
                  "labels": list(scheme.labels)}
    state = RunState()
    teacher = None
    best_state = None
    if resume and ckpt.exists():
        saved = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
        if saved["run_config"] != run_config:
            raise NertoolsError(f"{ckpt} was written by a run with other arguments or data; "
                                "delete it or rerun with the same options")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        state = RunState(**saved["run_state"])
        if saved.get("teacher") is not None:
            teacher = copy.deepcopy(model)
            teacher.load_state_dict(saved["teacher"])
            teacher.eval()
        if (ckpt / "best.pt").exists():
            best_state = torch.load(ckpt / "best.pt", map_location="cpu", weights_only=True)
        set_rng_state(saved["rng"])
        log(f"resumed from {ckpt} at step {state.step}/{total_steps}")
    elif resume:
        log(f"note: no checkpoint at {ckpt}; starting a fresh run")

    log(f"{len(train_records)} train sentences -> {len(windows)} windows; {steps_per_epoch} steps/epoch; "
        f"{total_steps} steps; lr {lr:g}; labels {', '.join(scheme.labels)}"
        + (f"; BOND T_early {schedule.t_early} T_update {schedule.t_update} threshold {schedule.threshold}"
           if schedule else ""))

    def epoch_order(epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(args.seed * 100003 + epoch)
        return torch.randperm(len(windows), generator=g).tolist()

    def autocast():
        return torch.autocast(device_type=device.type, dtype=amp, enabled=amp != torch.float32)

    def save_checkpoint() -> None:
        tmp = temp_dir_beside(ckpt)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                    "teacher": teacher.state_dict() if teacher is not None else None,
                    "run_state": asdict(state), "rng": rng_state(), "run_config": run_config},
                   tmp / "state.pt")
        if best_state is not None:
            torch.save(best_state, tmp / "best.pt")
        (tmp / "state.json").write_text(json.dumps({"step": state.step, "total_steps": total_steps,
                                                    "best_f1": state.best_f1}))
        _fsync_dir(tmp)
        replace_dir(tmp, ckpt)
        pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
        if pause:
            time.sleep(pause)

    def run_eval() -> None:
        nonlocal best_state
        metrics = evaluate(model, tokenizer, dev_records, scheme, max_length=max_length,
                           overlap=overlap, max_tokens=args.eval_max_tokens, autocast_dtype=amp)
        stage = bond.stage_at(state.step, schedule.t_early) if schedule else 1
        state.history.append({"step": state.step, "stage": stage, "dev_f1": metrics["f1"],
                              "loss": round(running_loss / max(1, running_n), 5)})
        final_stage = schedule is None or stage == 2
        if metrics["f1"] > state.best_f1:
            state.best_f1, state.best_step, state.best_stage = metrics["f1"], state.step, stage
            state.best_metrics = metrics
            state.bad_evals = 0
            best_state = _cpu_state(model)
        elif final_stage:
            state.bad_evals += 1
        log(f"step {state.step}/{total_steps} stage {stage} loss {running_loss / max(1, running_n):.4f} "
            f"dev F1 {metrics['f1']:.2f} (best {state.best_f1:.2f} @ {state.best_step})")

    model.train()
    optimizer.zero_grad(set_to_none=True)
    order, order_epoch = None, -1
    running_loss, running_n = 0.0, 0
    accumulated = 0  # micro-batches in the current optimiser step (checkpoints fall between steps)
    started = time.time()
    while state.step < total_steps and not state.finished:
        epoch, k = divmod(state.micro, micro_per_epoch)
        if order_epoch != epoch:
            order, order_epoch = epoch_order(epoch), epoch
        next_step = state.step + 1
        in_stage2 = schedule is not None and bond.stage_at(next_step, schedule.t_early) == 2
        if in_stage2 and accumulated == 0 and \
                bond.is_teacher_update(next_step, schedule.t_early, schedule.t_update):
            if teacher is None:
                teacher = copy.deepcopy(model)
            teacher.load_state_dict(model.state_dict())
            teacher.eval()
            log(f"step {next_step}: teacher <- student")
        idx = order[k * args.batch_size:(k + 1) * args.batch_size]
        batch = collate([windows[i] for i in idx], tokenizer.pad_token_id or 0, with_labels=True)
        batch = {n: t.to(device) for n, t in batch.items()}
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        with autocast():
            logits = model(**inputs).logits
        if in_stage2:
            with torch.no_grad(), autocast():
                q = torch.softmax(teacher(**inputs).logits.float(), -1)
            soft = bond.soft_labels(q, batch["first"])
            keep = bond.confidence_mask(soft, schedule.threshold, batch["first"])
            loss = bond.kl_loss(soft, logits, keep)
        else:
            loss = bond.weighted_cross_entropy(logits, batch["labels"], batch["weights"])
        scaler.scale(loss / args.grad_accum).backward()
        running_loss += loss.item()
        running_n += 1
        state.micro += 1
        accumulated += 1
        if accumulated < args.grad_accum and state.micro % micro_per_epoch:
            continue  # accumulate; an epoch's last micro-batch always ends a step
        accumulated = 0
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        if state.step % eval_every == 0 or state.step == total_steps:
            run_eval()
            running_loss, running_n = 0.0, 0
            if args.patience and state.bad_evals >= args.patience:
                log(f"early stop: dev F1 has not improved for {args.patience} evaluations")
                state.finished = True
            save_checkpoint()
    if best_state is None:  # resumed from a finished checkpoint without best.pt: evaluate now
        run_eval()
    model.load_state_dict(best_state)
    log(f"trained {state.step} steps in {time.time() - started:.0f}s; best dev F1 "
        f"{state.best_f1:.2f} at step {state.best_step}")

    meta = {"format": META_FORMAT, "version": 1, "labels": list(scheme.labels), "tags": scheme.tags,
            "base_model": args.model, "max_length": max_length, "window_overlap": overlap,
            "training_args": asdict(args) | {"lr": lr},
            "bond": asdict(schedule) if schedule else None,
            "data": fingerprints, "dev_metrics": state.best_metrics,
            "best_step": state.best_step, "best_stage": state.best_stage, "steps_run": state.step,
            "history": state.history, "selection": "best dev F1 (strict IOB2, seqeval)"}
    save_model_dir(model, tokenizer, meta, out_path)
    shutil.rmtree(ckpt, ignore_errors=True)
    return meta


def save_model_dir(model, tokenizer, meta: dict, out: Path) -> None:
    """Write model + tokenizer + ``nertools.json`` atomically (temp dir, then rename)."""
    tmp = temp_dir_beside(out)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        _fsync_dir(tmp)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
