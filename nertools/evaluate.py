"""Evaluate predicted spans against gold spans, and ranked candidate lists.

**Strict entity-level scores** (:func:`evaluate`): a predicted span is correct when a gold
span of the same record has the same character offsets and the same label. Precision,
recall and F1 per label, micro-averaged (over all spans), macro-averaged (mean over the
labels occurring in gold or prediction) and support-weighted. For non-overlapping spans
this equals ``seqeval.metrics.classification_report(mode="strict", scheme=IOB2)`` on the
BIO2 tags of the same records (tests/test_eval.py shows it); overlapping spans, which tags
cannot express, are scored the same way. A duplicated span counts once. A ratio with a
zero denominator is 0, as in seqeval.

**Ranked candidates** (:func:`evaluate_ranked`, the X-NER paper's Table 4 metric):
prediction records carry ``candidates``, each with ``scores`` ``{label: float}`` where
LOWER means more like the label. Per label, all candidates of the corpus that have a score
for it are ranked lowest score first (ties keep input order); precision@K is the fraction
of the top K that are correct (a gold span with the same character offsets and that
label); K is given, or a fraction f of that label's candidate count n (f*n rounded half up,
at least 1).
K larger than the list uses the whole list. Candidate recall is the fraction of gold spans
whose offsets are among their record's candidates, per gold label and overall.

**Matching and memory.** Records are matched by ``id``. The gold file is read first into
an index ``id -> (hash of text, set of (start, end, label))`` (a few dozen bytes per
span; no tokens or text are kept), then predictions stream past it in any order; ranked
mode also keeps one ``(score, correct)`` pair per candidate and label, as ranking needs
the whole list. Ids in gold but not in the predictions are *missing*, the others *extra*;
``missing`` decides: ``fail`` (the default: an error listing them), ``empty`` (an absent
record counts as one without spans: missing gold spans are false negatives, extra
predictions false positives) or ``ignore`` (only ids on both sides are scored).
Duplicate ids, or a prediction whose text differs from its gold record's, are errors.

Both functions return plain dicts (see :func:`evaluate` for the layout).
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Iterator, Sequence

from nertools.errors import DataError
from nertools.jsonl import ErrorPolicy, display_name, read_jsonl
from nertools.record import normalize_record

MISSING_CHOICES = ("fail", "empty", "ignore")

#: How many missing/extra ids a report or error message lists.
SHOW_IDS = 5

SpanKey = tuple[int, int, str]


# --------------------------------------------------------------------------- reading

def numbered_records(path: str | os.PathLike, policy: ErrorPolicy | None = None,
                     allow_empty: bool = False) -> Iterator[tuple[int, dict]]:
    """``(line_number, canonical_record)`` for each record of a JSONL file (any accepted
    input form; a record without ``id`` gets its line number)."""
    policy = policy or ErrorPolicy()
    name = display_name(path)
    good = 0
    for lineno, obj in read_jsonl(path, policy=policy, allow_empty=True):
        try:
            rec = normalize_record(obj, default_id=str(lineno))
        except DataError as e:
            policy.handle(e.located(name, lineno))
            continue
        good += 1
        yield lineno, rec
    if good == 0 and not allow_empty:
        raise DataError("no records (empty input)", path=name)


def _source(records: str | os.PathLike | Iterable[dict], policy: ErrorPolicy | None):
    """``(name, iterator of (line or index, record))`` for a path or an iterable of records."""
    if isinstance(records, (str, os.PathLike)):
        return display_name(records), numbered_records(records, policy)
    return None, enumerate(records, 1)


def _key(rec: dict) -> str:
    rid = rec.get("id")
    return rid if isinstance(rid, str) else str(rid)


def span_keys(spans: Iterable[dict]) -> set[SpanKey]:
    return {(s["start"], s["end"], s["label"]) for s in spans}


def _index_gold(gold, policy) -> tuple[str | None, dict[str, tuple[int, frozenset]]]:
    name, items = _source(gold, policy)
    index: dict[str, tuple[int, frozenset]] = {}
    for where, rec in items:
        key = _key(rec)
        if key in index:
            raise DataError(f"duplicate id {key!r} in gold", path=name, line=where)
        index[key] = (hash(rec["text"]), frozenset(span_keys(rec["spans"])))
    return name, index


def _matched(gold, pred, missing: str, policy: ErrorPolicy | None):
    """Yield ``(gold_spans, pred_record_or_None, where)`` per scored record and fill
    ``stats``; ``where`` is ``(pred file name, line)`` for error messages.

    A pass over both sides applying the ``missing`` rule; the stats dict (second return
    value) is complete once the generator is exhausted.
    """
    if missing not in MISSING_CHOICES:
        raise ValueError(f"missing must be one of {MISSING_CHOICES}, not {missing!r}")
    gold_name, index = _index_gold(gold, policy)
    stats = {"gold": len(index), "pred": 0, "matched": 0, "missing": 0, "extra": 0,
             "missing_ids": [], "extra_ids": []}

    def generate():
        pred_name, items = _source(pred, policy)
        seen: set[str] = set()
        extra: list[str] = []
        for where, rec in items:
            key = _key(rec)
            stats["pred"] += 1
            if key in seen:
                raise DataError(f"duplicate id {key!r} in predictions", path=pred_name, line=where)
            seen.add(key)
            entry = index.pop(key, None)
            if entry is None:
                extra.append(key)
                if missing == "empty":
                    yield frozenset(), rec, (pred_name, where)
                continue
            if entry[0] != hash(rec["text"]):
                raise DataError(f"record {key!r}: text differs from the gold record's",
                                path=pred_name, line=where)
            stats["matched"] += 1
            yield entry[1], rec, (pred_name, where)
        missing_ids = list(index)
        stats.update(missing=len(missing_ids), extra=len(extra),
                     missing_ids=missing_ids[:SHOW_IDS], extra_ids=extra[:SHOW_IDS])
        if missing == "fail" and (missing_ids or extra):
            parts = []
            if missing_ids:
                parts.append(f"{len(missing_ids)} gold record(s) have no prediction "
                             f"(ids {_show(missing_ids)})")
            if extra:
                parts.append(f"{len(extra)} prediction(s) have no gold record (ids {_show(extra)})")
            raise DataError("; ".join(parts) + "; --missing empty|ignore scores anyway",
                            path=pred_name)
        if missing == "empty":
            for key in missing_ids:
                yield index[key][1], None, (gold_name, None)

    return generate(), stats


def _show(ids: Sequence[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:SHOW_IDS])
    return shown + (", ..." if len(ids) > SHOW_IDS else "")


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
