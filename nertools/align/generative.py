"""Generative NER for LAR (methods-spec §4.2-4.6, §4.11): a language model fine-tuned to write
the linearised answer of :mod:`nertools.align.linearize`, on :class:`nertools.training.Trainer`.
Two architectures, told apart by the model's config (``is_encoder_decoder``):

* **causal** (decoder-only: SmolLM2, Qwen, Llama, ...). Example = prompt (BOS + instruction +
  sentence + ``Answer:``) followed by the answer and EOS in one sequence; the loss is the
  token cross-entropy on the answer tokens and EOS only (prompt and padding are ``-100``).
  Prompts longer than ``max_prompt`` keep their last tokens (the sentence end and
  ``Answer:``). Prediction: greedy decoding of the continuation, left padding.
* **seq2seq** (encoder-decoder, any ``AutoModelForSeq2SeqLM``: Flan-T5, the paper's backbone;
  tested on T5). The prompt, with the tokenizer's own special tokens (T5: a final EOS), is
  the encoder input (its last ``max_prompt`` tokens); the labels are the answer tokens and
  EOS, and the model builds its decoder input from them (the config's
  ``decoder_start_token_id``). Prediction: greedy decoding from the decoder start, right
  padding of the encoder input.

Both: answers longer than ``max_answer`` are cut (counted); generation is batched by a token
budget (:func:`nertools.runtime.batching.pack_by_token_budget`) and padded by
:func:`~nertools.runtime.batching.pad_batch`; the text is parsed back to token spans
(:meth:`~nertools.align.linearize.Linearizer.parse`), dropped items counted. Items are joined
by a real newline, or by the literal ``" \\n "`` when the tokenizer cannot write a newline
(T5's vocabulary: :func:`answer_separator`, methods-spec §4.2).

* Dev: strict span F1 of the parsed predictions (the tagger's metric,
  :func:`nertools.tagging.train.span_metrics`) selects the checkpoint.
* Output: a model directory (Hugging Face model + tokenizer + ``nertools.json`` of format
  ``nertools-align-generative`` holding the linearizer, the architecture and the separator).
  Such a directory is also a valid ``--model`` for a further stage: train the source stage
  first (M_s), then reassign from it.
* Precision: T5 checkpoints are known to overflow in float16 (bf16 is what they were trained
  in); ``--precision auto`` picks bf16 where the GPU has it, and a seq2seq run in float16 is
  warned about.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from nertools.align.linearize import LITERAL_SEPARATOR, SEPARATOR, Linearizer, ParseStats
from nertools.errors import DataError, NertoolsError
from nertools.runtime import progress
from nertools.training.loop import StepContext, Task, Trainer, TrainerConfig

META_FILE = "nertools.json"
META_FORMAT = "nertools-align-generative"
IGNORE = -100


from nertools.training.loop import knob  # noqa: E402

_knob = knob  # the shared field helper (nertools.training.loop.knob)


@dataclass
class GenArgs:
    """The knobs of a generative run (stored in ``nertools.json``); field metadata declares
    each ``ner-align train`` option (see :func:`nertools.cli.options.dataclass_options`)."""

    model: str = field(default="", metadata={"cli": False})
    seed: int = _knob(42, "Seeds the data order.", min=0, max=2**32 - 1)
    lr: float = _knob(5e-5, "Peak learning rate (LAR: 5e-5).", min=0, min_open=True)
    batch_size: int = _knob(8, "Sentences per micro-batch (LAR: 8).", min=1)
    grad_accum: int = _knob(1, "Micro-batches per optimiser step.", min=1)
    epochs: float = _knob(3.0, min=0, min_open=True)
    max_steps: int | None = _knob(None, "Optimiser steps (overrides --epochs).", min=1)
    warmup_ratio: float = _knob(0.1, min=0, max=1)
    weight_decay: float = _knob(0.01, min=0)
    eval_every: int | None = _knob(None, "Evaluate on dev every N steps [default: once per epoch].", min=1)
    patience: int = _knob(5, "Stop after N evaluations without a better dev F1 (0: never).", min=0)
    max_prompt: int = _knob(256, "Prompt tokens kept (the last ones).", min=8)
    max_answer: int = _knob(128, "Answer tokens trained on (longer answers are cut, counted).", min=1)
    max_new_tokens: int = _knob(128, "Most tokens generated per sentence.", min=1)
    eval_sentences: int | None = _knob(None, "Score only the first N dev sentences at each evaluation "
                                             "(decoding is the slow part on CPU).", min=1)
    batch_tokens: int = _knob(4096, "Token budget of a generation batch (prompt tokens x rows).", min=16)
    precision: str = _knob("auto", "Autocast dtype (auto: bf16/fp16 on CUDA, float32 on CPU).",
                           choices=("auto", "float32", "bfloat16", "float16"))
    device: str = field(default="auto", metadata={"cli": False})

    def trainer_config(self) -> TrainerConfig:
        return TrainerConfig(lr=self.lr, batch_size=self.batch_size, grad_accum=self.grad_accum,
                             epochs=self.epochs, max_steps=self.max_steps, warmup_ratio=self.warmup_ratio,
                             weight_decay=self.weight_decay, eval_every=self.eval_every,
                             patience=self.patience, seed=self.seed, precision=self.precision, metric="f1")


# --------------------------------------------------------------------------- tokens


def is_seq2seq(model_or_config) -> bool:
    """Whether a model (or its config) is an encoder-decoder (T5, BART) rather than a causal LM."""
    config = getattr(model_or_config, "config", model_or_config)
    return bool(getattr(config, "is_encoder_decoder", False))


def answer_separator(tokenizer) -> str:
    """:data:`~nertools.align.linearize.SEPARATOR` (a newline) when ``tokenizer`` encodes and
    decodes a newline unchanged, else :data:`~nertools.align.linearize.LITERAL_SEPARATOR`
    (T5's SentencePiece vocabulary normalises a newline to a space, so the items of an answer
    would run together)."""
    probe = "a\nb"
    ids = tokenizer(probe, add_special_tokens=False)["input_ids"]
    return SEPARATOR if "\n" in tokenizer.decode(ids, skip_special_tokens=True) else LITERAL_SEPARATOR


def encode_example(tokenizer, prompt: str, answer: str | None, max_prompt: int,
                   max_answer: int) -> tuple[list[int], int, bool]:
    """Causal LMs: ``(ids, prompt_length, answer_cut)``: BOS + prompt (last ``max_prompt``
    tokens), then (with ``answer``) the answer's tokens (at most ``max_answer - 1``) and EOS."""
    p = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    bos = tokenizer.bos_token_id
    if bos is not None and bos != tokenizer.eos_token_id:
        p = [bos] + p[-(max_prompt - 1):]
    else:
        p = p[-max_prompt:]
    if answer is None:
        return p, len(p), False
    a, cut = _answer_ids(tokenizer, answer, max_answer)
    return p + a, len(p), cut


def encode_seq2seq(tokenizer, prompt: str, answer: str | None, max_prompt: int,
                   max_answer: int) -> tuple[list[int], list[int], bool]:
    """Encoder-decoder models: ``(encoder ids, label ids, answer_cut)``: the prompt's last
    tokens wrapped in the tokenizer's special tokens (T5: ``... </s>``), at most ``max_prompt``
    in all, and (with ``answer``) the answer's tokens (at most ``max_answer - 1``) and EOS
    (no labels without an answer)."""
    p = list(tokenizer(prompt)["input_ids"])
    if len(p) > max_prompt:
        # keep the special tokens the tokenizer wraps the prompt in and the prompt's last tokens
        plain = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        extra = len(p) - len(plain)
        k = next((k for k in range(extra + 1) if p[k:k + len(plain)] == plain), 0)
        keep = max(1, max_prompt - extra)
        p = p[:k] + plain[-keep:] + p[k + len(plain):]
    if answer is None:
        return p, [], False
    a, cut = _answer_ids(tokenizer, answer, max_answer)
    return p, a, cut


def warn_fp16_seq2seq(model, dtype, log: Callable[[str], None]) -> bool:
    """Log (and return ``True``) when an encoder-decoder is to run in float16: T5 checkpoints
    were trained in bfloat16 and often overflow to NaN in float16."""
    import torch

    if not (is_seq2seq(model) and dtype == torch.float16):
        return False
    log("warning: an encoder-decoder (T5) in float16 often overflows to NaN; "
        "use bfloat16 or float32 (--precision / --dtype)")
    return True


def _answer_ids(tokenizer, answer: str, max_answer: int) -> tuple[list[int], bool]:
    a = list(tokenizer(answer, add_special_tokens=False)["input_ids"]) if answer else []
    cut = len(a) > max_answer - 1
    return a[:max_answer - 1] + [tokenizer.eos_token_id], cut


def prompt_ids(model, tokenizer, prompt: str, max_prompt: int) -> list[int]:
    """The input ids :func:`generate` continues for ``prompt`` (by architecture)."""
    if is_seq2seq(model):
        return encode_seq2seq(tokenizer, prompt, None, max_prompt, 1)[0]
    return encode_example(tokenizer, prompt, None, max_prompt, 1)[0]


def generate(model, tokenizer, prompts: Sequence[list[int]], *, max_new_tokens: int, batch_tokens: int,
             device=None, autocast_dtype=None) -> list[str]:
    """Greedy answers to token-id ``prompts`` in input order, decoded without special tokens:
    a causal LM's continuations (left-padded batches), or an encoder-decoder's decoder
    output (right-padded encoder inputs), in batches under a token budget."""
    import torch

    from nertools.runtime.batching import pack_by_token_budget, pad_batch

    device = device or next(model.parameters()).device
    seq2seq = is_seq2seq(model)
    out: list[str] = [""] * len(prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for idx in pack_by_token_budget([len(p) + max_new_tokens for p in prompts], batch_tokens):
                ids, mask = pad_batch([prompts[i] for i in idx], pad, side="right" if seq2seq else "left",
                                      device=device)
                ctx = (torch.autocast(device_type=device.type, dtype=autocast_dtype)
                       if autocast_dtype is not None and autocast_dtype != torch.float32 else _null())
                with ctx:
                    gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                         do_sample=False, num_beams=1, pad_token_id=pad,
                                         eos_token_id=tokenizer.eos_token_id)
                # a causal LM returns prompt + continuation; a seq2seq model the decoder side
                # only (decoder start token first, a special token decode skips)
                for row, i in zip((gen if seq2seq else gen[:, ids.shape[1]:]).tolist(), idx):
                    out[i] = tokenizer.decode(row, skip_special_tokens=True)
    finally:
        if was_training:
            model.train()
    return out


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def predict_spans(model, tokenizer, lin: Linearizer, records: Sequence[dict], *, max_prompt: int,
                  max_new_tokens: int, batch_tokens: int, autocast_dtype=None
                  ) -> tuple[list[list[dict]], list[str], ParseStats]:
    """``(spans per record, generated texts, parse counts)``; records without tokens get none."""
    todo = [i for i, r in enumerate(records) if r["tokens"]]
    prompts = [prompt_ids(model, tokenizer, lin.prompt(records[i]), max_prompt) for i in todo]
    texts = [""] * len(records)
    if prompts:
        for i, t in zip(todo, generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                       batch_tokens=batch_tokens, autocast_dtype=autocast_dtype)):
            texts[i] = t
    spans, stats = parse_texts(lin, records, texts)
    return spans, texts, stats


def parse_texts(lin: Linearizer, records: Sequence[dict], texts: Sequence[str]
                ) -> tuple[list[list[dict]], ParseStats]:
    """``(spans per record, summed parse counts)`` of generated ``texts`` (one per record;
    records without tokens get none)."""
    stats = ParseStats()
    spans = []
    for r, t in zip(records, texts):
        s, st = lin.parse(t, r) if r["tokens"] else ([], ParseStats())
        stats.add(st)
        spans.append(s)
    return spans, stats


# --------------------------------------------------------------------------- the task


class GenerativeTask(Task):
    """A causal or encoder-decoder LM writing the linearised answer (see the module doc)."""

    metric_label = "F1"

    def __init__(self, args: GenArgs, model, tokenizer, lin: Linearizer, train_records: Sequence[dict],
                 dev_records: Sequence[dict], fingerprints: dict, *, log: Callable[[str], None] = progress.log):
        self.args, self.tokenizer, self.lin = args, tokenizer, lin
        self.dev = list(dev_records)[:args.eval_sentences] if args.eval_sentences else list(dev_records)
        self.fingerprints, self.log = fingerprints, log
        self.seq2seq = is_seq2seq(model)
        self.separator = answer_separator(tokenizer)
        if self.seq2seq and _decoder_start(model) is None:
            raise NertoolsError(f"{args.model}: the encoder-decoder config has no decoder_start_token_id; "
                                "set it in config.json (T5: the padding id, 0)")
        encode = encode_seq2seq if self.seq2seq else encode_example
        # causal: (sequence, prompt length); seq2seq: (encoder ids, label ids)
        self.examples: list[tuple[list[int], int | list[int]]] = []
        self.cut = 0
        for r in train_records:
            if not r["tokens"]:
                continue
            ids, rest, cut = encode(tokenizer, lin.prompt(r), lin.answer(r, self.separator), args.max_prompt,
                                    args.max_answer)
            self.examples.append((ids, rest))
            self.cut += cut
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.last_stats = ParseStats()
        self._warned = not self.seq2seq  # the float16 warning (encoder-decoders only), once

    def num_examples(self) -> int:
        return len(self.examples)

    def collate(self, indices):
        import torch

        from nertools.runtime.batching import pad_batch

        rows = [self.examples[i] for i in indices]
        ids, mask = pad_batch([r[0] for r in rows], self.pad_id)
        if self.seq2seq:
            labels, _ = pad_batch([r[1] for r in rows], IGNORE)
            return {"input_ids": ids, "attention_mask": mask, "labels": labels}
        labels = torch.full_like(ids, IGNORE)
        for k, (seq, plen) in enumerate(rows):
            labels[k, plen:len(seq)] = torch.tensor(seq[plen:], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def loss(self, model, batch, ctx: StepContext):
        if not self._warned:
            self._warned = warn_fp16_seq2seq(model, ctx.dtype, self.log)
        with ctx.autocast():
            return model(**batch).loss

    def evaluate(self, model, ctx: StepContext) -> dict:
        from nertools.tagging.train import span_metrics

        spans, _texts, stats = predict_spans(model, self.tokenizer, self.lin, self.dev,
                                             max_prompt=self.args.max_prompt,
                                             max_new_tokens=self.args.max_new_tokens,
                                             batch_tokens=self.args.batch_tokens, autocast_dtype=ctx.dtype)
        self.last_stats = stats
        gold = [{"text": r["text"], "spans": r.get("spans", [])} for r in self.dev]
        metrics = span_metrics(gold, spans)
        metrics["parse"] = stats.as_dict()
        return metrics

    def run_config(self) -> dict:
        return {"args": asdict(self.args), "linearizer": self.lin.config(),
                "data": {k: v["sha256"] for k, v in self.fingerprints.items()}}

    def describe(self) -> str:
        return (f"{len(self.examples)} train sentences ({self.lin.format} format, "
                + ("encoder-decoder" if self.seq2seq else "causal") + " LM"
                + (", items separated by a literal \\n" if self.separator != SEPARATOR else "")
                + (f", {self.cut} answer(s) cut at {self.args.max_answer} tokens" if self.cut else "")
                + f"); {len(self.dev)} dev sentences scored per evaluation")

    def owned_files(self, directory: Path) -> set[str] | None:
        return written_files(directory)

    def oom_hint(self) -> str:
        return "lower --batch-size (raise --grad-accum), --max-prompt or --batch-tokens"

    def save(self, model, directory: Path, state) -> dict:
        args = self.args
        meta = {"format": META_FORMAT, "version": 1, "linearizer": self.lin.config(),
                "base_model": args.model, "training_args": asdict(args), "data": self.fingerprints,
                "dev_metrics": state.best_metrics, "best_step": state.best_step, "steps_run": state.step,
                "history": state.history, "answers_cut": self.cut,
                "architecture": "seq2seq" if self.seq2seq else "causal", "answer_separator": self.separator,
                "selection": "best dev F1 (strict span F1 of the parsed generations)"}
        model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        meta["files"] = sorted(set(os.listdir(directory)) | {META_FILE})
        (Path(directory) / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return meta


# --------------------------------------------------------------------------- model directories


def read_meta(path: str | os.PathLike) -> dict | None:
    """The ``nertools.json`` of a model directory, or ``None`` when there is none."""
    f = Path(path) / META_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise NertoolsError(f"cannot read {f}: {e}") from None


def is_generative_dir(path: str | os.PathLike) -> bool:
    meta = read_meta(path) if Path(path).is_dir() else None
    return bool(meta) and meta.get("format") == META_FORMAT


def written_files(path: str | os.PathLike) -> set[str] | None:
    meta = read_meta(path) if Path(path).is_dir() else None
    files = (meta or {}).get("files")
    return {str(f) for f in files} if isinstance(files, list) else None


def generator_kind(name: str) -> str:
    """:data:`~nertools.runtime.models.SEQ2SEQ` for an encoder-decoder config (T5, BART),
    else :data:`~nertools.runtime.models.CAUSAL`."""
    from nertools.runtime.models import CAUSAL, SEQ2SEQ, load_config

    return SEQ2SEQ if is_seq2seq(load_config(name)) else CAUSAL


def _decoder_start(model):
    start = getattr(model.config, "decoder_start_token_id", None)
    if start is None:
        start = getattr(getattr(model, "generation_config", None), "decoder_start_token_id", None)
    return start


def load_generator_lm(name: str):
    """``(model, tokenizer)`` of a causal or encoder-decoder LM for training (float32, CPU),
    from a name, folder, GGUF file or alias; a GGUF file is de-quantised once into the model
    cache first, so that the trained model can be saved (``save_pretrained`` refuses
    GGUF-loaded models)."""
    import torch

    from nertools.runtime.models import load_pretrained, model_source, prepare_tokenizer
    from nertools.runtime.progress import quiet_transformers

    quiet_transformers()
    kind = generator_kind(name)
    src = model_source(name)
    model, tokenizer = load_pretrained(src, kind, dtype=torch.float32)
    if src.gguf:
        src = model_source(name)
        if not src.cached:
            raise NertoolsError(f"cannot train {name!r}: its de-quantised copy could not be cached "
                                "(is NERTOOLS_MODEL_CACHE=0 set?); give a Hugging Face folder instead")
        model, tokenizer = load_pretrained(src, kind, dtype=torch.float32)
    model = _plain_copy(model)
    prepare_tokenizer(tokenizer)
    if tokenizer.eos_token_id is None:
        raise NertoolsError(f"{name}: the tokenizer has no end-of-sequence token; a generator needs one")
    return model, tokenizer


def _plain_copy(model):
    """``model`` as an ordinary (saveable) float32 model: the de-quantised GGUF cache keeps a
    ``quantization_config`` of method gguf in its config.json, and transformers then refuses
    ``save_pretrained``; the weights are copied into a model built from the config without it."""
    import copy

    import torch

    if getattr(model, "hf_quantizer", None) is None and not getattr(model.config, "quantization_config", None):
        return model
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    fresh = type(model)(config)
    fresh.load_state_dict({k: v.detach().to(torch.float32) for k, v in model.state_dict().items()})
    fresh.tie_weights()
    return fresh


def train_generative(args: GenArgs, lin: Linearizer, train_records: Sequence[dict], dev_records: Sequence[dict],
                     out: str | os.PathLike, *, train_path=None, dev_path=None, resume: bool = False,
                     log: Callable[[str], None] = progress.log) -> dict:
    """Fine-tune the causal or encoder-decoder LM ``args.model`` on ``lin``'s answers of ``train_records`` and write
    the model directory ``out``; returns its ``nertools.json``."""
    from nertools.tagging.train import records_fingerprint
    from nertools.training.checkpoint import check_output_paths, seed_everything

    check_output_paths(out, resume, is_generative_dir)
    lin.check_labels(train_records, None if train_path is None else str(train_path))
    lin.check_labels(dev_records, None if dev_path is None else str(dev_path))
    if not any(r.get("spans") for r in dev_records):
        raise DataError("no spans in the dev data: model selection needs gold entities",
                        path=None if dev_path is None else str(dev_path))
    fingerprints = {"train": records_fingerprint(train_records, train_path),
                    "dev": records_fingerprint(dev_records, dev_path)}
    seed_everything(args.seed)
    log(f"loading {args.model} ...")
    model, tokenizer = load_generator_lm(args.model)
    task = GenerativeTask(args, model, tokenizer, lin, train_records, dev_records, fingerprints, log=log)
    trainer = Trainer(model, task, args.trainer_config(), out=out, device=args.device, resume=resume, log=log)
    return trainer.fit()


class Generator:
    """A trained generative directory (``ner-align train --mode generative``)."""

    def __init__(self, model, tokenizer, meta: dict, device, *, off_candidate: str | None = None):
        self.model, self.tokenizer, self.meta, self.device = model, tokenizer, meta, device
        self.lin = Linearizer.from_config(meta["linearizer"], off_candidate=off_candidate)
        args = meta.get("training_args", {})
        self.max_prompt = int(args.get("max_prompt", 256))
        self.stats = ParseStats()

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "auto", dtype: str = "auto",
             off_candidate: str | None = None) -> "Generator":
        """``off_candidate``: the parser's off-candidate policy (``nertools.align.linearize``;
        default: the one the directory was trained with)."""
        from nertools.runtime.models import load_pretrained, prepare_tokenizer, resolve_device, resolve_dtype
        from nertools.runtime.progress import quiet_transformers

        meta = read_meta(path)
        if not meta or meta.get("format") != META_FORMAT:
            raise NertoolsError(f"{path} is not a generative ner-align model directory")
        quiet_transformers()
        dev = resolve_device(device)
        model, tokenizer = load_pretrained(str(path), generator_kind(str(path)), dtype=resolve_dtype(dtype, dev),
                                           subject=f"generator {path}")
        prepare_tokenizer(tokenizer)
        model.to(dev)
        model.eval()
        warn_fp16_seq2seq(model, next(model.parameters()).dtype, progress.log)
        return cls(model, tokenizer, meta, dev, off_candidate=off_candidate)

    def tag(self, records: Iterable[dict], *, max_new_tokens: int = 128, batch_tokens: int = 4096,
            chunk: int = 64, keep_text: bool = False) -> Iterator[dict]:
        """Stream records with ``spans`` replaced by the parsed generations (input order);
        ``keep_text`` keeps the raw generation in ``meta.generated``. Counts in :attr:`stats`."""
        buf: list[dict] = []

        def flush(buf):
            spans, texts, stats = predict_spans(self.model, self.tokenizer, self.lin, buf, max_prompt=self.max_prompt,
                                                max_new_tokens=max_new_tokens, batch_tokens=batch_tokens)
            self.stats.add(stats)
            for r, s, t in zip(buf, spans, texts):
                for x in s:
                    x["source"] = "ner-align"
                r["spans"] = s
                if keep_text:
                    r.setdefault("meta", {})["generated"] = t
                yield r

        for rec in records:
            buf.append(rec)
            if len(buf) >= chunk:
                yield from flush(buf)
                buf = []
        if buf:
            yield from flush(buf)
