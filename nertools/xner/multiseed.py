"""Several seeds for one label: each seed is scored as a label of its own, then combined.

X-NER gives one seed per type; a type whose seed is unrepresentative (CoNLL's ORG seed
"Boston Celtics" is plural, most organisations are not) gains from more. ``ner-divscore
--seed ORG="Boston Celtics" --seed ORG=Microsoft`` scores every candidate against each seed
(internally one label per seed, ``ORG#1``, ``ORG#2``: the same template, label word and
batches as any other label, so the cost grows with the number of seeds) and writes one score
per label, combined over that label's seeds:

* ``min`` (the default): the smallest divergence, i.e. the most similar seed decides (a
  candidate like any one seed ranks high). Seeds whose divergences run on different scales
  favour the seed with the lower baseline.
* ``mean``: the mean of the seeds' divergences. A candidate must be like the seeds on the
  whole; in practice one seed's larger scale dominates the mean.

Measured (``benchmarks/xner_org_seeds.py``, gemma-3-270m fast mode, CoNLL-2003 ORG, one run on
the first sentences of the end-to-end sample; README): ``min`` over "Boston Celtics",
"Microsoft", "United Nations" raised ORG P@K over the paper's seed alone; ``mean`` lowered it.

The per-seed scores stay in ``"seed_scores": {label: [score per seed, in seed order]}`` for
labels with more than one seed; ``"scores"`` has exactly the user's labels, so ``ner-pseudo``
and the rest of the pipeline are unchanged. A label with one seed is scored exactly as before.
With ``--cascade`` the keep fraction holds per seed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Iterator, Sequence

from nertools.errors import UsageError
from nertools.xner.seeds import Seed

COMBINE = ("min", "mean")
DEFAULT_COMBINE = "min"
INTERNAL_SEP = "#"
PER_LABEL_FIELDS = ("divergence_rows",)  # per-label diagnostics that are dropped with the internal labels


class SeedGroups:
    """The internal one-seed-per-label list and how to fold its scores back."""

    def __init__(self, seeds: Sequence[Seed], combine: str = DEFAULT_COMBINE):
        if combine not in COMBINE:
            raise UsageError(f"unknown seed combination {combine!r} (choose from {', '.join(COMBINE)})")
        self.combine = combine
        by_label: dict[str, list[Seed]] = {}
        for s in seeds:
            by_label.setdefault(s.label, []).append(s)
        self.labels = list(by_label)
        taken = set(self.labels)
        self.internal: list[Seed] = []
        self.groups: dict[str, list[str]] = {}
        for label, group in by_label.items():
            if len(group) == 1:
                self.internal.append(group[0])
                continue
            names = []
            for k, s in enumerate(group, 1):
                name = f"{label}{INTERNAL_SEP}{k}"
                while name in taken:  # a user's own label "ORG#1" keeps its name
                    name += INTERNAL_SEP
                taken.add(name)
                names.append(name)
                self.internal.append(replace(s, label=name))
            self.groups[label] = names
        self._internal_only = {n for names in self.groups.values() for n in names}

    @property
    def trivial(self) -> bool:
        return not self.groups

    def fold(self, rec: dict) -> dict:
        """``rec`` with each candidate's per-seed scores combined into one per label."""
        if self.trivial:
            return rec
        for cand in rec.get("candidates") or ():
            scores = cand.get("scores")
            if not scores:
                continue
            per_seed = {label: [scores[n] for n in names] for label, names in self.groups.items()}
            cand["scores"] = {label: _combine(per_seed[label], self.combine) if label in per_seed else scores[label]
                              for label in self.labels}
            cand["seed_scores"] = per_seed
            for field in PER_LABEL_FIELDS:
                if isinstance(cand.get(field), dict):
                    cand[field] = {k: v for k, v in cand[field].items() if k not in self._internal_only}
        return rec

    def fold_all(self, records: Iterable[dict]) -> Iterator[dict]:
        return (self.fold(r) for r in records)


def _combine(values: list[float], how: str) -> float:
    # the scorers already replaced non-finite values by NON_FINITE_SCORE (format_doc)
    return min(values) if how == "min" else sum(values) / len(values)
