"""LAR label alignment: the table that maps every target type to one source type.

A table is a JSON object (``nertools-align-table``, version 1)::

    {"format": "nertools-align-table", "version": 1, "method": "votes" | "names" | "manual",
     "source_labels": [...], "target_labels": [...],
     "misc": "MISC",                         # the source type unrecognised targets go to
     "assign": {target: source},             # every target label, exactly one source each
     "candidates": {source: [targets, sorted]},   # the inverse of assign (every source label)
     "votes": {target: {source or "O": count}},   # how assign was decided (method votes)
     "overrides": {target: source}}          # manual entries applied last

and optional fields that :func:`load_table` accepts and :meth:`AlignmentTable.to_json` writes:
``default`` ``{source: target}`` (the target a source-typed span gets without enhanced
inference: the candidate with most votes, ties alphabetical; written for every source type
with candidates), ``overlap_votes`` ``{target: {source: count}}``, ``mentions`` ``{target: n}``
(gold mentions seen), ``recall`` ``{target: fraction}``, ``similarity`` ``{target: {source:
cosine}}`` (method names) and ``settings``.

**Votes** (:func:`build_table`): source predictions and target gold are paired by record
``id`` (as ``ner-eval`` pairs them; a gold record without a prediction is an error unless
``missing="empty"``/``"ignore"``). For every gold mention of target type ``t``, a predicted
span with exactly its character offsets adds one vote ``votes[t][s]`` (``s`` = the
prediction's label); a mention without such a prediction adds one to ``votes[t]["O"]`` and,
if predicted spans overlap it (at least one shared character), one to
``overlap_votes[t][s]`` per overlapping source type. ``assign[t]`` is the source type with
most exact votes; only when ``t`` has no exact vote at all is the overlap count used
(weight 0.5: it then also counts half in ``recall``). **Ties** go to the source type with
more exact votes over all targets, then to the alphabetically first. A target with no vote
of either kind goes to ``misc``; so does one whose recall (votes of its chosen source type
/ its gold mentions) is below ``min_recall``. Overrides (target -> source) are applied last.

**Unknown types.** A target type in ``target_labels`` that never occurs in the gold is
kept, assigned to ``misc``, and listed in :attr:`AlignmentTable.absent`. When a table is
used on data, :meth:`AlignmentTable.source_of` sends a target type the table does not know
to ``misc`` (callers count it) and :meth:`candidates_of` gives ``[]`` for an unknown source
type; :func:`check_labels` lists both kinds of mismatch for a data set.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import orjson

from nertools.core.jsonl import display_name
from nertools.errors import DataError
from nertools.evaluation.matching import MISSING_CHOICES, _matched  # noqa: F401

FORMAT = "nertools-align-table"
VERSION = 1
METHODS = ("votes", "names", "manual")
NO_VOTE = "O"
OVERLAP_WEIGHT = 0.5
MISC_NAMES = ("MISC", "misc", "miscellaneous", "Miscellaneous", "MISCELLANEOUS", "other", "OTHER")


@dataclass
class AlignmentTable:
    method: str
    source_labels: list[str]
    target_labels: list[str]
    misc: str
    assign: dict[str, str]
    votes: dict[str, dict[str, float]] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)
    default: dict[str, str] = field(default_factory=dict)
    overlap_votes: dict[str, dict[str, int]] = field(default_factory=dict)
    mentions: dict[str, int] = field(default_factory=dict)
    recall: dict[str, float] = field(default_factory=dict)
    similarity: dict[str, dict[str, float]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.misc not in self.source_labels:
            self.source_labels = sorted([*self.source_labels, self.misc])
        if not self.default:
            self.default = default_targets(self.candidates, self.votes)

    # -- the inverse -------------------------------------------------------------------
    @property
    def candidates(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {s: [] for s in self.source_labels}
        for t, s in self.assign.items():
            out.setdefault(s, []).append(t)
        return {s: sorted(ts) for s, ts in sorted(out.items())}

    def source_of(self, target: str) -> str:
        """The source type of ``target``; a target the table does not know goes to ``misc``."""
        return self.assign.get(target, self.misc)

    def candidates_of(self, source: str) -> list[str]:
        """The candidate target types of ``source`` (``[]`` for a source type it does not know)."""
        return self.candidates.get(source, [])

    def default_of(self, source: str) -> str | None:
        return self.default.get(source)

    @property
    def absent(self) -> list[str]:
        """Target labels that never occurred in the gold the votes came from (method votes)."""
        if self.method != "votes" or not self.mentions:
            return []
        return [t for t in self.target_labels if not self.mentions.get(t)]

    @property
    def unrecognised(self) -> list[str]:
        """Targets sent to ``misc`` by the rule (no vote, or recall below the minimum)."""
        return sorted(t for t, s in self.assign.items() if s == self.misc and t not in self.overrides
                      and self.settings.get("reason", {}).get(t) in ("no vote", "min recall", "absent"))

    # -- serialisation -----------------------------------------------------------------
    def to_json(self) -> dict:
        out: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "method": self.method,
            "source_labels": list(self.source_labels), "target_labels": list(self.target_labels),
            "misc": self.misc,
            "assign": {t: self.assign[t] for t in self.target_labels},
            "candidates": self.candidates,
            "votes": {t: dict(sorted(v.items())) for t, v in sorted(self.votes.items())},
            "overrides": dict(sorted(self.overrides.items())),
            "default": dict(sorted(self.default.items())),
        }
        for key in ("overlap_votes", "mentions", "recall", "similarity", "settings"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out

    def dumps(self) -> bytes:
        return orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2) + b"\n"

    def summary(self) -> str:
        """A readable table (target -> source, votes, recall) for stderr."""
        rows = []
        width = max((len(t) for t in self.target_labels), default=6)
        for t in self.target_labels:
            s = self.assign[t]
            v = self.votes.get(t, {})
            n = self.mentions.get(t)
            ranked = sorted(((c, k) for k, c in v.items() if k != NO_VOTE), key=lambda x: (-x[0], x[1]))
            votes = ", ".join(f"{k} {_num(c)}" for c, k in ranked[:4])
            if v.get(NO_VOTE):
                votes += (", " if votes else "") + f"none {_num(v[NO_VOTE])}"
            note = []
            if t in self.overrides:
                note.append("override")
            reason = self.settings.get("reason", {}).get(t)
            if reason and reason != "votes":
                note.append(reason)
            if self.method == "names" and t in self.similarity:
                note.append(f"cos {self.similarity[t].get(s, 0.0):.2f}")
            rec = self.recall.get(t)
            parts = [f"  {t:<{width}} -> {s}"]
            if n is not None:
                parts.append(f"[{n} mentions" + (f", recall {rec:.2f}]" if rec is not None else "]"))
            if votes:
                parts.append(f"votes: {votes}")
            if note:
                parts.append(f"({'; '.join(note)})")
            rows.append("  ".join(parts))
        cands = [f"  {s}: {', '.join(ts)}" for s, ts in self.candidates.items() if ts]
        return "\n".join(["target -> source:", *rows, "candidates per source type:", *cands])


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def default_targets(candidates: Mapping[str, list[str]], votes: Mapping[str, Mapping[str, float]],
                    scores: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, str]:
    """Per source type with candidates, the one to use without enhanced inference: most votes
    for that source (``scores``: highest score), ties alphabetical."""
    out = {}
    for s, ts in candidates.items():
        if not ts:
            continue
        table = scores if scores else votes
        out[s] = sorted(ts, key=lambda t: (-float(table.get(t, {}).get(s, 0.0)), t))[0]
    return out


def guess_misc(source_labels: Iterable[str]) -> str:
    """The source label that reads as "miscellaneous", else ``MISC``."""
    labels = list(source_labels)
    for name in MISC_NAMES:
        if name in labels:
            return name
    return "MISC"


# ------------------------------------------------------------------------------ building

def build_table(source_pred: str | os.PathLike | Iterable[dict], target_gold: str | os.PathLike | Iterable[dict],
                *, misc: str | None = None, min_recall: float = 0.0,
                overrides: Mapping[str, str] | None = None, source_labels: Iterable[str] | None = None,
                target_labels: Iterable[str] | None = None, missing: str = "fail", policy=None) -> AlignmentTable:
    """The vote-based alignment table (see the module docstring for every rule).

    ``source_pred``: records with the source model's spans (labels = source types);
    ``target_gold``: the same sentences (same ids and texts) with gold target-typed spans.
    Paths or iterables of canonical records. ``source_labels``/``target_labels`` extend the
    labels seen in the data (a target given but never in the gold is kept and goes to
    ``misc``). ``overrides`` maps target -> source and wins over the votes.
    """
    if not 0.0 <= min_recall <= 1.0:
        raise ValueError("min_recall must be in [0, 1]")
    votes: dict[str, dict[str, float]] = {}
    overlap: dict[str, dict[str, int]] = {}
    mentions: dict[str, int] = {}
    seen_sources: set[str] = set()
    source_totals: dict[str, int] = {}
    pairs, _stats = _matched(target_gold, source_pred, missing, policy)
    for gold_keys, pred, _where in pairs:
        pspans = [] if pred is None else [(s["start"], s["end"], s["label"]) for s in pred["spans"]]
        seen_sources.update(lbl for _, _, lbl in pspans)
        exact: dict[tuple[int, int], set[str]] = {}
        for a, b, lbl in pspans:
            exact.setdefault((a, b), set()).add(lbl)
        for a, b, t in sorted(gold_keys):
            mentions[t] = mentions.get(t, 0) + 1
            vt = votes.setdefault(t, {})
            hit = exact.get((a, b))
            if hit:
                for s in hit:
                    vt[s] = vt.get(s, 0) + 1
                    source_totals[s] = source_totals.get(s, 0) + 1
                continue
            vt[NO_VOTE] = vt.get(NO_VOTE, 0) + 1
            ov = {lbl for pa, pb, lbl in pspans if pa < b and a < pb}
            for s in ov:
                overlap.setdefault(t, {})[s] = overlap.setdefault(t, {}).get(s, 0) + 1
    sources = set(seen_sources) | set(source_labels or ())
    misc = misc or guess_misc(sources)
    sources.add(misc)
    targets = sorted(set(mentions) | set(target_labels or ()))
    overrides = dict(overrides or {})
    for t, s in overrides.items():
        if t not in targets:
            targets = sorted({*targets, t})
        if s not in sources:
            raise DataError(f"override {t} -> {s}: {s!r} is not a source type (known: "
                            f"{', '.join(sorted(sources))}; add it with --source-labels)")
    assign: dict[str, str] = {}
    recall: dict[str, float] = {}
    reason: dict[str, str] = {}
    for t in targets:
        n = mentions.get(t, 0)
        exact_votes = {s: c for s, c in votes.get(t, {}).items() if s != NO_VOTE and c > 0}
        if exact_votes:
            pool, weight, why = exact_votes, 1.0, "votes"
        elif overlap.get(t):
            pool, weight, why = overlap[t], OVERLAP_WEIGHT, "overlap"
        else:
            pool, weight, why = {}, 0.0, ("absent" if n == 0 else "no vote")
        if pool:
            best = sorted(pool, key=lambda s: (-pool[s], -source_totals.get(s, 0), s))[0]
            recall[t] = round(weight * pool[best] / n, 6) if n else 0.0
            if recall[t] < min_recall:
                best, why = misc, "min recall"
        else:
            best = misc
            if n:
                recall[t] = 0.0
        assign[t] = best
        reason[t] = why
    for t, s in overrides.items():
        assign[t] = s
        reason[t] = "override"
    settings = {"min_recall": min_recall, "overlap_weight": OVERLAP_WEIGHT, "reason": reason}
    return AlignmentTable("votes", sorted(sources), targets, misc, assign, votes=votes, overrides=overrides,
                          overlap_votes=overlap, mentions=mentions, recall=recall, settings=settings)


def manual_table(assign: Mapping[str, str], *, misc: str = "MISC",
                 source_labels: Iterable[str] | None = None) -> AlignmentTable:
    """A table written by hand (target -> source)."""
    sources = sorted(set(assign.values()) | set(source_labels or ()) | {misc})
    targets = sorted(assign)
    return AlignmentTable("manual", sources, targets, misc, dict(assign), overrides={})


# ------------------------------------------------------------------------------ overrides

def read_overrides(path: str | os.PathLike) -> dict[str, str]:
    """A manual override file: ``target<TAB>source`` per line (``#`` comments and blank lines
    skipped; JSONL ``{"target": ..., "source": ...}`` lines also accepted). A target given
    twice with different sources is an error naming the line."""
    from nertools.core.specfile import read_small_table

    def from_json(obj: dict):
        t, s = obj.get("target"), obj.get("source")
        if not isinstance(t, str) or not isinstance(s, str) or not t.strip() or not s.strip():
            raise DataError('expected {"target": TYPE, "source": TYPE}')
        return t.strip(), s.strip()

    def from_fields(fields: list[str]):
        fields = [f.strip() for f in fields]
        if len(fields) != 2 or not all(fields):
            raise DataError("expected TARGET<TAB>SOURCE")
        return fields[0], fields[1]

    name = display_name(path)
    out: dict[str, str] = {}
    for lineno, (t, s) in enumerate(read_small_table(path, from_json, from_fields, what="override"), 1):
        if t in out and out[t] != s:
            raise DataError(f"target {t!r} given twice ({out[t]} and {s})", path=name)
        out[t] = s
    return out


# ------------------------------------------------------------------------------ loading

def _str_list(obj: Any, key: str) -> list[str]:
    value = obj.get(key)
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise DataError(f"{key!r} must be a list of non-empty strings")
    if len(set(value)) != len(value):
        raise DataError(f"{key!r} lists a label twice")
    return value


def _str_map(obj: Any, key: str, required: bool = True) -> dict[str, str]:
    value = obj.get(key, None if required else {})
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise DataError(f"{key!r} must be an object of strings")
    return value


def table_from_json(obj: Any) -> AlignmentTable:
    """Validate a parsed table (errors are :class:`DataError` without a file; see load_table)."""
    if not isinstance(obj, dict):
        raise DataError("an alignment table is a JSON object")
    if obj.get("format") != FORMAT:
        raise DataError(f"not an alignment table: \"format\" must be {FORMAT!r}")
    if obj.get("version") != VERSION:
        raise DataError(f"unsupported table version {obj.get('version')!r} (this nertools reads {VERSION})")
    method = obj.get("method")
    if method not in METHODS:
        raise DataError(f"\"method\" must be one of {', '.join(METHODS)}")
    sources = _str_list(obj, "source_labels")
    targets = _str_list(obj, "target_labels")
    misc = obj.get("misc")
    if not isinstance(misc, str) or not misc:
        raise DataError("\"misc\" must be a source type")
    if misc not in sources:
        raise DataError(f"\"misc\" {misc!r} is not in source_labels")
    assign = _str_map(obj, "assign")
    missing = [t for t in targets if t not in assign]
    if missing:
        raise DataError(f"target type(s) without a source in \"assign\": {', '.join(missing)}")
    extra = [t for t in assign if t not in targets]
    if extra:
        raise DataError(f"\"assign\" names target type(s) not in target_labels: {', '.join(extra)}")
    bad = sorted({s for s in assign.values() if s not in sources})
    if bad:
        raise DataError(f"\"assign\" names source type(s) not in source_labels: {', '.join(bad)}")
    overrides = _str_map(obj, "overrides", required=False)
    for t, s in overrides.items():
        if assign.get(t) != s:
            raise DataError(f"override {t} -> {s} disagrees with \"assign\" ({t} -> {assign.get(t)})")
    votes = obj.get("votes", {})
    if not isinstance(votes, dict) or not all(
            isinstance(v, dict) and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in v.values())
            for v in votes.values()):
        raise DataError("\"votes\" must map target types to {source: count}")
    table = AlignmentTable(method, sources, targets, misc, dict(assign), votes=votes, overrides=overrides,
                           default=_str_map(obj, "default", required=False),
                           overlap_votes=obj.get("overlap_votes") or {}, mentions=obj.get("mentions") or {},
                           recall=obj.get("recall") or {}, similarity=obj.get("similarity") or {},
                           settings=obj.get("settings") or {})
    if "candidates" in obj:
        given = obj["candidates"]
        derived = table.candidates
        if not isinstance(given, dict) or {s: sorted(v) for s, v in given.items() if v} != \
                {s: v for s, v in derived.items() if v}:
            raise DataError("\"candidates\" is not the inverse of \"assign\" (edit assign; candidates follow)")
    for s, t in table.default.items():
        if t not in table.candidates_of(s):
            raise DataError(f"\"default\" {s} -> {t}: {t!r} is not a candidate of {s!r}")
    for s, ts in table.candidates.items():  # a hand-edited table may leave default out
        if ts and s not in table.default:
            table.default[s] = default_targets({s: ts}, table.votes)[s]
    return table


def load_table(path: str | os.PathLike) -> AlignmentTable:
    """Read and validate a table file; every error is a :class:`DataError` naming the file."""
    name = display_name(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise DataError("no such table file", path=name) from None
    except IsADirectoryError:
        raise DataError("is a directory, not a table file", path=name) from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", path=name) from None
    try:  # a table is one small JSON document, not a record stream: no record size limit
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start})", path=name) from None
    except json.JSONDecodeError as e:
        raise DataError(f"broken JSON: {e}", path=name) from None
    try:
        return table_from_json(obj)
    except DataError as e:
        raise DataError(e.message, path=name) from None


def check_labels(table: AlignmentTable, records: Iterable[dict], *, field: str = "label") -> dict[str, Any]:
    """What a data set and a table disagree on: ``unknown`` {type: count} (span labels the
    table's target_labels lack; :meth:`source_of` sends them to misc) and ``absent`` (target
    labels of the table no span of the data has)."""
    seen: dict[str, int] = {}
    for rec in records:
        for s in rec.get("spans", []):
            seen[s[field]] = seen.get(s[field], 0) + 1
    known = set(table.target_labels)
    return {"unknown": {t: c for t, c in sorted(seen.items()) if t not in known},
            "absent": [t for t in table.target_labels if t not in seen]}
