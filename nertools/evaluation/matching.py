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

import os
from typing import Iterable, Iterator, Sequence

from nertools.errors import DataError
from nertools.core.jsonl import ErrorPolicy, display_name, read_jsonl
from nertools.core.record import normalize_record

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
        raise policy.no_records(name)


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
