"""The k~2k greedy support-set sampler (Ding et al. 2021, Few-NERD; used by NuNER and LITSET).

Goal: a support set in which every entity type has between ``k`` and ``2k`` mentions (or, with
``unit="words"``, between ``k`` and ``2k`` words inside mentions: NuNER §6's ``k_w``).
The greedy procedure (methods spec §1.2):

1. shuffle the pool with the seed (``random.Random(seed)``, so a seed gives the same set on
   every machine and Python 3 version);
2. walk the shuffled sentences; skip a sentence without any mention of a target type, or one
   that would push some type over ``2k``; otherwise take it if one of its types still has
   fewer than ``k``;
3. stop as soon as every type has ``k``. When the pool runs out first, what was taken is kept
   and the shortfall is reported (:attr:`SampleResult.shortfall`).

Sentences without entities are never taken (none of the papers adds negative sentences).
``exclude_ids`` removes records from the pool before anything else, so a support set never
overlaps an evaluation set; :attr:`SampleResult.rest` is the pool minus the support set (an
evaluation set that cannot overlap it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from nertools.errors import DataError, UsageError

UNITS = ("mentions", "words")


@dataclass
class SampleResult:
    """What :func:`sample_support` chose, and why it could not do better where it could not."""

    k: int
    seed: int
    unit: str
    labels: list[str]
    selected: list[int]            # indices into the input records, in input order
    rest: list[int]                # pool records not selected, in input order
    counts: dict[str, int]         # per label, mentions (or words) in the support set
    available: dict[str, int]      # per label, mentions (or words) in the whole pool
    excluded: int = 0              # input records removed by exclude_ids
    pool: int = 0                  # records left to sample from
    dropped_spans: int = 0         # spans of other labels removed from the support records
    records: list[dict] = field(default_factory=list, repr=False)   # the support records

    @property
    def shortfall(self) -> dict[str, int]:
        """Labels with fewer than ``k`` in the support set -> how many they got."""
        return {lab: n for lab, n in self.counts.items() if n < self.k}

    def shortfall_message(self) -> str:
        """One line naming each short label: what it got, what the pool had."""
        parts = []
        for lab, n in self.shortfall.items():
            have = self.available[lab]
            why = (f"only {have} in the data" if have < self.k
                   else f"{have} in the data, but the 2k bound ({2 * self.k}) of the other types "
                        "left no sentence to take")
            parts.append(f"{lab} got {n} of {self.k} {self.unit} ({why})")
        return "; ".join(parts)

    def summary(self) -> dict:
        """A JSON-able summary (``ner-sample --summary``)."""
        return {"k": self.k, "seed": self.seed, "unit": self.unit, "bounds": [self.k, 2 * self.k],
                "sentences": len(self.selected), "pool": self.pool, "excluded": self.excluded,
                "rest": len(self.rest), "labels": list(self.labels), "counts": dict(self.counts),
                "available": dict(self.available),
                "shortfall": {lab: {"got": n, "available": self.available[lab]}
                              for lab, n in self.shortfall.items()},
                "dropped_spans": self.dropped_spans}

    def describe(self) -> str:
        counts = ", ".join(f"{lab} {n}" for lab, n in self.counts.items())
        excl = f" (after {self.excluded} excluded)" if self.excluded else ""
        short = self.shortfall_message() or "none"
        return (f"k={self.k} ({self.unit}, bounds {self.k}..{2 * self.k}) seed {self.seed}: "
                f"{len(self.selected)} sentences from {self.pool}{excl}; {counts}; shortfall: {short}")


def _span_size(span: dict, unit: str) -> int:
    return 1 if unit == "mentions" else span["token_end"] - span["token_start"] + 1


def sample_support(records: Sequence[dict], k: int, seed: int = 0, *, labels: Iterable[str] | None = None,
                   unit: str = "mentions", exclude_ids: Iterable[str] | None = None) -> SampleResult:
    """A k~2k support set of canonical ``records`` (see the module docstring).

    ``labels`` restricts the target types (default: every label of the pool's spans); spans
    of other labels are removed from the support records (counted in ``dropped_spans``), so a
    tagger trained on them learns exactly the target types. The rest records are left as
    they are. Records are never modified: the support records are shallow copies.

    Raises :class:`UsageError` for ``k < 1`` or an unknown ``unit``, :class:`DataError` for an
    empty pool or, without ``labels``, a pool without a single span. A shortfall is not an
    error here (see :attr:`SampleResult.shortfall`; ``ner-sample`` refuses it).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"k must be a positive integer, not {k!r}")
    if unit not in UNITS:
        raise UsageError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
    excluded_set = {str(x) for x in exclude_ids} if exclude_ids is not None else set()
    pool_idx = [i for i, r in enumerate(records) if str(r.get("id")) not in excluded_set]
    n_excluded = len(records) - len(pool_idx)
    if not pool_idx:
        raise DataError("no records to sample from" + (f" ({n_excluded} excluded)" if n_excluded else ""))
    if labels is None:
        targets = sorted({s["label"] for i in pool_idx for s in records[i].get("spans", [])})
        if not targets:
            raise DataError("no entity spans in the input: nothing to sample")
    else:
        targets = list(dict.fromkeys(labels))
        if not targets:
            raise UsageError("no labels given")
    target_set = set(targets)

    # per pool record: label -> mentions (or words) of the target labels
    sizes: dict[int, dict[str, int]] = {}
    available = {lab: 0 for lab in targets}
    for i in pool_idx:
        cx: dict[str, int] = {}
        for s in records[i].get("spans", []):
            if s["label"] in target_set:
                cx[s["label"]] = cx.get(s["label"], 0) + _span_size(s, unit)
        if cx:
            sizes[i] = cx
            for lab, n in cx.items():
                available[lab] += n

    order = list(pool_idx)
    random.Random(seed).shuffle(order)
    counts = {lab: 0 for lab in targets}
    taken: set[int] = set()
    upper = 2 * k
    missing = sum(1 for lab in targets if counts[lab] < k)
    for i in order:
        if missing == 0:
            break
        cx = sizes.get(i)
        if not cx:
            continue
        if any(counts[lab] + n > upper for lab, n in cx.items()):
            continue
        if not any(counts[lab] < k for lab in cx):
            continue
        taken.add(i)
        for lab, n in cx.items():
            before = counts[lab]
            counts[lab] = before + n
            if before < k <= counts[lab]:
                missing -= 1

    selected = [i for i in pool_idx if i in taken]
    rest = [i for i in pool_idx if i not in taken]
    support = []
    dropped = 0
    for i in selected:
        rec = dict(records[i])
        spans = rec.get("spans", [])
        kept = [s for s in spans if s["label"] in target_set]
        dropped += len(spans) - len(kept)
        rec["spans"] = kept
        support.append(rec)
    return SampleResult(k=k, seed=seed, unit=unit, labels=targets, selected=selected, rest=rest,
                        counts=counts, available=available, excluded=n_excluded, pool=len(pool_idx),
                        dropped_spans=dropped, records=support)
