"""A token-classification tagger: BIO tags on the first sub-token of each word.

The pieces, from records to spans and back:

* :class:`LabelScheme` — the BIO tag set of a label set (``O``, ``B-X``, ``I-X`` ...), spans
  to per-word tag ids and per-word probabilities back to scored spans.
* :func:`word_pieces` — the sub-token ids of every word of a record (from the tokenizer's
  character offsets, so it works for WordPiece, SentencePiece and byte-level BPE alike).
* :func:`make_windows` — a sentence longer than the model's window is split into overlapping
  windows of whole words; every word is *owned* by the window where it has the most context
  on both sides, and its prediction is taken from there. Nothing is truncated (a single
  word longer than a whole window keeps only its first pieces: only the first one is tagged).
* :func:`token_batches` — windows grouped by length into batches under a token budget
  (:mod:`nertools.runtime.batching`).
* :func:`load_token_classifier` — any Hugging Face encoder or decoder with a
  token-classification head, including GGUF files (through
  :func:`nertools.runtime.models.load_pretrained`: the de-quantised causal LM is cached, and its
  base weights are copied into a freshly built token-classification model).
* :class:`Tagger` — a model directory written by ``ner-selftrain`` (model + tokenizer +
  ``nertools.json``); :meth:`Tagger.tag` streams records and adds scored ``spans``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from nertools.errors import NertoolsError
from nertools.runtime.batching import pack_by_token_budget, pad_batch
from nertools.runtime.models import (TOKEN_CLASSIFIER, load_pretrained, model_window, prepare_tokenizer,  # noqa: F401
                                     resolve_device, resolve_dtype)
from nertools.runtime.progress import quiet_transformers

#: Name of the metadata file of a model directory.
META_FILE = "nertools.json"
META_FORMAT = "nertools-tagger"
IGNORE = -100


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class LabelScheme:
    """BIO2 tags for ``labels``: index 0 is ``O``, then ``B-L``, ``I-L`` for each label.

    Spans become tags through :func:`nertools.core.tags.encode` and tags spans through
    :func:`nertools.core.tags.decode` (one BIO implementation); what this class adds is the
    tag ids, the choice of spans a tag sequence can hold (:meth:`non_overlapping`) and scores.
    """

    labels: tuple[str, ...]

    @classmethod
    def from_records(cls, records: Iterable[dict]) -> "LabelScheme":
        found = sorted({s["label"] for r in records for s in r.get("spans", [])})
        return cls(tuple(found))

    @property
    def tags(self) -> list[str]:
        out = ["O"]
        for lab in self.labels:
            out += [f"B-{lab}", f"I-{lab}"]
        return out

    @property
    def num_tags(self) -> int:
        return 1 + 2 * len(self.labels)

    @staticmethod
    def non_overlapping(spans: Sequence[dict]) -> tuple[list[dict], int]:
        """The spans a tag sequence can hold, and how many were left out.

        Spans are taken by start, the longest first at the same start (input order breaks
        ties); a span overlapping one already taken is left out. So of two overlapping spans
        the one starting earlier wins, and of two starting together the longer one.
        """
        kept: list[dict] = []
        reach = -1  # last token covered by a kept span
        for s in sorted(spans, key=lambda s: (s["token_start"], -s["token_end"])):
            if s["token_start"] <= reach:
                continue
            kept.append(s)
            reach = s["token_end"]
        return kept, len(spans) - len(kept)

    def tag_ids(self, n_words: int, spans: Sequence[dict]) -> tuple[list[int], int]:
        """Per-word tag ids for ``spans``; returns ``(ids, n_dropped)``.

        Spans with an unknown label, or overlapping a span kept before them (see
        :meth:`non_overlapping`), are dropped and counted: BIO cannot represent overlaps.
        """
        from nertools.core.tags import encode

        known = [s for s in spans if s["label"] in self._label_set]
        kept, overlapping = self.non_overlapping(known)
        index = self._tag_index
        return [index[t] for t in encode(kept, n_words)], overlapping + len(spans) - len(known)

    @property
    def _label_set(self) -> frozenset:
        return frozenset(self.labels)

    @property
    def _tag_index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tags)}

    def decode(self, probs: np.ndarray) -> list[tuple[int, int, str, float]]:
        """Spans ``(token_start, token_end, label, score)`` from per-word tag probabilities.

        Each word takes its most probable tag and the tags are read by
        :func:`nertools.core.tags.decode`: an ``I-X`` that does not continue an ``X`` span
        starts a new one (the usual lenient repair). A span's score is the mean, over its
        words, of the probability of the tag that word received.
        """
        from nertools.core.tags import decode

        if len(probs) == 0:
            return []
        best = probs.argmax(-1).tolist()
        tags = self.tags
        spans = []
        for a, b, label in decode([tags[t] for t in best]):
            total = sum(float(probs[i, best[i]]) for i in range(a, b + 1))
            spans.append((a, b, label, total / (b - a + 1)))
        return spans


# --------------------------------------------------------------------------- sub-tokens


def word_pieces(tokenizer, records: Sequence[dict]) -> list[list[list[int]]]:
    """For each record, the sub-token ids of each of its words (``tokens``).

    The whole text is tokenised once with character offsets; a sub-token belongs to the word
    holding the first non-space character it covers. A word that gets no sub-token (a
    tokenizer that merged it into its neighbour, or dropped an odd character) is tokenised
    on its own, and as a last resort becomes the unknown token.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise NertoolsError("the tagger needs a fast (Rust) tokenizer with offset mappings")
    texts = [r["text"] for r in records]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    fallback = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
    out = []
    for r, ids, offsets in zip(records, enc["input_ids"], enc["offset_mapping"]):
        toks = r["tokens"]
        char2word = np.full(len(r["text"]) + 1, -1, dtype=np.int64)
        for w, t in enumerate(toks):
            char2word[t["start"]:t["end"]] = w
        pieces: list[list[int]] = [[] for _ in toks]
        for tid, (s, e) in zip(ids, offsets):
            if e <= s:
                continue
            hit = char2word[s:e]
            hit = hit[hit >= 0]
            if len(hit):
                pieces[int(hit[0])].append(tid)
        for w, p in enumerate(pieces):
            if not p:
                alone = tokenizer(toks[w]["text"], add_special_tokens=False)["input_ids"]
                pieces[w] = list(alone) or [fallback]
        out.append(pieces)
    return out


@dataclass
class Window:
    """Words ``[word_start, word_end)`` of record ``record`` as one model input.

    ``input_ids`` include the model's special tokens; ``first_pos[i]`` is the position of
    the first sub-token of word ``word_start + i``. ``own_start..own_end`` (exclusive) are the
    words whose prediction this window provides.
    """

    record: int
    word_start: int
    word_end: int
    input_ids: list[int]
    first_pos: list[int]
    own_start: int = 0
    own_end: int = 0
    labels: list[int] = field(default_factory=list)   # per word of the window (training)
    weights: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class SpecialTokens:
    """How the tokenizer wraps a sequence: ``prefix`` ids before it, ``suffix`` ids after."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer) -> "SpecialTokens":
        # encode a probe word with and without special tokens and locate the plain ids
        plain = list(tokenizer("probe", add_special_tokens=False)["input_ids"])
        built = list(tokenizer("probe", add_special_tokens=True)["input_ids"])
        for k in range(len(built) - len(plain) + 1):
            if built[k:k + len(plain)] == plain:
                return cls(tuple(built[:k]), tuple(built[k + len(plain):]))
        raise NertoolsError("cannot tell which special tokens the tokenizer adds")

    @property
    def count(self) -> int:
        return len(self.prefix) + len(self.suffix)


def window_ranges(lengths: Sequence[int], budget: int, overlap: int) -> list[tuple[int, int]]:
    """Split words with sub-token ``lengths`` into windows of at most ``budget`` sub-tokens.

    Windows are ``(start, end)`` word ranges; consecutive windows share about ``overlap``
    sub-tokens of whole words (at least one word is always new). One window when it all fits.
    """
    if budget < 1:
        raise ValueError("window budget must be >= 1 sub-token")
    n = len(lengths)
    lens = [min(x, budget) for x in lengths]
    if sum(lens) <= budget:
        return [(0, n)]
    ranges = []
    start = 0
    while True:
        end, used = start, 0
        while end < n and used + lens[end] <= budget:
            used += lens[end]
            end += 1
        ranges.append((start, end))
        if end >= n:
            return ranges
        # next window starts so that it re-reads about `overlap` sub-tokens of this one
        nxt, back = end, 0
        while nxt - 1 > start and back + lens[nxt - 1] <= overlap:
            nxt -= 1
            back += lens[nxt]
        start = max(nxt, start + 1)


def assign_owners(ranges: Sequence[tuple[int, int]], n_words: int) -> list[tuple[int, int]]:
    """For each window, the words it owns: the window where a word is farthest from an edge
    (ties go to the earlier window). Owned ranges are contiguous and partition the words."""
    owner = [0] * n_words
    for w in range(n_words):
        best, best_ctx = 0, -1
        for k, (a, b) in enumerate(ranges):
            if a <= w < b:
                ctx = min(w - a, b - 1 - w)
                if ctx > best_ctx:
                    best, best_ctx = k, ctx
        owner[w] = best
    owned = []
    for k in range(len(ranges)):
        ws = [w for w in range(n_words) if owner[w] == k]
        owned.append((ws[0], ws[-1] + 1) if ws else (0, 0))
    return owned


def make_windows(record_index: int, pieces: list[list[int]], special: SpecialTokens,
                 max_length: int, overlap: int) -> list[Window]:
    """Model inputs for one record (see :func:`window_ranges` and :func:`assign_owners`)."""
    budget = max_length - special.count
    if budget < 1:
        raise NertoolsError(f"max length {max_length} leaves no room after {special.count} special tokens")
    if not pieces:
        return []
    ranges = window_ranges([len(p) for p in pieces], budget, overlap)
    owned = assign_owners(ranges, len(pieces))
    windows = []
    for (a, b), (oa, ob) in zip(ranges, owned):
        ids = list(special.prefix)
        first = []
        for w in range(a, b):
            first.append(len(ids))
            ids.extend(pieces[w][:budget])
        ids.extend(special.suffix)
        windows.append(Window(record_index, a, b, ids, first, oa, ob))
    return windows


#: Most windows in one inference batch, however short they are.
MAX_BATCH_ROWS = 256


def token_batches(windows: Sequence[Window], max_tokens: int, max_batch: int = MAX_BATCH_ROWS) -> list[list[int]]:
    """Indices of ``windows`` grouped into batches of similar length, each with
    ``batch size × longest window <= max_tokens`` (a window longer than the budget goes alone);
    see :func:`nertools.runtime.batching.pack_by_token_budget`."""
    return pack_by_token_budget([len(w) for w in windows], max_tokens, max_rows=max_batch)


def collate(windows: Sequence[Window], pad_id: int, with_labels: bool = False) -> dict:
    """Padded tensors for a batch: ``input_ids``, ``attention_mask``, ``first`` (a boolean mask
    of first sub-tokens) and, for training, ``labels`` (-100 elsewhere) and ``weights``."""
    import torch

    ids, att = pad_batch([w.input_ids for w in windows], pad_id)
    n = ids.shape[1]
    first = torch.zeros((len(windows), n), dtype=torch.bool)
    labels = torch.full((len(windows), n), IGNORE, dtype=torch.long)
    weights = torch.zeros((len(windows), n), dtype=torch.float)
    for i, w in enumerate(windows):
        pos = torch.tensor(w.first_pos, dtype=torch.long)
        first[i, pos] = True
        if with_labels:
            labels[i, pos] = torch.tensor(w.labels, dtype=torch.long)
            weights[i, pos] = torch.tensor(w.weights, dtype=torch.float)
    batch = {"input_ids": ids, "attention_mask": att, "first": first}
    if with_labels:
        batch["labels"] = labels
        batch["weights"] = weights
    return batch


# --------------------------------------------------------------------------- models
# model_window, prepare_tokenizer and quiet_transformers live in nertools.runtime (imported above)


def load_token_classifier(name: str, scheme: LabelScheme, *, dtype=None):
    """``(model, tokenizer)`` with a fresh token-classification head for ``scheme``.

    ``name`` is a Hugging Face name, a folder, a GGUF file or an alias of
    :data:`nertools.runtime.models.ALIASES` (see :func:`nertools.runtime.models.load_pretrained`:
    a GGUF file's de-quantised language model is cached, its base weights are copied into a
    freshly built token-classification model).
    """
    quiet_transformers()
    tags = scheme.tags
    head = {"num_labels": len(tags), "id2label": dict(enumerate(tags)),
            "label2id": {t: i for i, t in enumerate(tags)}}
    model, tokenizer = load_pretrained(name, TOKEN_CLASSIFIER, subject=f"model {name!r} for token classification",
                                       **head)
    prepare_tokenizer(tokenizer)
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if dtype is not None:
        model.to(dtype)
    return model, tokenizer


# --------------------------------------------------------------------------- inference


def windowed_word_rows(model, tokenizer, records: Sequence[dict], n_cols: int, forward, *,
                       max_length: int, overlap: int, max_tokens: int,
                       special: SpecialTokens | None = None) -> list[np.ndarray]:
    """Per record a ``[n_words, n_cols]`` float32 array of one row per word, from a model run
    over windows: long records are windowed (:func:`make_windows`), windows are batched by
    token budget (:func:`token_batches`), and each word's row is its first sub-token's row of
    the window that owns it. ``forward(batch)`` gets the :func:`collate`d batch (on the CPU)
    and returns ``[batch, positions, n_cols]`` rows as a NumPy array. ``model`` is put in eval
    mode (and back) around the run, under ``torch.inference_mode``. The one windowed loop of
    :func:`predict_probs` (tag probabilities) and the bi-encoder's
    :func:`nertools.biencoder.tagger.word_scores` (label scores)."""
    import torch

    special = special or SpecialTokens.of(tokenizer)
    pieces = word_pieces(tokenizer, records)
    windows: list[Window] = []
    for i, p in enumerate(pieces):
        windows.extend(make_windows(i, p, special, max_length, overlap))
    out = [np.zeros((len(r["tokens"]), n_cols), dtype=np.float32) for r in records]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for idx in token_batches(windows, max_tokens):
                wins = [windows[i] for i in idx]
                rows = forward(collate(wins, tokenizer.pad_token_id or 0))
                for row, w in zip(rows, wins):
                    for j in range(w.own_start, w.own_end):
                        out[w.record][j] = row[w.first_pos[j - w.word_start]]
    finally:
        if was_training:
            model.train()
    return out


def predict_probs(model, tokenizer, records: Sequence[dict], *, scheme: LabelScheme,
                  max_length: int, overlap: int, max_tokens: int, device=None,
                  autocast_dtype=None, special: SpecialTokens | None = None) -> list[np.ndarray]:
    """Per-word tag probabilities (``[n_words, n_tags]`` float32) for each record
    (:func:`windowed_word_rows`)."""
    import torch

    device = device or next(model.parameters()).device

    def forward(batch):
        kwargs = {"input_ids": batch["input_ids"].to(device),
                  "attention_mask": batch["attention_mask"].to(device)}
        if autocast_dtype is not None and autocast_dtype != torch.float32:
            with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                logits = model(**kwargs).logits
        else:
            logits = model(**kwargs).logits
        return torch.softmax(logits.float(), -1).cpu().numpy()

    return windowed_word_rows(model, tokenizer, records, scheme.num_tags, forward, max_length=max_length,
                              overlap=overlap, max_tokens=max_tokens, special=special)


def spans_for(record: dict, probs: np.ndarray, scheme: LabelScheme, threshold: float = 0.0,
              source: str = "ner-tag") -> list[dict]:
    """Canonical scored spans for one record from its per-word probabilities."""
    toks = record["tokens"]
    spans = []
    for a, b, label, score in scheme.decode(probs):
        if score < threshold:
            continue
        spans.append({"start": toks[a]["start"], "end": toks[b]["end"], "token_start": a,
                      "token_end": b, "label": label, "score": round(score, 6), "source": source})
    return spans


# --------------------------------------------------------------------------- model directory


def is_model_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / META_FILE).is_file()


def written_files(path: str | os.PathLike) -> set[str] | None:
    """The entries ``ner-selftrain`` wrote into the model directory ``path`` (the ``files``
    manifest of its ``nertools.json``); ``None`` when there is none (written by an older
    nertools, or unreadable)."""
    try:
        files = json.loads((Path(path) / META_FILE).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    return {str(f) for f in files} if isinstance(files, list) else None


def read_meta(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_dir():
        raise NertoolsError(f"model directory not found: {path}")
    f = p / META_FILE
    if not f.is_file():
        raise NertoolsError(f"{path} is not a nertools tagger directory (no {META_FILE}; "
                            "train one with ner-selftrain)")
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise NertoolsError(f"cannot read {f}: {e}") from None
    if meta.get("format") != META_FORMAT:
        raise NertoolsError(f"{f} is not a {META_FORMAT} file")
    return meta


class Tagger:
    """A trained tagger loaded from a model directory (``ner-selftrain --out DIR``)."""

    def __init__(self, model, tokenizer, scheme: LabelScheme, *, max_length: int, overlap: int,
                 device, meta: dict | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.scheme = scheme
        self.max_length = max_length
        self.overlap = overlap
        self.device = device
        self.meta = meta or {}
        self.special = SpecialTokens.of(tokenizer)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "auto", dtype: str = "auto") -> "Tagger":
        """Load a model directory. ``dtype`` float32 runs in full precision; bfloat16/float16
        cast the weights (on CPU, bfloat16 is the one that helps)."""
        meta = read_meta(path)  # before importing torch: a wrong path fails fast

        quiet_transformers()
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        model, tokenizer = load_pretrained(str(path), TOKEN_CLASSIFIER, dtype=dt, subject=f"tagger {path}")
        prepare_tokenizer(tokenizer)
        model.to(dev)
        model.eval()
        scheme = LabelScheme(tuple(meta["labels"]))
        if model.config.num_labels != scheme.num_tags:
            raise NertoolsError(f"{path}: model has {model.config.num_labels} outputs but "
                                f"{META_FILE} lists {scheme.num_tags} tags")
        return cls(model, tokenizer, scheme, max_length=int(meta["max_length"]),
                   overlap=int(meta.get("window_overlap", 0)), device=dev, meta=meta)

    def probs(self, records: Sequence[dict], max_tokens: int = 8192) -> list[np.ndarray]:
        return predict_probs(self.model, self.tokenizer, records, scheme=self.scheme,
                             max_length=self.max_length, overlap=self.overlap,
                             max_tokens=max_tokens, device=self.device, special=self.special)

    def tag(self, records: Iterable[dict], *, threshold: float = 0.0, max_tokens: int = 8192,
            chunk: int = 512) -> Iterator[dict]:
        """Stream ``records`` (canonical) with their ``spans`` replaced by predictions.

        Records are processed ``chunk`` at a time (batched by ``max_tokens``) and yielded in
        input order; every other field is kept.
        """
        buf: list[dict] = []
        for rec in records:
            buf.append(rec)
            if len(buf) >= chunk:
                yield from self._tag_chunk(buf, threshold, max_tokens)
                buf = []
        if buf:
            yield from self._tag_chunk(buf, threshold, max_tokens)

    def _tag_chunk(self, recs: list[dict], threshold: float, max_tokens: int) -> Iterator[dict]:
        with_tokens = [r for r in recs if r["tokens"]]
        probs = iter(self.probs(with_tokens, max_tokens)) if with_tokens else iter(())
        for r in recs:
            if not r["tokens"]:
                r["spans"] = []
            else:
                r["spans"] = spans_for(r, next(probs), self.scheme, threshold)
            yield r
