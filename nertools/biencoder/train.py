"""Training a bi-encoder (``ner-biencoder train``): the bi-encoder task of
:class:`nertools.training.Trainer` and its library entry point :func:`train_biencoder`.

Two objectives (:mod:`nertools.biencoder.losses`):

* ``concepts`` (NuNER): the labels are open concepts (``ner-annotate --prompt nuner`` output:
  every placed item, overlapping ones included; or any records' span labels), normalised
  (lower-case, collapsed whitespace); per batch, sigmoid BCE of every (sub-token, concept)
  pair over the distinct concepts of the batch, several concepts per token allowed. Dev score:
  the validation BCE, reported as ``score = 1 / (1 + loss)`` (higher is better).
* ``labels`` (LITSET): softmax cross-entropy over "outside" plus the labels of the batch, each
  label verbalised by its description or some of its names (``--verbalize``), labels whose
  verbalisations coincide merged into one column, ``--negatives N`` extra labels drawn from the
  whole training inventory. Dev score: entity F1 of zero-shot tagging of the dev records with
  the dev set's own labels.

Every sub-token of a word inherits the word's labels (training); predictions use each word's
first sub-token. Sentences longer than ``--max-length`` sub-tokens are split into overlapping
windows, never truncated.

Data parallel: under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1) the run joins the
process group (gloo on CPU, nccl on CUDA). Every rank builds the same global batch (the
trainer's seeded order; ``--batch-size`` is the global batch) with the same label list
(verbalisations and negatives are drawn from a generator seeded by the batch), takes its
shard (every N-th example), and divides its summed loss by the *global* entry count, so that
the gradients DistributedDataParallel averages equal those of one process running the whole
batch. Only rank 0 writes checkpoints and the model directory; all ranks evaluate (same
weights, same dev data, same score).

The output directory: ``text_encoder/`` (a plain Hugging Face ``AutoModel`` folder with its
tokenizer: ``ner-selftrain --model DIR/text_encoder`` fine-tunes it), ``label_encoder/``
(absent with ``--shared-encoder``) and ``nertools.json`` (``format: nertools-biencoder``,
objective, scoring, tau, similarity, pooling, the training labels and their verbalisations,
arguments, data hashes, dev metrics, history, ``files``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from nertools.biencoder.labels import (OUTSIDE_TEXT, VERBALIZE, LabelInfo, label_inventory, record_mentions,
                                       verbalize)
from nertools.biencoder.losses import IGNORE, SIMILARITIES, merge_duplicates, normalize_concept
from nertools.biencoder.tagger import (LABEL_DIR, META_FILE, META_FORMAT, TEXT_DIR, decode, is_biencoder_dir,
                                       label_vectors, spans_for, word_scores)
from nertools.errors import DataError, NertoolsError, UsageError
from nertools.runtime import progress
from nertools.tagging.train import TrainArgs, records_fingerprint, span_metrics
from nertools.training.checkpoint import check_output_paths as _check_output_paths
from nertools.training.checkpoint import foreign_entries_error, foreign_files, seed_everything
from nertools.training.loop import StepContext, Task, Trainer, TrainerConfig

OBJECTIVES = ("concepts", "labels")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")


from nertools.training.loop import knob  # noqa: E402

_knob = knob  # the shared field helper (nertools.training.loop.knob)


@dataclass
class BiEncoderArgs:
    """Every knob of a bi-encoder training run (stored in ``nertools.json``); the field
    metadata declares the ``ner-biencoder train`` option of each."""

    objective: str = field(metadata={"cli": False, "choices": OBJECTIVES})   # --objective
    model: str | None = field(default=None, metadata={"cli": False})       # --model
    label_model: str | None = field(default=None, metadata={"cli": False})  # --label-model
    init: str | None = field(default=None, metadata={"cli": False})         # --init
    shared_encoder: bool = _knob(False, "One encoder for text and labels (default: two with separate "
                                        "weights, as NuNER and LITSET).")
    freeze_layers: int | None = _knob(None, "Freeze the embeddings and the bottom N layers of the text "
                                            "encoder [default: half its layers; 0: none].", min=0)
    pooling: str = _knob("mean", "Label vector: mean over the label text's non-special tokens, or the "
                                 "first (CLS) vector.", choices=("mean", "cls"))
    similarity: str = _knob("dot", "Logit of a token for a label: dot = h.e/tau; cosine = tau*cos(h, e).",
                            choices=SIMILARITIES)
    tau: float = _knob(5.0, "Temperature (dot: divides; cosine: scales).", min=0, min_open=True)
    verbalize: str = _knob("mixed", "labels objective: what the label encoder reads for a label: its "
                                    "description, its names, or mixed (p=0.5 each, LITSET's sampled_desc); "
                                    "a missing one falls back to the other.", choices=VERBALIZE)
    negatives: int = _knob(0, "Extra random negative labels per batch drawn from the whole training label "
                              "inventory.", min=0)
    seed: int = _knob(42, "Seeds the data order, verbalisations and negatives.", min=0, max=2**32 - 1)
    lr: float | None = _knob(None, "Peak learning rate [default: 3e-5 concepts (NuNER), 1e-5 labels (LITSET)].",
                             min=0, min_open=True)
    batch_size: int = _knob(16, "Sentences (windows) per global batch; under torchrun split over the ranks.",
                            min=1)
    grad_accum: int = _knob(1, "Micro-batches per optimiser step.", min=1)
    epochs: float = _knob(3.0, min=0, min_open=True)
    max_steps: int | None = _knob(None, "Optimiser steps (overrides --epochs).", min=1)
    warmup_ratio: float = _knob(0.1, min=0, max=1)
    weight_decay: float = _knob(0.01, min=0)
    max_grad_norm: float = _knob(1.0, "Clip the gradient norm to this.", min=0, min_open=True)
    max_length: int | None = _knob(128, "Model window in sub-tokens (capped by the model). Longer sentences "
                                        "are split into overlapping windows, never truncated.", min=8)
    window_overlap: int = _knob(32, "Sub-tokens shared by consecutive windows of a long sentence.", min=0)
    eval_every: int | None = _knob(None, "Evaluate on dev (and checkpoint) every N steps [default: once per "
                                         "epoch].", min=1)
    patience: int = _knob(5, "Stop after N evaluations without a better dev score (0: never).", min=0)
    eval_max_tokens: int = _knob(8192, cli=False)
    precision: str = _knob("auto", "Autocast dtype; auto = bf16 (else fp16) on CUDA, float32 on CPU.",
                           choices=PRECISIONS)
    device: str = field(default="auto", metadata={"cli": False})

    check = TrainArgs.check  # bounds and choices from the field metadata, finite floats

    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 3e-5 if self.objective == "concepts" else 1e-5

    def trainer_config(self) -> TrainerConfig:
        return TrainerConfig(lr=self.learning_rate(), batch_size=self.batch_size, grad_accum=self.grad_accum,
                             epochs=self.epochs, max_steps=self.max_steps, warmup_ratio=self.warmup_ratio,
                             weight_decay=self.weight_decay, max_grad_norm=self.max_grad_norm,
                             eval_every=self.eval_every, patience=self.patience, seed=self.seed,
                             precision=self.precision, metric="f1" if self.objective == "labels" else "score")


def written_files(path) -> set[str] | None:
    try:
        files = json.loads((Path(path) / META_FILE).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    return {str(f) for f in files} if isinstance(files, list) else None


def check_output_paths(out, resume: bool) -> None:
    """Refuse an ``out`` that is not a bi-encoder directory (or empty), one holding entries
    nertools did not write, and a leftover checkpoint without ``resume``."""
    _check_output_paths(out, resume, is_biencoder_dir)
    owned = written_files(out) if is_biencoder_dir(out) else None
    foreign = foreign_files(out, owned) if owned is not None else []
    if foreign:
        raise foreign_entries_error(out, foreign, " or choose another --out")


# --------------------------------------------------------------------------- distributed


def dist_info() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` outside a process group."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device_spec: str) -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); ``True`` when joined here."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return False
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    cuda = device_spec != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


class DistributedTrainer(Trainer):
    """:class:`Trainer` whose writes happen on rank 0 only (the others wait at a barrier);
    the same object with one process is the plain trainer."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.rank, self.world = dist_info()

    def _barrier(self):
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def restore(self) -> bool:
        if self.rank == 0:
            found = super().restore()
            self._barrier()
            return found
        self._barrier()
        return super().restore()

    def save_checkpoint(self) -> None:
        if self.rank == 0:
            super().save_checkpoint()
        self._barrier()

    def write_output(self) -> dict:
        if self.world == 1:
            return super().write_output()
        import torch.distributed as dist

        box = [None]
        if self.rank == 0:
            try:
                box[0] = {"meta": super().write_output()}
            except NertoolsError as e:
                box[0] = {"error": str(e)}
                dist.broadcast_object_list(box, src=0)
                raise
        dist.broadcast_object_list(box, src=0)
        if "error" in box[0]:
            raise NertoolsError(box[0]["error"])
        if self.rank != 0:  # rank 0 removes the checkpoint; this rank must not race it
            self.checkpoint_dir = self.checkpoint_dir.parent / f".{self.checkpoint_dir.name}.rank{self.rank}-none"
        return box[0]["meta"]


# --------------------------------------------------------------------------- data


@dataclass
class Example:
    """One window of one record: ``input_ids`` (with special tokens) and, per position, the
    label keys of its word (``()`` for outside words) and whether it counts (not special)."""

    record: int
    input_ids: list[int]
    labels: list[tuple[str, ...]]
    valid: list[bool]


def _non_overlapping(mentions):
    chosen, taken = [], set()
    for m in sorted(mentions, key=lambda m: (-(m.end - m.start), m.start)):
        words = set(range(m.start, m.end + 1))
        if words & taken:
            continue
        taken |= words
        chosen.append(m)
    return chosen


def build_examples(records: Sequence[dict], tokenizer, key: Callable[[str], str], *, multi_label: bool,
                   max_length: int, overlap: int) -> tuple[list[Example], int]:
    """Windows of ``records`` with per-sub-token label keys; returns ``(examples, dropped)``
    where ``dropped`` counts mentions left out because they overlap (``multi_label`` False:
    the labels objective takes longest first)."""
    from nertools.tagging.tagger import SpecialTokens, make_windows, word_pieces

    special = SpecialTokens.of(tokenizer)
    examples: list[Example] = []
    dropped = 0
    chunk = 1024
    for c in range(0, len(records), chunk):
        recs = records[c:c + chunk]
        for i, (rec, pieces) in enumerate(zip(recs, word_pieces(tokenizer, recs))):
            mentions = record_mentions(rec)
            if not multi_label:
                kept = _non_overlapping(mentions)
                dropped += len(mentions) - len(kept)
                mentions = kept
            word_labels: list[set[str]] = [set() for _ in rec["tokens"]]
            for m in mentions:
                for w in range(m.start, m.end + 1):
                    word_labels[w].add(key(m.label))
            for win in make_windows(c + i, pieces, special, max_length, overlap):
                n = len(win.input_ids)
                labels: list[tuple[str, ...]] = [()] * n
                valid = [False] * n
                end_words = len(win.input_ids) - len(special.suffix)
                for j, pos in enumerate(win.first_pos):
                    nxt = win.first_pos[j + 1] if j + 1 < len(win.first_pos) else end_words
                    tags = tuple(sorted(word_labels[win.word_start + j]))
                    for p in range(pos, nxt):
                        labels[p] = tags
                        valid[p] = True
                examples.append(Example(c + i, win.input_ids, labels, valid))
    return examples, dropped


def batch_rng(seed: int, indices: Sequence[int]) -> random.Random:
    """A generator that depends on the seed and the batch only (same on every rank, and
    again after a resume)."""
    h = hashlib.sha256(f"{seed}:{','.join(map(str, indices))}".encode()).digest()
    return random.Random(int.from_bytes(h[:8], "big"))


# --------------------------------------------------------------------------- the task


class BiEncoderTask(Task):
    """The bi-encoder in :class:`~nertools.training.Trainer` (see the module doc)."""

    def __init__(self, args: BiEncoderArgs, model, tokenizer, label_tokenizer, train_records, dev_records,
                 inventory: dict[str, LabelInfo], given: Sequence[LabelInfo], fingerprints: dict, *,
                 max_length: int, ddp=None, log: Callable[[str], None] = progress.log):
        self.args, self.model, self.tokenizer, self.label_tokenizer = args, model, tokenizer, label_tokenizer
        self.ddp = ddp
        self.rank, self.world = dist_info()
        self.concepts = args.objective == "concepts"
        self.metric_label = "score 1/(1+BCE)" if self.concepts else "F1"
        self.key = normalize_concept if self.concepts else (lambda s: str(s).strip())
        self.inventory = inventory
        self.inventory_keys = list(inventory)
        self.given = {i.label: i for i in given}
        self.fingerprints = fingerprints
        self.log = log
        self.max_length = max_length
        self.overlap = min(args.window_overlap, max(0, max_length // 2))
        self.pad_id = tokenizer.pad_token_id or 0
        self.examples, self.dropped = build_examples(train_records, tokenizer, self.key,
                                                     multi_label=self.concepts, max_length=max_length,
                                                     overlap=self.overlap)
        self.n_train = len(train_records)
        self.dev_records = dev_records
        self.dev_examples = None
        if dev_records and self.concepts:
            self.dev_examples, _ = build_examples(dev_records, tokenizer, self.key, multi_label=True,
                                                  max_length=max_length, overlap=self.overlap)
        self.dev_labels = self._dev_labels() if dev_records and not self.concepts else []
        self.warnings: list[str] = []

    # ---- labels of a batch

    def verbalized(self, k: str, rng: random.Random | None) -> str:
        if self.concepts:
            return k
        return verbalize(self.inventory[k], self.args.verbalize, rng)

    def batch_labels(self, examples: Sequence[Example], rng: random.Random | None) -> tuple[list[str], dict[str, int]]:
        """``(texts, column)``: the label texts the label encoder reads for this batch (labels
        objective: "outside" first) and each label key's column (merged duplicates share one)."""
        keys: list[str] = []
        seen: set[str] = set()
        for ex in examples:
            for tags in ex.labels:
                for k in tags:
                    if k not in seen:
                        seen.add(k)
                        keys.append(k)
        if self.args.negatives and rng is not None:
            others = [k for k in self.inventory_keys if k not in seen]
            keys.extend(rng.sample(others, min(self.args.negatives, len(others))))
        texts = [self.verbalized(k, rng) for k in keys]
        if not self.concepts:
            texts = [OUTSIDE_TEXT] + texts
        unique, index = merge_duplicates(texts)
        offset = 0 if self.concepts else 1
        return unique, {k: index[i + offset] for i, k in enumerate(keys)}

    # ---- data and loss

    def num_examples(self) -> int:
        return len(self.examples)

    def make_batch(self, examples: Sequence[Example], local: Sequence[Example], rng) -> dict:
        import torch

        from nertools.biencoder.model import label_inputs
        from nertools.runtime.batching import pad_batch

        texts, column = self.batch_labels(examples, rng)
        n_cols = len(texts)
        counted = sum(sum(ex.valid) for ex in examples)
        total = float(counted * n_cols if self.concepts else counted)
        rows = list(local) or [examples[0]]      # a rank without examples runs one that counts nothing
        ids, att = pad_batch([ex.input_ids for ex in rows], self.pad_id)
        width = ids.shape[1]
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        if self.concepts:
            targets = torch.zeros((len(rows), width, n_cols), dtype=torch.float)
        else:
            targets = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        if local:
            for i, ex in enumerate(rows):
                for p, (tags, ok) in enumerate(zip(ex.labels, ex.valid)):
                    if not ok:
                        continue
                    mask[i, p] = True
                    if self.concepts:
                        for k in tags:
                            targets[i, p, column[k]] = 1.0
                    else:
                        targets[i, p] = column[tags[0]] if tags else 0
        batch = {"input_ids": ids, "attention_mask": att, "mask": mask, "targets": targets, "total": total}
        if not texts:  # concepts: no sentence of the batch has one, so there is nothing to score
            batch["empty"] = True
            return batch
        batch.update(label_inputs(self.label_tokenizer, texts))
        return batch

    def collate(self, indices):
        examples = [self.examples[i] for i in indices]
        local = examples[self.rank::self.world]
        return self.make_batch(examples, local, batch_rng(self.args.seed, indices))

    def batch_loss(self, model, batch: dict, total: float):
        from nertools.biencoder.losses import concept_bce_loss, label_ce_loss

        if batch.get("empty"):  # a zero loss (zero gradients) on every rank alike
            return sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
        logits = model(batch["input_ids"], batch["attention_mask"], batch["label_input_ids"],
                       batch["label_attention_mask"], batch["label_pool_mask"])
        if self.concepts:
            return concept_bce_loss(logits, batch["targets"], batch["mask"], total=total)
        return label_ce_loss(logits, batch["targets"], total=total)

    def loss(self, model, batch, ctx: StepContext):
        with ctx.autocast():
            local = self.batch_loss(self.ddp if self.ddp is not None else model, batch, batch["total"])
        if self.world == 1:
            return local
        import torch.distributed as dist

        shown = local.detach().clone()
        dist.all_reduce(shown)              # sum over ranks = the loss of the whole batch
        scaled = local * self.world         # DDP averages gradients: this makes them sum
        return scaled + (shown - scaled).detach()

    # ---- evaluation

    def _dev_labels(self) -> list[LabelInfo]:
        labels: list[str] = []
        for r in self.dev_records:
            for s in r.get("spans") or []:
                if s["label"] not in labels:
                    labels.append(s["label"])
        if not labels:
            raise DataError("no spans in the dev data: the labels objective selects the model by the dev F1 "
                            "of zero-shot tagging, which needs gold entities")
        return [self.given.get(lab) or self.inventory.get(lab) or LabelInfo(lab) for lab in labels]

    def evaluate(self, model, ctx: StepContext) -> dict:
        if not self.dev_records:
            return {"score": float(ctx.step), "f1": float(ctx.step), "note": "no --dev: the last model is kept"}
        if self.concepts:
            return self._dev_loss(model, ctx)
        return self.dev_f1(model, ctx)

    def dev_f1(self, model, ctx: StepContext) -> dict:
        texts = [OUTSIDE_TEXT] + [verbalize(i, self.args.verbalize) for i in self.dev_labels]
        was = model.training
        model.eval()
        try:
            vecs = label_vectors(model, self.label_tokenizer, texts, device=ctx.device)
            scores = word_scores(model, self.tokenizer, self.dev_records, vecs, scoring="softmax",
                                 max_length=self.max_length, overlap=self.overlap,
                                 max_tokens=self.args.eval_max_tokens, device=ctx.device)
        finally:
            if was:
                model.train()
        names = [i.label for i in self.dev_labels]
        predicted = [spans_for(r, decode(s, names, scoring="softmax")) for r, s in zip(self.dev_records, scores)]
        metrics = span_metrics(self.dev_records, predicted)
        metrics["labels"] = {i.label: verbalize(i, self.args.verbalize) for i in self.dev_labels}
        return metrics

    def _dev_loss(self, model, ctx: StepContext) -> dict:
        import torch

        was = model.training
        model.eval()
        total_loss, n = 0.0, 0
        bs = self.args.batch_size
        try:
            with torch.inference_mode():
                for a in range(0, len(self.dev_examples), bs):
                    exs = self.dev_examples[a:a + bs]
                    batch = self.make_batch(exs, exs, None)
                    from nertools.training.loop import to_device

                    batch = to_device(batch, ctx.device)
                    with ctx.autocast():
                        loss = self.batch_loss(model, batch, batch["total"])
                    total_loss += float(loss) * len(exs)
                    n += len(exs)
        finally:
            if was:
                model.train()
        loss = total_loss / max(1, n)
        return {"score": round(1.0 / (1.0 + loss), 6), "loss": round(loss, 6), "windows": n}

    # ---- checkpoint/resume and output

    def run_config(self) -> dict:
        args = asdict(self.args)
        return {"args": args, "data": {k: v["sha256"] for k, v in self.fingerprints.items()},
                "labels": list(self.inventory_keys)}

    def config_differences(self, saved: dict, now: dict) -> list[str]:
        from nertools.training.checkpoint import describe_config_differences

        return describe_config_differences(saved, now, self.fingerprints)

    def oom_hint(self) -> str:
        return "lower --batch-size (raise --grad-accum to keep the batch) or --max-length"

    def owned_files(self, directory: Path) -> set[str] | None:
        return written_files(directory)

    def describe(self) -> str:
        what = "concepts" if self.concepts else "labels"
        shown = ", ".join(self.inventory_keys[:8]) + (", ..." if len(self.inventory_keys) > 8 else "")
        par = f"; {self.world} processes" if self.world > 1 else ""
        return (f"{self.n_train} train sentences -> {len(self.examples)} windows; {len(self.inventory_keys)} "
                f"{what} ({shown}){par}")

    def meta(self, state) -> dict:
        args = self.args
        labels = {k: {"description": i.description, "names": i.all_names(),
                      "verbalized": self.verbalized(k, None)} for k, i in self.inventory.items()}
        return {"format": META_FORMAT, "version": 1, "kind": "biencoder", "objective": args.objective,
                "scoring": "sigmoid" if self.concepts else "softmax", "tau": args.tau,
                "similarity": args.similarity, "pooling": args.pooling, "shared_encoder": args.shared_encoder,
                "outside_text": None if self.concepts else OUTSIDE_TEXT,
                "text_encoder": TEXT_DIR, "label_encoder": TEXT_DIR if args.shared_encoder else LABEL_DIR,
                "max_length": self.max_length, "window_overlap": self.overlap,
                "base_model": args.model, "label_base_model": args.label_model or args.model, "init": args.init,
                "training_labels": labels, "training_args": asdict(args) | {"lr": args.learning_rate()},
                "data": self.fingerprints, "dev_metrics": state.best_metrics, "best_step": state.best_step,
                "steps_run": state.step, "history": state.history,
                "selection": ("best dev F1 of zero-shot tagging with the dev labels" if not self.concepts
                              else "best dev score 1/(1+BCE)") if self.dev_records else "last step (no --dev)",
                "warnings": list(self.warnings)}

    def save(self, model, directory: Path, state) -> dict:
        directory = Path(directory)
        model.text_encoder.save_pretrained(directory / TEXT_DIR)
        self.tokenizer.save_pretrained(directory / TEXT_DIR)
        if not model.shared:
            model.label_encoder.save_pretrained(directory / LABEL_DIR)
            self.label_tokenizer.save_pretrained(directory / LABEL_DIR)
        meta = self.meta(state)
        meta["files"] = sorted(set(os.listdir(directory)) | {META_FILE})
        (directory / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return meta


# --------------------------------------------------------------------------- entry point


def _encoders(args: BiEncoderArgs):
    """``(text model, text tokenizer, label model or None, label tokenizer)``."""
    from nertools.biencoder.model import load_encoder

    if args.init:
        from nertools.biencoder.tagger import read_meta

        meta = read_meta(args.init)
        p = Path(args.init)
        text, tok = load_encoder(str(p / TEXT_DIR), subject=f"--init {args.init} (text encoder)")
        if args.shared_encoder:
            return text, tok, None, tok
        label_dir = p / (TEXT_DIR if meta.get("shared_encoder") else LABEL_DIR)
        label, ltok = load_encoder(str(label_dir), subject=f"--init {args.init} (label encoder)")
        return text, tok, label, ltok
    text, tok = load_encoder(args.model, subject=f"text encoder {args.model!r}")
    if args.shared_encoder:
        return text, tok, None, tok
    label, ltok = load_encoder(args.label_model or args.model,
                               subject=f"label encoder {args.label_model or args.model!r}")
    return text, tok, label, ltok


def train_biencoder(args: BiEncoderArgs, train_records: Sequence[dict], dev_records: Sequence[dict] | None,
                    out: str | os.PathLike, *, label_desc: Sequence[LabelInfo] = (),
                    train_path=None, dev_path=None, resume: bool = False,
                    log: Callable[[str], None] = progress.log) -> dict:
    """Train a bi-encoder on canonical records and write the model directory ``out``
    (see the module doc); returns its ``nertools.json``. ``label_desc``: label descriptions
    and names (a ``--label-desc`` file, :func:`nertools.biencoder.labels.read_label_file`).
    Under torchrun the process group is joined (and left) here."""
    args.check()
    if args.objective not in OBJECTIVES:
        raise UsageError(f"--objective {args.objective!r}: choose one of {', '.join(OBJECTIVES)}")
    if not args.model and not args.init:
        raise UsageError("give --model ENCODER (or --init BIENCODER_DIR)")
    out_path = Path(out)
    joined = init_distributed(args.device)
    rank, world = dist_info()
    if rank != 0:
        log = _silent
    try:
        if rank == 0:
            check_output_paths(out_path, resume)
        concepts = args.objective == "concepts"
        key = normalize_concept if concepts else (lambda s: str(s).strip())
        inventory = label_inventory(train_records, key, [LabelInfo(key(i.label), i.description, i.names)
                                                         for i in label_desc])
        if not inventory:
            raise DataError("no labelled mentions in the training data (spans, or placed annotation items): "
                            "nothing to learn", path=None if train_path is None else str(train_path))
        dev_records = list(dev_records or [])
        if dev_records and not concepts and not any(r.get("spans") for r in dev_records):
            raise DataError("no spans in the dev data: the labels objective selects the model by the dev F1 of "
                            "zero-shot tagging, which needs gold entities",
                            path=None if dev_path is None else str(dev_path))
        fingerprints = {"train": records_fingerprint(train_records, train_path)}
        if dev_records:
            fingerprints["dev"] = records_fingerprint(dev_records, dev_path)
        seed_everything(args.seed)
        log(f"loading {args.init or args.model} ...")
        text, tok, label, ltok = _encoders(args)
        from nertools.biencoder.model import BiEncoderModel, freeze_bottom, num_layers
        from nertools.runtime.models import model_window, resolve_device

        model = BiEncoderModel(text, label, pooling=args.pooling, similarity=args.similarity, tau=args.tau)
        n_freeze = num_layers(text) // 2 if args.freeze_layers is None else args.freeze_layers
        frozen = freeze_bottom(text, n_freeze)
        if frozen:
            log(f"froze the embeddings and the bottom {frozen} of {num_layers(text)} text-encoder layers")
        device = resolve_device(args.device)
        ddp = None
        if world > 1:
            import torch
            from torch.nn.parallel import DistributedDataParallel

            if device.type == "cuda":
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            model.to(device)
            ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=True)
        max_length = model_window(text, tok, args.max_length)
        task = BiEncoderTask(args, model, tok, ltok, train_records, dev_records, inventory, label_desc,
                             fingerprints, max_length=max_length, ddp=ddp, log=log)
        if task.dropped:
            log(f"note: {task.dropped} overlapping mention(s) left out (the labels objective takes one label "
                "per word, longest mention first)")
        n_long = len(task.examples) - len({ex.record for ex in task.examples})
        if n_long:
            log(f"note: {n_long} extra window(s) for sentences longer than {max_length} sub-tokens")
        trainer = DistributedTrainer(model, task, args.trainer_config(), out=out_path, device=device,
                                     resume=resume, log=log)
        return trainer.fit()
    finally:
        if joined:
            import torch.distributed as dist

            dist.destroy_process_group()


def _silent(message: str) -> None:
    pass
