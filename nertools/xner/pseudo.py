"""Pseudo labels from scored candidate spans (``ner-pseudo``, X-NER step 3).

Input: records whose ``candidates`` carry ``"scores": {label: float}`` (``ner-divscore``;
lower = more like the seed). Candidates and scores are checked as the records are read
(:func:`read_scored`): a bad record is a data error naming file and line, or is skipped per
the :class:`~nertools.core.jsonl.ErrorPolicy`. Output: the same records with ``spans`` replaced by the pseudo
labels ``{"start","end","token_start","token_end","label","score","source":"xner"}``.

How a candidate becomes a pseudo span:

1. **Best label only**: a candidate competes only for the label with its lowest score
   (ties: the label listed first). ``labels`` restricts the labels considered. Raw scores of
   different labels live on different scales (one seed's divergences may all be larger), so
   ``normalize`` can compare them on a common one first: ``rank`` (default) replaces a score
   by the fraction of the corpus's candidates that score lower for that label (mid-rank for
   ties); ``none`` compares raw scores. (A z-score of log scores was tried and dropped: on
   CoNLL with SmolLM2 it sent almost every LOC candidate to another label;
   benchmarks/xner_quality.py.) Normalisation changes only which label a candidate competes for and
   the order of step 3; emitted scores stay raw, thresholds apply to raw scores, and each
   label's own ranking is the same either way.
2. **Name boundaries** (optional, ``boundary_labels``): a span must not outrank its own
   extension by one capitalised neighbouring word: if the candidate one word longer to the
   left or right exists and the added word starts with an upper-case letter, the span's score
   for that label becomes at least the extension's score (plus a tiny margin). This fixes
   causal LMs' preference for a surname alone ("Fusai") over the full name ("Alexandra Fusai")
   and its kin for other types ("Sox" / "White Sox", "Leverkusen" / "Bayer Leverkusen").
   ``boundary_labels=("*",)`` applies it to every label (``ner-pseudo``'s default: on CoNLL it
   raised LOC P@K to 100 for SmolLM2 and gemma-3-270m and ORG by 0-9 points;
   benchmarks/xner_quality.py, column "ner-pseudo defaults").
3. **Overlaps** (``overlap="best"``, default): within a sentence, candidates are taken in
   order of their best-label score (ties: longer span, then leftmost); one that overlaps a span
   already taken is dropped. This happens *before* the corpus-wide ranking, so sub-spans and
   super-spans of one entity do not use up top-K places. ``overlap="keep"`` keeps everything.
4. **Corpus-wide selection per label** among the survivors: ``threshold`` (score < value;
   the paper: 0.15 for CoNLL/WNUT, 0.20 for Tweebank/Restaurant with its masked-LM scores),
   ``top_k`` (the K lowest scores) and ``top_percent`` (the lowest P% of *all* candidates of
   the corpus, PromptMine: 2%; rounded half up and at least one, :func:`top_percent_count`). When several are given a span must pass all of them.

Ranking needs the whole corpus, but only ``(record number, candidate number, label, score)``
tuples stay in memory: pass 1 reads the records and collects them, pass 2 re-reads the
records (a file is read again; standard input is spooled to a temporary file in pass 1) and
emits them. With a normalisation, a pass before those collects each label's scores (one
float per candidate and label).
"""

from __future__ import annotations

import bisect
import math
import os
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from nertools.errors import DataError, NertoolsError, UsageError
from nertools.core.labels import parse_key_value
from nertools.core.jsonl import ErrorPolicy, dumps, read_converted, read_jsonl, read_records
from nertools.core.record import normalize_record
from nertools.xner.candidates import check_candidates

OVERLAP_RULES = ("best", "keep")
NORMALIZATIONS = ("rank", "none")
ALL_LABELS = "*"
SOURCE = "xner"
#: Margin added to a demoted span's score so that it ranks right after its extension.
BOUNDARY_MARGIN = 1e-6


@dataclass
class Selection:
    """What ``ner-pseudo`` keeps. ``thresholds`` maps a label to its maximum score (exclusive);
    the key ``"*"`` applies to every other label."""

    thresholds: dict[str, float] = field(default_factory=dict)
    top_k: int | None = None
    top_percent: float | None = None
    labels: Sequence[str] | None = None
    overlap: str = "best"
    boundary_labels: Sequence[str] = ()
    normalize: str = "rank"

    def __post_init__(self):
        if not self.thresholds and self.top_k is None and self.top_percent is None:
            raise NertoolsError("choose what to keep: a threshold, top-k or top-percent")
        if self.top_k is not None and self.top_k < 1:
            raise NertoolsError(f"top-k must be >= 1, not {self.top_k}")
        if self.top_percent is not None and not 0 < self.top_percent <= 100:
            raise NertoolsError(f"top-percent must be in (0, 100], not {self.top_percent}")
        if self.overlap not in OVERLAP_RULES:
            raise NertoolsError(f"unknown overlap rule {self.overlap!r} ({', '.join(OVERLAP_RULES)})")
        if self.normalize not in NORMALIZATIONS:
            raise NertoolsError(f"unknown normalisation {self.normalize!r} ({', '.join(NORMALIZATIONS)})")

    def threshold(self, label: str) -> float | None:
        return self.thresholds.get(label, self.thresholds.get("*"))


def parse_thresholds(specs: Iterable[str], *, option: str = "--threshold") -> dict[str, float]:
    """``["0.15", "LOC=0.2"]`` -> ``{"*": 0.15, "LOC": 0.2}``; a malformed one is a
    :class:`~nertools.errors.UsageError`."""
    out: dict[str, float] = {}
    for spec in specs:
        label, value = parse_key_value(spec, option=option, form="[LABEL=]VALUE", default_key=ALL_LABELS)
        try:
            out[label] = float(value)
        except ValueError:
            raise UsageError(f"{option} {spec!r}: {value!r} is not a number "
                             f"(use VALUE or LABEL=VALUE)") from None
    return out


class LabelNormalizer:
    """Maps a label's raw score to a key comparable across labels (module doc, step 1).

    Fitted on every candidate's score per label: ``values[label]`` = list of raw scores.
    """

    def __init__(self, method: str, values: dict[str, list[float]]):
        if method not in NORMALIZATIONS:
            raise NertoolsError(f"unknown normalisation {method!r} ({', '.join(NORMALIZATIONS)})")
        self.method = method
        self._sorted = {lab: sorted(v) for lab, v in values.items()} if method == "rank" else {}

    def __call__(self, label: str, value: float) -> float:
        if self.method == "rank":
            ordered = self._sorted.get(label)
            if not ordered:
                return 0.0
            lo = bisect.bisect_left(ordered, value)
            hi = bisect.bisect_right(ordered, value)
            return (lo + hi) / 2.0 / len(ordered)
        return value

    @classmethod
    def fit(cls, method: str, records: Iterable[dict], labels: Sequence[str] | None = None, *,
            check: bool = True) -> "LabelNormalizer":
        """Fit on the candidates' scores of ``records`` (raises DataError on missing scores;
        ``check=False``: the records are checked already)."""
        values: dict[str, list[float]] = defaultdict(list)
        for rec in records:
            for s in candidate_scores(rec, labels, check=check):
                for lab, v in s.items():
                    values[lab].append(float(v))
        return cls(method, values)


# ---------------------------------------------------------------------- per-sentence steps
def check_scored_candidates(record: dict) -> None:
    """A canonical record's candidates must be valid (:func:`~nertools.xner.candidates.check_candidates`;
    a record without ``candidates`` has none) and each must carry ``"scores": {label: number}``
    with non-empty labels and finite numbers. Raises :class:`DataError` naming the record id
    and the candidate (the reader adds file and line)."""
    check_candidates(record, required=False)
    for k, c in enumerate(record.get("candidates") or ()):
        scores = c.get("scores")
        if type(scores) is dict and scores:
            for lab, v in scores.items():
                if not ((type(v) is float or type(v) is int) and lab.strip() and math.isfinite(v)):
                    _bad_score(record, k, lab, v)
            continue
        rid = record.get("id")
        if scores is None:
            raise DataError(f"record {rid!r}: candidate {k} has no 'scores' (run ner-divscore first)")
        if not isinstance(scores, dict):
            raise DataError(f"record {rid!r}: candidate {k}: 'scores' must be an object "
                            f"{{label: score}}, not {type(scores).__name__}")
        raise DataError(f"record {rid!r}: candidate {k} has empty 'scores' (run ner-divscore first)")


def _bad_score(record: dict, k: int, label: str, value) -> None:
    rid = record.get("id")
    if not label.strip():
        raise DataError(f"record {rid!r}: candidate {k} has a score for an empty label {label!r}")
    if value is None:
        raise DataError(f"record {rid!r}: candidate {k}: the score for {label!r} is null "
                        f"(JSON has no NaN or infinity: the scorer wrote a non-finite score)")
    raise DataError(f"record {rid!r}: candidate {k} has a non-numeric score for {label!r}: {value!r}")


def candidate_scores(record: dict, labels: Sequence[str] | None = None, *,
                     check: bool = True) -> list[dict[str, float]]:
    """The per-label scores of each candidate (restricted to ``labels``; a candidate may then
    have none); DataError if the candidates or their scores are missing or invalid
    (:func:`check_scored_candidates`; ``check=False``: the caller has checked the record)."""
    if check:
        check_scored_candidates(record)
    out = []
    for c in record.get("candidates") or ():
        scores = c["scores"]
        if labels is not None:
            scores = {lab: scores[lab] for lab in labels if lab in scores}
        out.append(dict(scores))
    return out


def demote_partial_names(record: dict, scores: list[dict[str, float]], labels: Iterable[str]) -> list[dict[str, float]]:
    """Apply the name-boundary rule (module doc, step 2) for ``labels`` (``"*"``: every label);
    returns new scores."""
    labels = set(labels)
    if not labels:
        return scores
    if ALL_LABELS in labels:
        labels = {lab for s in scores for lab in s}
    cands = record.get("candidates") or []
    words = [t["text"] for t in record["tokens"]]
    index = {(c["token_start"], c["token_end"]): k for k, c in enumerate(cands)}
    out = [dict(s) for s in scores]
    for k, c in enumerate(cands):
        i, j = c["token_start"], c["token_end"]
        extensions = []
        if i > 0 and words[i - 1][:1].isupper() and (i - 1, j) in index:
            extensions.append(index[(i - 1, j)])
        if j + 1 < len(words) and words[j + 1][:1].isupper() and (i, j + 1) in index:
            extensions.append(index[(i, j + 1)])
        for lab in labels & out[k].keys():
            for e in extensions:
                ext = scores[e].get(lab)
                if ext is not None and out[k][lab] <= ext:
                    out[k][lab] = ext + BOUNDARY_MARGIN
    return out


def best_labels(scores: list[dict[str, float]], label_order: Sequence[str] | None = None, *,
                indexed: bool = False) -> list:
    """``(label, score)`` with the lowest score per candidate (ties: first in ``label_order``).

    ``indexed=True``: ``(candidate number, (label, score))`` instead, leaving out candidates
    with no score (none for the labels asked for)."""
    out = []
    for k, s in enumerate(scores):
        if not s:
            if indexed:
                continue
            raise DataError(f"candidate {k} has no score for the labels asked for")
        order = [lab for lab in (label_order or ()) if lab in s] or list(s)
        lab = min(order, key=lambda x: s[x])
        out.append((k, (lab, float(s[lab]))) if indexed else (lab, float(s[lab])))
    return out


def resolve_overlaps(cands: Sequence[dict], picks: list[tuple[int, str, float]]) -> list[tuple[int, str, float]]:
    """Greedy rule: best score first (ties: longer, then leftmost); drop what overlaps a kept span."""
    def key(p):
        c = cands[p[0]]
        return (p[2], -(c["token_end"] - c["token_start"]), c["token_start"])

    taken = []
    used: set[int] = set()
    for p in sorted(picks, key=key):
        c = cands[p[0]]
        toks = range(c["token_start"], c["token_end"] + 1)
        if any(t in used for t in toks):
            continue
        used.update(toks)
        taken.append(p)
    return sorted(taken, key=lambda p: p[0])


def sentence_picks(record: dict, sel: Selection, normalizer: LabelNormalizer | None = None, *,
                   check: bool = True) -> list[tuple[int, str, float]]:
    """``(candidate number, label, raw score)`` of a record's candidates that enter the ranking.

    ``normalizer`` (fitted on the corpus) decides the best label and the overlap order; without
    one, raw scores do. ``check=False``: the record is checked already
    (:func:`check_scored_candidates`).
    """
    scores = candidate_scores(record, sel.labels, check=check)
    if sel.boundary_labels:
        scores = demote_partial_names(record, scores, sel.boundary_labels)
    keys = scores if normalizer is None else \
        [{lab: normalizer(lab, v) for lab, v in s.items()} for s in scores]
    picks = [(k, lab, v) for k, (lab, v) in best_labels(keys, sel.labels, indexed=True)]
    picks = [p for p in picks if sel.threshold(p[1]) is None or scores[p[0]][p[1]] < sel.threshold(p[1])]
    if sel.overlap == "best":
        picks = resolve_overlaps(record.get("candidates") or [], picks)
    return [(k, lab, float(scores[k][lab])) for k, lab, _ in picks]


# ---------------------------------------------------------------------- corpus-wide ranking
def top_percent_count(total: int, percent: float) -> int:
    """How many spans ``percent`` % of ``total`` candidates keeps: rounded half up, at least
    one (as ``ner-eval --k-frac`` counts its K)."""
    return max(1, int(total * percent / 100.0 + 0.5))


def select_corpus(picks: Iterable[tuple[int, int, str, float]], total_candidates: int,
                  sel: Selection) -> dict[int, list[tuple[int, str, float]]]:
    """Corpus-wide per-label top-K / top-percent over ``(record, candidate, label, score)``.

    Returns record number -> kept ``(candidate, label, score)``. Ties at the cut are broken
    by corpus order (earlier record, earlier candidate first) so results are deterministic.
    """
    by_label: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
    for rec, cand, lab, score in picks:
        by_label[lab].append((score, rec, cand))
    limit = None
    if sel.top_k is not None:
        limit = sel.top_k
    if sel.top_percent is not None:
        pct = top_percent_count(total_candidates, sel.top_percent)
        limit = pct if limit is None else min(limit, pct)
    kept: dict[int, list[tuple[int, str, float]]] = defaultdict(list)
    for lab, items in by_label.items():
        items.sort()
        if limit is not None:
            items = items[:limit]
        for score, rec, cand in items:
            kept[rec].append((cand, lab, score))
    return kept


def make_pseudo_span(cand: dict, label: str, score: float) -> dict:
    return {"start": cand["start"], "end": cand["end"], "token_start": cand["token_start"],
            "token_end": cand["token_end"], "label": label, "score": score, "source": SOURCE}


@dataclass
class PseudoStats:
    records: int = 0
    candidates: int = 0
    emitted: int = 0
    per_label: Counter = field(default_factory=Counter)


class _Spool:
    """Records of pass 1, written to a temporary file to be read again in pass 2."""

    def __init__(self):
        fd, self.path = tempfile.mkstemp(prefix="ner-pseudo-", suffix=".jsonl")
        self._fh = os.fdopen(fd, "wb")

    def write(self, record: dict) -> None:
        self._fh.write(dumps(record))

    def records(self) -> Iterator[dict]:
        self._fh.close()
        for _, obj in read_jsonl(self.path, allow_empty=True):
            yield obj

    def close(self) -> None:
        from nertools.core.atomic import discard

        try:
            self._fh.close()
        finally:
            discard(self.path)


def _scored_record(obj, lineno: int) -> dict:
    rec = normalize_record(obj, default_id=str(lineno))
    check_scored_candidates(rec)
    return rec


def read_scored(path: str, policy: ErrorPolicy | None = None) -> Iterator[dict]:
    """The records of ``path`` with their scored candidates checked
    (:func:`check_scored_candidates`): a bad one is a :class:`DataError` naming file and line,
    or is skipped, per ``policy``."""
    return read_converted(path, _scored_record, policy=policy)


def _rereadable(path: str) -> bool:
    return path != "-" and os.path.isfile(path)


def pseudo_label(path: str, sel: Selection, *, emit_all: bool = False, keep_candidates: bool = False,
                 policy: ErrorPolicy | None = None, stats: PseudoStats | None = None,
                 spool: bool | None = None) -> Iterator[dict]:
    """Two-pass pseudo labelling of the records in ``path`` (``-`` = stdin); yields records.

    ``spool``: write pass-1 records to a temporary file (default: only when ``path`` cannot
    be read twice, i.e. stdin or a pipe).
    """
    policy = policy or ErrorPolicy()
    stats = stats if stats is not None else PseudoStats()
    use_spool = not _rereadable(path) if spool is None else spool
    spooled = _Spool() if use_spool else None
    where = path if path != "-" else "<stdin>"

    def reread():
        # a record skipped in the first pass is skipped again (record numbers must agree);
        # when none was, every record is known to be good
        if spooled is not None:
            return spooled.records()
        if policy.skipped:
            return read_scored(path, ErrorPolicy("skip"))
        return read_records(path, policy=ErrorPolicy("skip"))

    try:
        normalizer = None
        first = read_scored(path, policy)
        if sel.normalize != "none":
            def spooling(records):
                for rec in records:
                    if spooled is not None:
                        spooled.write(rec)
                    yield rec
            try:
                normalizer = LabelNormalizer.fit(sel.normalize, spooling(first), sel.labels, check=False)
            except DataError as e:
                raise e.located(where, None) from None
            first = reread()
        picks: list[tuple[int, int, str, float]] = []
        for n, rec in enumerate(first):
            try:
                kept = sentence_picks(rec, sel, normalizer, check=False)
            except DataError as e:
                raise e.located(where, None) from None
            stats.records += 1
            stats.candidates += len(rec.get("candidates") or [])
            picks.extend((n, c, lab, v) for c, lab, v in kept)
            if spooled is not None and normalizer is None:
                spooled.write(rec)
        chosen = select_corpus(picks, stats.candidates, sel)
        del picks
        second = reread()
        for n, rec in enumerate(second):
            kept = sorted(chosen.pop(n, []))
            if not kept and not emit_all:
                continue
            cands = rec.get("candidates") or []
            spans = [make_pseudo_span(cands[c], lab, score) for c, lab, score in kept]
            spans.sort(key=lambda s: (s["start"], s["end"]))
            rec["spans"] = spans
            if not keep_candidates:
                rec.pop("candidates", None)
            stats.emitted += 1
            stats.per_label.update(s["label"] for s in spans)
            yield rec
    finally:
        if spooled is not None:
            spooled.close()
