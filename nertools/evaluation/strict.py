"""Strict entity-level precision, recall and F1 (see :mod:`nertools.evaluation`)."""

from __future__ import annotations

import os
from typing import Any, Iterable

from nertools.core.jsonl import ErrorPolicy
from nertools.evaluation.matching import _matched, span_keys


# --------------------------------------------------------------------------- strict

def prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    """Precision, recall and F1 (0 where a denominator is 0)."""
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def evaluate(gold: str | os.PathLike | Iterable[dict], pred: str | os.PathLike | Iterable[dict], *,
             missing: str = "fail", policy: ErrorPolicy | None = None) -> dict[str, Any]:
    """Strict entity-level scores of ``pred`` against ``gold`` (paths or canonical records).

    Returns::

        {"mode": "strict",
         "labels": {"PER": {"precision", "recall", "f1", "support", "predicted", "correct"}, ...},
         "micro": {...same keys...}, "macro": {...}, "weighted": {...},
         "records": {"gold", "pred", "matched", "missing", "extra", "missing_ids", "extra_ids"},
         "missing_policy": missing}

    ``support`` is the number of gold spans. Raises :class:`DataError` for bad input and,
    with ``missing="fail"``, for missing or extra ids.
    """
    pairs, stats = _matched(gold, pred, missing, policy)
    counts: dict[str, list[int]] = {}   # label -> [gold, predicted, correct]
    for gold_spans, rec, _ in pairs:
        pred_spans = span_keys(rec["spans"]) if rec is not None else set()
        for _, _, label in gold_spans:
            counts.setdefault(label, [0, 0, 0])[0] += 1
        for span in pred_spans:
            c = counts.setdefault(span[2], [0, 0, 0])
            c[1] += 1
            if span in gold_spans:
                c[2] += 1
    labels = {}
    for label in sorted(counts):
        g, p, c = counts[label]
        labels[label] = {**prf(c, p, g), "support": g, "predicted": p, "correct": c}
    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    n = len(labels)
    support = total[0]
    macro = {m: (sum(v[m] for v in labels.values()) / n if n else 0.0)
             for m in ("precision", "recall", "f1")}
    weighted = {m: (sum(v[m] * v["support"] for v in labels.values()) / support if support else 0.0)
                for m in ("precision", "recall", "f1")}
    sums = {"support": support, "predicted": total[1], "correct": total[2]}
    return {"mode": "strict", "labels": labels,
            "micro": {**prf(total[2], total[1], total[0]), **sums},
            "macro": {**macro, **sums}, "weighted": {**weighted, **sums},
            "records": stats, "missing_policy": missing}
