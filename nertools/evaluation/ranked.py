"""Ranked candidate lists: precision@K and candidate recall (see :mod:`nertools.evaluation`)."""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Sequence

from nertools.errors import DataError
from nertools.core.jsonl import ErrorPolicy
from nertools.evaluation.matching import _key, _matched


# --------------------------------------------------------------------------- ranked

def _candidate_offsets(rec: dict, cand: Any, i: int) -> tuple[int, int]:
    if not isinstance(cand, dict):
        raise DataError(f"candidate {i} is not an object")
    s, e = cand.get("start"), cand.get("end")
    if isinstance(s, int) and isinstance(e, int):
        return s, e
    ts, te = cand.get("token_start"), cand.get("token_end")
    tokens = rec["tokens"]
    if isinstance(ts, int) and isinstance(te, int) and 0 <= ts <= te < len(tokens):
        return tokens[ts]["start"], tokens[te]["end"]
    raise DataError(f"candidate {i} has neither character offsets nor valid token indices")


def _k_values(n: int, ks: Sequence[int], k_fracs: Sequence[float]) -> list[tuple[int, float | None]]:
    out = [(k, None) for k in ks]
    out += [(max(1, int(f * n + 0.5)), f) for f in k_fracs]  # rounded half up
    return out


def evaluate_ranked(gold: str | os.PathLike | Iterable[dict],
                    pred: str | os.PathLike | Iterable[dict], *, ks: Sequence[int] = (),
                    k_fracs: Sequence[float] = (), missing: str = "fail",
                    policy: ErrorPolicy | None = None) -> dict[str, Any]:
    """Precision@K per label of scored ``candidates`` and their recall of gold spans.

    Returns::

        {"mode": "ranked",
         "labels": {"PER": {"candidates": n, "gold": g, "gold_covered": c,
                            "candidate_recall": c / g or None,
                            "precision_at": [{"k", "k_frac", "k_used", "correct",
                                              "precision"}, ...]}, ...},
         "macro": {"precision_at": [...mean over labels with candidates...]},
         "overall": {"candidates", "gold", "gold_covered", "candidate_recall"},
         "records": {...as in evaluate...}, "missing_policy": missing}
    """
    if not ks and not k_fracs:
        raise ValueError("give at least one K (ks) or fraction (k_fracs)")
    pairs, stats = _matched(gold, pred, missing, policy)
    ranked: dict[str, list[tuple[float, bool]]] = {}
    gold_count: dict[str, int] = {}
    covered: dict[str, int] = {}
    n_candidates = 0
    for gold_spans, rec, (name, line) in pairs:
        offsets: set[tuple[int, int]] = set()
        if rec is not None:
            cands = rec.get("candidates") or []
            if not isinstance(cands, list):
                raise DataError(f"record {_key(rec)!r}: 'candidates' must be a list",
                                path=name, line=line)
            for i, cand in enumerate(cands):
                try:
                    s, e = _candidate_offsets(rec, cand, i)
                    scores = cand.get("scores") or {}
                    if not isinstance(scores, dict):
                        raise DataError(f"candidate {i}: 'scores' must be an object")
                    for label, score in scores.items():
                        if not isinstance(score, (int, float)) or math.isnan(score):
                            raise DataError(f"candidate {i}: score for {label!r} is not a number")
                        ranked.setdefault(label, []).append((score, (s, e, label) in gold_spans))
                except DataError as err:
                    raise DataError(f"record {_key(rec)!r}: {err.message}", path=name,
                                    line=line) from None
                offsets.add((s, e))
                n_candidates += 1
        for s, e, label in gold_spans:
            gold_count[label] = gold_count.get(label, 0) + 1
            if (s, e) in offsets:
                covered[label] = covered.get(label, 0) + 1
    labels: dict[str, Any] = {}
    for label in sorted(set(ranked) | set(gold_count)):
        items = sorted(ranked.get(label, []), key=lambda x: x[0])  # stable: ties keep order
        g, c = gold_count.get(label, 0), covered.get(label, 0)
        at = []
        if items:
            for k, frac in _k_values(len(items), ks, k_fracs):
                used = min(k, len(items))
                correct = sum(ok for _, ok in items[:used])
                at.append({"k": k, "k_frac": frac, "k_used": used, "correct": correct,
                           "precision": correct / used})
        labels[label] = {"candidates": len(items), "gold": g, "gold_covered": c,
                         "candidate_recall": c / g if g else None, "precision_at": at}
    macro = []
    with_cands = [v for v in labels.values() if v["precision_at"]]
    for j, (k, frac) in enumerate([(k, None) for k in ks] + [(None, f) for f in k_fracs]):
        vals = [v["precision_at"][j]["precision"] for v in with_cands]
        macro.append({"k": k, "k_frac": frac,
                      "precision": sum(vals) / len(vals) if vals else None})
    g_all, c_all = sum(gold_count.values()), sum(covered.values())
    return {"mode": "ranked", "labels": labels, "macro": {"precision_at": macro},
            "overall": {"candidates": n_candidates, "gold": g_all, "gold_covered": c_all,
                        "candidate_recall": c_all / g_all if g_all else None},
            "records": stats, "missing_policy": missing}
