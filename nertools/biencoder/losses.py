"""The two bi-encoder objectives and their scoring, as pure functions (no model, no state).

* :func:`similarity_logits`: token vectors x label vectors -> logits. ``dot``:
  ``h . e / tau`` (NuNER's "temperature before the sigmoid", tau = 5, raw vectors); ``cosine``:
  ``tau * cos(h, e)`` (the other reading of NuNER's tau: it scales a cosine).
* :func:`concept_bce_loss` (NuNER, ``--objective concepts``): sigmoid binary cross-entropy of
  every (token, concept) pair over the distinct concepts of the batch, multi-label targets,
  averaged over the valid (non-padding, non-special) entries; no positive re-weighting.
* :func:`label_ce_loss` (LITSET, ``--objective labels``): softmax cross-entropy per token over
  "outside" (column 0) plus the batch's labels, averaged over the non-ignored tokens.
* :func:`normalize_concept`: concept identity (lower-case, collapsed whitespace).
* :func:`merge_duplicates`: batch-local labels whose verbalised strings are identical become
  one column (two entities both verbalised "human" are not each other's negatives).

Both losses take ``total``: the number of entries to divide by. A data-parallel rank that
holds a shard of the global batch passes the global count, so that the ranks' gradients,
summed (``total`` scales them) and averaged by DistributedDataParallel, equal the gradient of
the one-process loss of the whole batch.
"""

from __future__ import annotations

from typing import Hashable, Sequence

IGNORE = -100
SIMILARITIES = ("dot", "cosine")


def normalize_concept(text: str) -> str:
    """``"  NFL   Team "`` -> ``"nfl team"``: the identity of a concept string."""
    return " ".join(str(text).lower().split())


def merge_duplicates(texts: Sequence[Hashable]) -> tuple[list, list[int]]:
    """``(unique, index)``: the distinct items of ``texts`` in first-seen order, and for each
    item its position in ``unique``. ``merge_duplicates(["a", "b", "a"]) == (["a", "b"], [0, 1, 0])``."""
    unique: list = []
    where: dict = {}
    index = []
    for t in texts:
        if t not in where:
            where[t] = len(unique)
            unique.append(t)
        index.append(where[t])
    return unique, index


def similarity_logits(tokens, labels, *, similarity: str = "dot", tau: float = 5.0):
    """``[..., H] x [L, H] -> [..., L]`` logits (see the module doc)."""
    import torch.nn.functional as F

    if similarity == "dot":
        return tokens @ labels.transpose(0, 1) / tau
    if similarity == "cosine":
        return tau * (F.normalize(tokens, dim=-1) @ F.normalize(labels, dim=-1).transpose(0, 1))
    raise ValueError(f"unknown similarity {similarity!r} (choose {', '.join(SIMILARITIES)})")


def concept_bce_loss(logits, targets, mask, *, total: float | None = None):
    """NuNER's loss. ``logits`` and ``targets`` ``[B, T, C]`` (targets 0/1, several 1s per token
    allowed), ``mask`` ``[B, T]`` (True: a token that counts). The sum of the binary
    cross-entropies of the counted entries divided by ``total`` (default: their number,
    ``mask.sum() * C``). With no concept or no counted token the loss is 0 (still attached to
    the graph)."""
    import torch.nn.functional as F

    n_concepts = logits.shape[-1]
    if total is None:
        total = float(mask.sum().item()) * n_concepts
    if n_concepts == 0 or total == 0:
        return logits.sum() * 0.0
    per = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    per = per * mask.unsqueeze(-1).to(per.dtype)
    return per.sum() / total


def label_ce_loss(logits, targets, *, total: float | None = None):
    """LITSET's loss. ``logits`` ``[B, T, 1 + L]`` (column 0: outside), ``targets`` ``[B, T]``
    class indices, :data:`IGNORE` (-100) for tokens that do not count. Summed cross-entropy
    divided by ``total`` (default: the number of counted tokens); 0 when none counts."""
    import torch.nn.functional as F

    if total is None:
        total = float((targets != IGNORE).sum().item())
    if total == 0:
        return logits.sum() * 0.0
    per = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                          ignore_index=IGNORE, reduction="sum")
    return per / total
