"""Fine-tuning a tagger: the tagger task of :mod:`nertools.training` and ``ner-selftrain``'s
library entry point :func:`train_tagger`.

The loop itself (AdamW, linear warmup then decay, clipping, accumulation, autocast, dev
evaluation with best-model selection and early stopping, checkpoint/resume, the atomic
model directory) is :class:`nertools.training.Trainer`. This module plugs the tagger into
it (:class:`TaggerTask`): windows of sub-tokens with per-word BIO tag ids as examples, the
(O-weighted) token cross-entropy as loss, strict span F1 on dev
(:func:`nertools.evaluation.evaluate`) as metric, and a model directory (Hugging Face model +
tokenizer + ``nertools.json``) as output. Test data never enters the loop.

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
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import orjson

from nertools.core.atomic import atomic_dir, replace_dir, temp_dir_beside  # noqa: F401  (old names)
from nertools.errors import DataError, NertoolsError, UsageError
from nertools.runtime import progress
from nertools.tagging import bond
from nertools.tagging.tagger import (META_FILE, META_FORMAT, LabelScheme, SpecialTokens, Window, collate,
                                     is_model_dir, load_token_classifier, make_windows, model_window,
                                     predict_probs, word_pieces, written_files)
from nertools.training.checkpoint import (CHECKPOINT_SUFFIX, PAUSE_ENV, RunState,  # noqa: F401
                                          checkpoint_path, foreign_entries_error, foreign_files, rng_state,
                                          seed_everything, set_rng_state, sha256_file)
from nertools.training.checkpoint import check_output_paths as _check_output_paths
from nertools.training.loop import StepContext, Task, Trainer, TrainerConfig  # noqa: F401

CHOICES = ("auto", "float32", "bfloat16", "float16")


from nertools.training.loop import knob  # noqa: E402

_knob = knob  # the shared field helper (nertools.training.loop.knob)


@dataclass
class TrainArgs:
    """Every knob of a training run (stored in ``nertools.json``).

    The field metadata declares the ``ner-selftrain`` option of each knob: a new knob is
    one field here.
    """

    model: str = field(metadata={"cli": False})   # ner-selftrain --model (shared option)
    self_train: bool = _knob(False, "BOND: stage I on the labels for T_early steps, then "
                                    "teacher/student self-training on soft labels.")
    linear_probe: bool = _knob(False, "NuNER's frozen-encoder probe (protocol A): the encoder stays "
                                       "frozen and one linear layer over its final-layer word vectors "
                                       "learns IO classes (types + None), full-batch Adam for --max-steps "
                                       "steps [default 200] at --lr [default 1e-3]; dev is scored, not used "
                                       "for selection. The other optimiser knobs do not apply.")
    seed: int = _knob(42, "Seeds the model's new head and the data order.", min=0, max=2**32 - 1)
    lr: float | None = _knob(None, "Peak learning rate [default: 1e-5 with --self-train (BOND), 1e-3 with "
                                   "--linear-probe, else 5e-5].", min=0, min_open=True)
    batch_size: int = _knob(16, min=1)
    grad_accum: int = _knob(1, "Micro-batches per optimiser step.", min=1)
    epochs: float = _knob(3.0, min=0, min_open=True)
    max_steps: int | None = _knob(None, "Optimiser steps (overrides --epochs).", min=1)
    warmup_ratio: float = _knob(0.1, min=0, max=1)
    weight_decay: float = _knob(0.01, min=0)
    max_grad_norm: float = _knob(1.0, "Clip the gradient norm to this.", min=0, min_open=True)
    max_length: int | None = _knob(256, "Model window in sub-tokens (capped by the model). Longer "
                                        "sentences are split into overlapping windows, never truncated.",
                                   min=4)
    window_overlap: int = _knob(32, "Sub-tokens shared by consecutive windows of a long sentence.", min=0)
    eval_every: int | None = _knob(None, "Evaluate on dev (and checkpoint) every N steps "
                                         "[default: once per epoch].", min=1)
    patience: int = _knob(5, "Stop after N evaluations without a better dev F1 (0: never). With "
                             "--self-train it only counts in stage II.", min=0)
    eval_max_tokens: int = _knob(8192, cli=False)
    o_weight: float = _knob(1.0, "Loss weight of words labelled O (stage I / supervised). "
                                 "Pseudo-labelled sentences are only partly labelled; < 1 learns "
                                 "less 'O' from unmined entities.", min=0, max=1)
    t_early: int | None = _knob(None, f"BOND stage-I steps [default: max(100, {bond.BOND_T_EARLY} x "
                                      f"min(1, sentences/{bond.BOND_REFERENCE_SIZE}))].", min=0)
    t_update: int | None = _knob(None, f"BOND teacher refresh period in steps [default: max(25, "
                                       f"{bond.BOND_T_UPDATE} x min(1, "
                                       f"sentences/{bond.BOND_REFERENCE_SIZE}))].", min=1)
    threshold: float | None = _knob(None, "BOND: ignore words whose top soft-label probability is "
                                          f"below this [default: {bond.BOND_THRESHOLD}].", min=0, max=1)
    precision: str = _knob("auto", "Autocast dtype; auto = bf16 (else fp16) on CUDA, float32 on CPU. "
                                   "Weights and optimiser stay float32.", choices=CHOICES)
    device: str = field(default="auto", metadata={"cli": False})  # ner-selftrain --device (shared)

    def check(self) -> None:
        """Refuse values outside the bounds the field metadata declares (the same bounds
        ``ner-selftrain`` enforces while parsing), and non-finite floats: a
        :class:`~nertools.errors.UsageError` before any model is loaded."""
        import dataclasses
        import math

        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None or isinstance(value, bool):
                continue
            option = "--" + f.name.replace("_", "-")
            if "choices" in meta and value not in meta["choices"]:
                raise UsageError(f"{option} {value!r}: choose one of {', '.join(meta['choices'])}")
            if not isinstance(value, (int, float)):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"{option} {value}: not a finite number")
            low, high = meta.get("min"), meta.get("max")
            if low is not None and (value <= low if meta.get("min_open") else value < low):
                raise UsageError(f"{option} {value}: must be {'>' if meta.get('min_open') else '>='} {low}")
            if high is not None and value > high:
                raise UsageError(f"{option} {value}: must be <= {high}")

    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        if self.linear_probe:
            return 1e-3
        return bond.BOND_LR if self.self_train else 5e-5

    def trainer_config(self) -> TrainerConfig:
        return TrainerConfig(lr=self.learning_rate(), batch_size=self.batch_size, grad_accum=self.grad_accum,
                             epochs=self.epochs, max_steps=self.max_steps, warmup_ratio=self.warmup_ratio,
                             weight_decay=self.weight_decay, max_grad_norm=self.max_grad_norm,
                             eval_every=self.eval_every, patience=self.patience, seed=self.seed,
                             precision=self.precision, metric="f1")


def check_output_paths(out: str | os.PathLike, resume: bool) -> None:
    """Refuse an ``out`` that is something else than a tagger directory, a tagger directory
    holding entries that nertools did not write (retraining replaces the whole directory,
    which would delete them), and an interrupted run's checkpoint without ``resume``."""
    _check_output_paths(out, resume, is_model_dir)
    owned = written_files(out) if is_model_dir(out) else None
    foreign = foreign_files(out, owned) if owned is not None else []
    if foreign:
        raise foreign_entries_error(out, foreign, " or choose another --out")


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


def records_fingerprint(records: Sequence[dict], path: str | os.PathLike | None) -> dict:
    """``{"path", "sha256", "records"}`` of a data set: the file's hash, or without a file the
    hash of the records' JSON."""
    if path is not None:
        digest = sha256_file(path)
    else:
        h = hashlib.sha256()
        for r in records:
            h.update(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n")
        digest = h.hexdigest()
    return {"path": None if path is None else str(path), "sha256": digest, "records": len(records)}


# --------------------------------------------------------------------------- dev F1


def _token_spans(spans: Sequence[dict]) -> list[dict]:
    kept, _ = LabelScheme.non_overlapping(spans)
    return [{"start": s["token_start"], "end": s["token_end"] + 1, "label": s["label"]} for s in kept]


def span_metrics(gold: Sequence[dict], predicted: Sequence[Sequence[dict]]) -> dict:
    """Strict span precision/recall/F1, overall (micro) and per label, in percent.

    Scored by :func:`nertools.evaluation.evaluate` on token spans. Spans that overlap an earlier
    (longer-first) span of the same record are left out on both sides, as a BIO tag sequence
    would: the numbers equal seqeval's strict IOB2 scores of the BIO tags of the records.
    """
    from nertools.evaluation import evaluate as strict_evaluate

    gold_recs = [{"id": str(i), "text": r["text"], "spans": _token_spans(r["spans"])} for i, r in enumerate(gold)]
    pred_recs = [{"id": str(i), "text": r["text"], "spans": _token_spans(p)}
                 for i, (r, p) in enumerate(zip(gold, predicted))]
    report = strict_evaluate(gold_recs, pred_recs, missing="fail")

    def pct(x: float) -> float:
        return round(100 * x, 2)

    per_label = {k: {"precision": pct(v["precision"]), "recall": pct(v["recall"]), "f1": pct(v["f1"]),
                     "support": int(v["support"])} for k, v in report["labels"].items()}
    micro = report["micro"]
    return {"f1": pct(micro["f1"]), "precision": pct(micro["precision"]), "recall": pct(micro["recall"]),
            "per_label": per_label, "sentences": len(gold)}


def evaluate(model, tokenizer, records: Sequence[dict], scheme: LabelScheme, *, max_length: int,
             overlap: int, max_tokens: int, autocast_dtype=None) -> dict:
    """Dev metrics of ``model`` (see :func:`span_metrics`)."""
    from nertools.tagging.tagger import spans_for

    probs = predict_probs(model, tokenizer, records, scheme=scheme, max_length=max_length,
                          overlap=overlap, max_tokens=max_tokens, autocast_dtype=autocast_dtype)
    predicted = [spans_for(r, p, scheme) for r, p in zip(records, probs)]
    return span_metrics(records, predicted)


# --------------------------------------------------------------------------- the task


class TaggerTask(Task):
    """The tagger in :class:`~nertools.training.Trainer`: windows as examples, (O-weighted)
    cross-entropy (or BOND's KL to the teacher's soft labels in stage II) as loss, strict
    span F1 on dev, a tagger model directory as output."""

    metric_label = "F1"

    def __init__(self, args: TrainArgs, model, tokenizer, scheme: LabelScheme, train_records: Sequence[dict],
                 dev_records: Sequence[dict], fingerprints: dict, *,
                 log: Callable[[str], None] = progress.log):
        self.args, self.model, self.tokenizer, self.scheme = args, model, tokenizer, scheme
        self.dev_records = dev_records
        self.fingerprints = fingerprints
        self.log = log
        self.max_length = model_window(model, tokenizer, args.max_length)
        self.overlap = min(args.window_overlap, max(0, self.max_length // 2))
        self.pad_id = tokenizer.pad_token_id or 0
        self.windows, self.dropped = training_windows(
            train_records, scheme, tokenizer, SpecialTokens.of(tokenizer), self.max_length, self.overlap,
            args.o_weight)
        self.n_train = len(train_records)
        self.schedule = None
        if args.self_train:
            self.schedule = bond.scaled_schedule(len(train_records), args.batch_size * args.grad_accum,
                                                 t_early=args.t_early, t_update=args.t_update,
                                                 threshold=args.threshold)
        self.teacher = None
        self.warnings: list[str] = []   # about the data; shown on stderr and kept in nertools.json
        self.extra_meta: dict = {}      # more keys for nertools.json (e.g. ner-align's head initialisation)

    # ---- data and loss

    def num_examples(self) -> int:
        return len(self.windows)

    def collate(self, indices):
        return collate([self.windows[i] for i in indices], self.pad_id, with_labels=True)

    def in_stage2(self, step: int) -> bool:
        return self.schedule is not None and bond.stage_at(step, self.schedule.t_early) == 2

    def before_step(self, model, step: int) -> None:
        if self.in_stage2(step) and bond.is_teacher_update(step, self.schedule.t_early, self.schedule.t_update):
            if self.teacher is None:
                self.teacher = copy.deepcopy(model)
            self.teacher.load_state_dict(model.state_dict())
            self.teacher.eval()
            self.log(f"step {step}: teacher <- student")

    def loss(self, model, batch, ctx: StepContext):
        import torch

        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        with ctx.autocast():
            logits = model(**inputs).logits
        if self.in_stage2(ctx.step):
            with torch.no_grad(), ctx.autocast():
                q = torch.softmax(self.teacher(**inputs).logits.float(), -1)
            soft = bond.soft_labels(q, batch["first"])
            keep = bond.confidence_mask(soft, self.schedule.threshold, batch["first"])
            return bond.kl_loss(soft, logits, keep)
        return bond.weighted_cross_entropy(logits, batch["labels"], batch["weights"])

    # ---- stages and checkpointed state

    def stage(self, step: int) -> int:
        return bond.stage_at(step, self.schedule.t_early) if self.schedule else 1

    def counts_for_patience(self, stage: int) -> bool:
        return self.schedule is None or stage == 2

    def state_dict(self):
        return {"teacher": self.teacher.state_dict() if self.teacher is not None else None}

    def load_state_dict(self, state, model) -> None:
        teacher = (state or {}).get("teacher")
        if teacher is not None:
            self.teacher = copy.deepcopy(model)
            self.teacher.load_state_dict(teacher)
            self.teacher.eval()

    def run_config(self) -> dict:
        return {"args": asdict(self.args), "data": {k: v["sha256"] for k, v in self.fingerprints.items()},
                "labels": list(self.scheme.labels)}

    def config_differences(self, saved: dict, now: dict) -> list[str]:
        """``--lr (5e-05 in the checkpoint, 0.001 now)``, ``--train FILE: ...`` and the like."""
        from nertools.training.checkpoint import describe_config_differences

        return describe_config_differences(saved, now, self.fingerprints)

    def oom_hint(self) -> str:
        return ("lower --batch-size (raise --grad-accum to keep the effective batch size) "
                "or --max-length")

    def owned_files(self, directory: Path) -> set[str] | None:
        return written_files(directory)

    def describe(self) -> str:
        s = self.schedule
        return (f"{self.n_train} train sentences -> {len(self.windows)} windows; labels "
                f"{', '.join(self.scheme.labels)}"
                + (f"; BOND T_early {s.t_early} T_update {s.t_update} threshold {s.threshold}" if s else ""))

    # ---- evaluation and output

    def evaluate(self, model, ctx: StepContext) -> dict:
        return evaluate(model, self.tokenizer, self.dev_records, self.scheme, max_length=self.max_length,
                        overlap=self.overlap, max_tokens=self.args.eval_max_tokens, autocast_dtype=ctx.dtype)

    def meta(self, state: RunState) -> dict:
        args = self.args
        return {"format": META_FORMAT, "version": 1, "labels": list(self.scheme.labels), "tags": self.scheme.tags,
                "base_model": args.model, "max_length": self.max_length, "window_overlap": self.overlap,
                "training_args": asdict(args) | {"lr": args.learning_rate()},
                "bond": asdict(self.schedule) if self.schedule else None,
                "data": self.fingerprints, "dev_metrics": state.best_metrics,
                "best_step": state.best_step, "best_stage": state.best_stage, "steps_run": state.step,
                "history": state.history, "selection": "best dev F1 (strict span F1, nertools.evaluation)",
                "warnings": list(self.warnings)} | self.extra_meta

    def save(self, model, directory: Path, state: RunState) -> dict:
        return write_model_files(model, self.tokenizer, self.meta(state), directory)


# --------------------------------------------------------------------------- entry point


def train_tagger(args: TrainArgs, train_records: Sequence[dict], dev_records: Sequence[dict],
                 out: str | os.PathLike, *, train_path: str | os.PathLike | None = None,
                 dev_path: str | os.PathLike | None = None, resume: bool = False,
                 log: Callable[[str], None] = progress.log,
                 warn: Callable[[str], None] | None = None,
                 build_model: Callable[[LabelScheme], tuple] | None = None,
                 extra_meta: dict | None = None) -> dict:
    """Train a tagger on canonical records and write the model directory ``out``; returns its
    ``nertools.json``. ``train_path``/``dev_path`` name the files the records came from (their
    sha256 goes into the metadata, and errors name them). Progress lines go to ``log``
    (default: stderr, silenced by ``--quiet``); warnings about the data (see
    :func:`check_dev_labels`) to ``warn`` (default: ``warning: ...`` on stderr, also under
    ``--quiet``) and into ``nertools.json`` (``warnings``).

    Everything that can be refused without the model is checked before it is loaded: the
    arguments (:meth:`TrainArgs.check`), ``out`` (:func:`check_output_paths`), the data.

    ``build_model(scheme)`` replaces :func:`load_token_classifier` (``(model, tokenizer)`` with
    a head of ``scheme.num_tags`` outputs, e.g. ner-align's head initialised from a source
    tagger's rows); ``extra_meta`` adds keys to ``nertools.json``."""
    args.check()
    out_path, fingerprints, scheme, data_warnings = prepare_run(train_records, dev_records, out, resume=resume,
                                                                train_path=train_path, dev_path=dev_path,
                                                                warn=warn)

    seed_everything(args.seed)
    log(f"loading {args.model} ...")
    model, tokenizer = (build_model or (lambda s: load_token_classifier(args.model, s)))(scheme)
    task = TaggerTask(args, model, tokenizer, scheme, train_records, dev_records, fingerprints, log=log)
    task.warnings = data_warnings
    task.extra_meta = dict(extra_meta or {})
    if task.dropped:
        log(f"note: {task.dropped} overlapping span(s) in the training data were skipped (BIO has no overlaps)")
    n_long = sum(1 for w in task.windows if w.word_start > 0)
    if n_long:
        log(f"note: {n_long} extra window(s) for sentences longer than {task.max_length} sub-tokens")
    trainer = Trainer(model, task, args.trainer_config(), out=out_path, device=args.device, resume=resume, log=log)
    if task.schedule is not None and task.schedule.t_early >= trainer.total_steps:
        raise NertoolsError(f"--self-train: T_early ({task.schedule.t_early}) >= total steps "
                            f"({trainer.total_steps}); raise --epochs/--max-steps or lower --t-early")
    return trainer.fit()


def prepare_run(train_records: Sequence[dict], dev_records: Sequence[dict], out, *, resume: bool,
                train_path=None, dev_path=None, warn=None) -> tuple[Path, dict, LabelScheme, list[str]]:
    """What every tagger run checks before a model loads: the output paths, the data's
    fingerprints, the label scheme (no spans: a DataError) and the dev labels (warnings, also
    passed to ``warn``). Returns ``(out_path, fingerprints, scheme, warnings)``."""
    out_path = Path(out)
    check_output_paths(out_path, resume)
    fingerprints = {"train": records_fingerprint(train_records, train_path),
                    "dev": records_fingerprint(dev_records, dev_path)}
    scheme = LabelScheme.from_records(train_records)
    if not scheme.labels:
        raise DataError("no spans in the training data: nothing to learn",
                        path=None if train_path is None else str(train_path))
    data_warnings = check_dev_labels(scheme, dev_records, dev_path)
    for message in data_warnings:
        (warn or _warn)(message)
    return out_path, fingerprints, scheme, data_warnings


def check_dev_labels(scheme: LabelScheme, dev_records: Sequence[dict],
                     dev_path: str | os.PathLike | None = None) -> list[str]:
    """Dev spans against the training labels, before any training: the dev F1 selects the
    model, so a dev set it cannot measure anything on is refused.

    * no dev spans at all, or none whose label is a training label: a :class:`DataError`
      (the dev F1 would be 0 at every evaluation and pick an arbitrary model);
    * some dev labels missing from the training data (a PER/PERSON mismatch, a type the
      pseudo labels never found): returns one warning naming them (their spans can only be
      misses, so the dev F1 is deflated).
    """
    from collections import Counter

    where = None if dev_path is None else str(dev_path)
    counts = Counter(s["label"] for r in dev_records for s in r.get("spans", []))
    if not counts:
        raise DataError("no spans in the dev data: model selection and early stopping need gold "
                        "entities (the dev F1 would be 0 at every evaluation)", path=where)
    known = set(scheme.labels)
    unseen = sorted(lab for lab in counts if lab not in known)
    if len(unseen) == len(counts):
        raise DataError(f"none of the dev labels ({', '.join(sorted(counts))}) is a label of the training "
                        f"data ({', '.join(scheme.labels)}): the dev F1 would be 0 at every evaluation",
                        path=where)
    if not unseen:
        return []
    n = sum(counts[lab] for lab in unseen)
    return [f"{where or 'dev'}: label(s) {', '.join(unseen)} ({n} of {sum(counts.values())} dev spans) "
            f"never occur in the training data (labels: {', '.join(scheme.labels)}); the tagger cannot "
            "predict them, so the dev F1 counts them as misses"]


def _warn(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)


#: The name the tests and older callers use.
train = train_tagger


def write_model_files(model, tokenizer, meta: dict, directory: Path) -> dict:
    """Model + tokenizer + ``nertools.json`` into the empty ``directory``; returns the meta
    written, whose ``files`` lists every entry written (the manifest that tells a retrain
    which entries of an existing directory are nertools' own, see
    :func:`nertools.tagging.tagger.written_files`)."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    meta = dict(meta, files=sorted(set(os.listdir(directory)) | {META_FILE}))
    (Path(directory) / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta


def save_model_dir(model, tokenizer, meta: dict, out: str | os.PathLike) -> None:
    """Write model + tokenizer + ``nertools.json`` atomically (temp dir, then rename)."""
    with atomic_dir(out, fsync=True) as tmp:
        write_model_files(model, tokenizer, meta, tmp)
