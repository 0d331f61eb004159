"""Zero-shot tagging with a trained bi-encoder: ``ner-tag --model BIENCODER_DIR --labels ...``.

Per word (its first sub-token) the model scores every target label (label vectors computed
once per run). The score is a probability:

* ``softmax`` models (``--objective labels``): softmax over "outside" plus the target labels;
* ``sigmoid`` models (``--objective concepts``): the sigmoid of each label's logit.

Decoding (``--decoding``):

* ``argmax`` (default): the word takes the best label if that label beats "outside" (softmax
  models) and its score >= ``threshold``; otherwise it is outside. Default threshold: 0 for
  softmax models (plain argmax over outside + labels, as LITSET), 0.5 for sigmoid models.
* ``multi``: every label whose score >= ``threshold`` (default 0.5) is predicted on its own,
  so spans of different labels may overlap.

Spans: IO merging, consecutive words with the same label form one span; a span's ``score`` is
the mean score of its words. Records come out in the token-classifier tagger's form
(``spans`` replaced by ``{"start","end","token_start","token_end","label","score","source"}``).
Long sentences are split into overlapping windows (each word from the window where it has most
context), never truncated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from nertools.biencoder.labels import OUTSIDE_TEXT, LabelInfo, verbalize
from nertools.errors import NertoolsError, UsageError

META_FILE = "nertools.json"
META_FORMAT = "nertools-biencoder"
TEXT_DIR = "text_encoder"
LABEL_DIR = "label_encoder"
DECODINGS = ("argmax", "multi")
SCORINGS = ("softmax", "sigmoid")


def is_biencoder_dir(path: str | os.PathLike) -> bool:
    """A directory whose nertools.json says ``format: nertools-biencoder``."""
    try:
        meta = json.loads((Path(path) / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == META_FORMAT


def read_meta(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_dir():
        raise NertoolsError(f"model directory not found: {path}")
    try:
        meta = json.loads((p / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise NertoolsError(f"cannot read {p / META_FILE}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise NertoolsError(f"{p / META_FILE} is not a {META_FORMAT} file")
    return meta


def default_threshold(scoring: str, decoding: str) -> float:
    return 0.0 if (scoring == "softmax" and decoding == "argmax") else 0.5


# --------------------------------------------------------------------------- scores


def label_vectors(model, tokenizer, texts: Sequence[str], *, device, batch: int = 64):
    """``[len(texts), H]`` label vectors (no gradient)."""
    import torch

    from nertools.biencoder.model import label_inputs

    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            enc = label_inputs(tokenizer, texts[i:i + batch])
            out.append(model.encode_labels(enc["label_input_ids"].to(device), enc["label_attention_mask"].to(device),
                                           enc["label_pool_mask"].to(device)).float())
    if not out:
        return torch.zeros((0, _hidden_size(model)), device=device)
    return torch.cat(out)


def _hidden_size(model) -> int:
    return int(model.text_encoder.config.hidden_size)


def word_scores(model, tokenizer, records: Sequence[dict], vectors, *, scoring: str, max_length: int,
                overlap: int, max_tokens: int, device, special=None) -> list[np.ndarray]:
    """Per record ``[n_words, L]`` label probabilities (see the module doc). For ``softmax``
    the first row of ``vectors`` is the outside vector and the arrays have ``1 + L`` columns
    (column 0: outside)."""
    import torch

    from nertools.tagging.tagger import windowed_word_rows

    def forward(batch):
        h = model.encode_text(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float()
        logits = model.score(h, vectors)
        probs = torch.softmax(logits, -1) if scoring == "softmax" else torch.sigmoid(logits)
        return probs.cpu().numpy()

    return windowed_word_rows(model, tokenizer, records, vectors.shape[0], forward, max_length=max_length,
                              overlap=overlap, max_tokens=max_tokens, special=special)


# --------------------------------------------------------------------------- decoding


def decode(scores: np.ndarray, labels: Sequence[str], *, scoring: str, decoding: str = "argmax",
           threshold: float | None = None) -> list[tuple[int, int, str, float]]:
    """``(first word, last word, label, score)`` spans from one record's word scores (the
    arrays of :func:`word_scores`), IO-merged (see the module doc)."""
    if decoding not in DECODINGS:
        raise UsageError(f"--decoding {decoding!r}: choose one of {', '.join(DECODINGS)}")
    t = default_threshold(scoring, decoding) if threshold is None else threshold
    if scoring == "softmax":
        outside, lab = scores[:, 0], scores[:, 1:]
    else:
        outside, lab = None, scores
    n = lab.shape[0]
    if n == 0 or lab.shape[1] == 0:
        return []
    if decoding == "argmax":
        best = lab.argmax(1)
        best_score = lab[np.arange(n), best]
        ok = best_score >= t
        if outside is not None:
            ok &= best_score > outside
        tags = [int(best[w]) if ok[w] else -1 for w in range(n)]
        return _merge(tags, lab, labels)
    spans = []
    for j in range(lab.shape[1]):
        tags = [j if lab[w, j] >= t else -1 for w in range(n)]
        spans.extend(_merge(tags, lab, labels))
    spans.sort(key=lambda s: (s[0], s[1], s[2]))
    return spans


def _merge(tags: Sequence[int], scores: np.ndarray, labels: Sequence[str]) -> list[tuple[int, int, str, float]]:
    spans = []
    w = 0
    while w < len(tags):
        j = tags[w]
        if j < 0:
            w += 1
            continue
        a = w
        while w + 1 < len(tags) and tags[w + 1] == j:
            w += 1
        spans.append((a, w, labels[j], float(np.mean(scores[a:w + 1, j]))))
        w += 1
    return spans


def spans_for(record: dict, spans: Sequence[tuple[int, int, str, float]], source: str = "ner-tag") -> list[dict]:
    toks = record["tokens"]
    return [{"start": toks[a]["start"], "end": toks[b]["end"], "token_start": a, "token_end": b,
             "label": label, "score": round(score, 6), "source": source} for a, b, label, score in spans]


# --------------------------------------------------------------------------- the model directory


class BiEncoder:
    """A trained bi-encoder loaded from its directory (``ner-biencoder train --out DIR``)."""

    def __init__(self, model, tokenizer, label_tokenizer, *, scoring: str, max_length: int, overlap: int,
                 device, meta: dict | None = None):
        from nertools.tagging.tagger import SpecialTokens

        if scoring not in SCORINGS:
            raise NertoolsError(f"unknown scoring {scoring!r}")
        self.model, self.tokenizer, self.label_tokenizer = model, tokenizer, label_tokenizer
        self.scoring, self.max_length, self.overlap = scoring, max_length, overlap
        self.device, self.meta = device, meta or {}
        self.special = SpecialTokens.of(tokenizer)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "auto", dtype: str = "auto") -> "BiEncoder":
        """Load ``path`` (text encoder, label encoder unless shared, nertools.json)."""
        meta = read_meta(path)
        from nertools.biencoder.model import BiEncoderModel, load_encoder
        from nertools.runtime.models import resolve_device, resolve_dtype

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        p = Path(path)
        text, tok = load_encoder(str(p / TEXT_DIR), subject=f"bi-encoder {path} (text encoder)", dtype=dt)
        if meta.get("shared_encoder"):
            label, ltok = None, tok
        else:
            label, ltok = load_encoder(str(p / LABEL_DIR), subject=f"bi-encoder {path} (label encoder)", dtype=dt)
        model = BiEncoderModel(text, label, pooling=meta.get("pooling", "mean"),
                               similarity=meta.get("similarity", "dot"), tau=float(meta.get("tau", 5.0)))
        model.to(dev)
        model.eval()
        return cls(model, tok, ltok, scoring=meta.get("scoring", "softmax"), max_length=int(meta["max_length"]),
                   overlap=int(meta.get("window_overlap", 0)), device=dev, meta=meta)

    def vectors(self, labels: Sequence[LabelInfo]):
        """The label vectors of ``labels`` (for softmax models "outside" first)."""
        texts = [verbalize(i, "description") for i in labels]
        if self.scoring == "sigmoid":  # concept models learnt normalised concept strings
            from nertools.biencoder.losses import normalize_concept

            texts = [normalize_concept(t) for t in texts]
        if self.scoring == "softmax":
            texts = [OUTSIDE_TEXT] + texts
        return label_vectors(self.model, self.label_tokenizer, texts, device=self.device)

    def scores(self, records: Sequence[dict], vectors, max_tokens: int = 8192) -> list[np.ndarray]:
        return word_scores(self.model, self.tokenizer, records, vectors, scoring=self.scoring,
                           max_length=self.max_length, overlap=self.overlap, max_tokens=max_tokens,
                           device=self.device, special=self.special)

    def tag_records(self, records: Iterable[dict], labels: Sequence[LabelInfo], *, threshold: float | None = None,
                    decoding: str = "argmax", max_tokens: int = 8192, chunk: int = 512,
                    vectors=None) -> Iterator[dict]:
        """Stream canonical ``records`` with ``spans`` replaced by the predicted spans of
        ``labels`` (label vectors are computed once, here, unless ``vectors``, the result of
        :meth:`vectors` for ``labels``, is given: what a caller tagging many blocks passes)."""
        if not labels:
            raise UsageError("no labels to tag: give --labels or --labels-file")
        if decoding not in DECODINGS:
            raise UsageError(f"--decoding {decoding!r}: choose one of {', '.join(DECODINGS)}")
        names = [i.label for i in labels]
        if vectors is None:
            vectors = self.vectors(labels)
        buf: list[dict] = []
        for rec in records:
            buf.append(rec)
            if len(buf) >= chunk:
                yield from self._chunk(buf, vectors, names, threshold, decoding, max_tokens)
                buf = []
        if buf:
            yield from self._chunk(buf, vectors, names, threshold, decoding, max_tokens)

    def _chunk(self, recs, vectors, names, threshold, decoding, max_tokens) -> Iterator[dict]:
        with_tokens = [r for r in recs if r["tokens"]]
        scores = iter(self.scores(with_tokens, vectors, max_tokens)) if with_tokens else iter(())
        for r in recs:
            if not r["tokens"]:
                r["spans"] = []
            else:
                found = decode(next(scores), names, scoring=self.scoring, decoding=decoding, threshold=threshold)
                r["spans"] = spans_for(r, found)
            yield r


def tag_records(model_dir: str | os.PathLike, records: Iterable[dict], labels: Sequence[LabelInfo], **kw) -> Iterator[dict]:
    """Convenience: load ``model_dir`` and tag ``records`` with ``labels``."""
    device = kw.pop("device", "auto")
    dtype = kw.pop("dtype", "auto")
    return BiEncoder.load(model_dir, device=device, dtype=dtype).tag_records(records, labels, **kw)
