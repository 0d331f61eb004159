"""The bi-encoder: a text encoder gives every sub-token a vector, a label encoder gives every
label text one vector, and a token's logit for a label is their similarity
(:func:`nertools.biencoder.losses.similarity_logits`).

* the encoders are any Hugging Face encoders (``AutoModel``), loaded by
  :func:`nertools.runtime.models.load_pretrained`; separate weights by default (NuNER and
  LITSET), or one encoder for both sides (``shared``);
* label vector: the mean of the label encoder's last hidden states over the label text's
  non-special tokens (``pooling="mean"``), or its first (CLS) vector (``"cls"``);
* :func:`freeze_bottom`: the embeddings and the bottom ``n`` layers of the text encoder get no
  gradient (NuNER freezes the bottom half for stability).

This module imports torch at import time; the rest of the package does not.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from nertools.biencoder.losses import similarity_logits
from nertools.errors import NertoolsError

POOLINGS = ("mean", "cls")
#: Longest label text in sub-tokens (LITSET truncates label strings at 128).
LABEL_MAX_LENGTH = 128


class BiEncoderModel(nn.Module):
    """``forward(text inputs, label inputs) -> logits [B, T, L]``: one call runs both encoders
    (what DistributedDataParallel wraps)."""

    def __init__(self, text_encoder, label_encoder=None, *, pooling: str = "mean", similarity: str = "dot",
                 tau: float = 5.0):
        super().__init__()
        if pooling not in POOLINGS:
            raise NertoolsError(f"unknown pooling {pooling!r} (choose {', '.join(POOLINGS)})")
        self.text_encoder = text_encoder
        self.shared = label_encoder is None
        if not self.shared:
            self.label_encoder = label_encoder
            a, b = _hidden(text_encoder), _hidden(label_encoder)
            if a != b:
                raise NertoolsError(f"the text encoder's vectors have {a} dimensions and the label "
                                    f"encoder's {b}: they must match (choose encoders of the same size)")
        self.pooling, self.similarity, self.tau = pooling, similarity, float(tau)

    @property
    def label_model(self):
        return self.text_encoder if self.shared else self.label_encoder

    def encode_text(self, input_ids, attention_mask):
        return self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def encode_labels(self, input_ids, attention_mask, pool_mask):
        h = self.label_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return h[:, 0]
        m = pool_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)

    def score(self, tokens, labels):
        return similarity_logits(tokens, labels, similarity=self.similarity, tau=self.tau)

    def forward(self, input_ids, attention_mask, label_input_ids, label_attention_mask, label_pool_mask):
        h = self.encode_text(input_ids, attention_mask)
        e = self.encode_labels(label_input_ids, label_attention_mask, label_pool_mask)
        return self.score(h, e)


def _hidden(model) -> int | None:
    return getattr(model.config, "hidden_size", None) or getattr(model.config, "d_model", None)


def label_inputs(tokenizer, texts: Sequence[str], max_length: int = LABEL_MAX_LENGTH) -> dict:
    """Padded label-encoder inputs for ``texts``: ``label_input_ids``, ``label_attention_mask``,
    ``label_pool_mask`` (True on the non-special tokens the mean pools over)."""
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                    return_special_tokens_mask=True, return_tensors="pt")
    att = enc["attention_mask"]
    pool = att.bool() & ~enc["special_tokens_mask"].bool()
    empty = ~pool.any(1)       # a text of special tokens only: pool over what there is
    pool[empty] = att[empty].bool()
    return {"label_input_ids": enc["input_ids"], "label_attention_mask": att, "label_pool_mask": pool}


def encoder_layers(model) -> nn.ModuleList:
    """The list of transformer layers of an encoder (the ModuleList of ``num_hidden_layers`` items)."""
    n = getattr(model.config, "num_hidden_layers", None)
    for _, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and n is not None and len(mod) == n:
            return mod
    raise NertoolsError(f"cannot find the {n} transformer layers of {type(model).__name__} to freeze")


def num_layers(model) -> int:
    return int(getattr(model.config, "num_hidden_layers", 0) or 0)


def freeze_bottom(model, n: int) -> int:
    """Freeze the embeddings and the bottom ``n`` layers of ``model``; returns how many layers
    were frozen (``n`` capped at the layer count; 0: nothing is frozen)."""
    if n <= 0:
        return 0
    layers = encoder_layers(model)
    n = min(n, len(layers))
    emb = getattr(model, "embeddings", None) or model.get_input_embeddings()
    for p in emb.parameters():
        p.requires_grad = False
    for layer in layers[:n]:
        for p in layer.parameters():
            p.requires_grad = False
    return n


def load_encoder(name: str, *, subject: str, dtype=None):
    """``(AutoModel, tokenizer)`` of an encoder: a Hugging Face name, a folder or an alias."""
    from nertools.runtime.models import ENCODER, load_pretrained, prepare_tokenizer
    from nertools.runtime.progress import quiet_transformers

    quiet_transformers()
    model, tokenizer = load_pretrained(name, ENCODER, dtype=dtype, subject=subject)
    prepare_tokenizer(tokenizer)
    if not getattr(tokenizer, "is_fast", False):
        raise NertoolsError(f"{subject}: the bi-encoder needs a fast (Rust) tokenizer with offset mappings")
    return model, tokenizer
