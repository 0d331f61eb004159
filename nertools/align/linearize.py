"""LAR's linearised generation format (methods-spec §4.2, §4.6) and its parser.

Three formats, one per training stage:

* ``direct`` (source stage, and "Ori" on a target domain): the prompt lists the types, the
  answer is one item per gold entity in sentence order, ``type : span``;
* ``reassign`` (LAR's target stage): ``source type : span -> target type``, where the source
  type is the alignment table's ``assign[target]``.

Prompt (decoder-only LMs; the instruction of Figure 4 of the paper)::

    Source types: person, organization, location, miscellaneous.
    Target types: politician, political party, ....
    Input: <the record's tokens joined by single spaces>
    Answer:
    <item>
    <item>
    <EOS>

Type names are natural language, lower case (:func:`type_name`: ``PER`` -> ``person``,
``politicalparty`` -> ``political party``, ``Restaurant_Name`` -> ``restaurant name``).

**Separator**: items are separated by a real newline (:data:`SEPARATOR`), or, for a
tokenizer that cannot write one (T5's SentencePiece vocabulary turns it into a space), by
``" \\n "``, the two characters backslash-n between spaces (:data:`LITERAL_SEPARATOR`,
methods-spec §4.2; :func:`nertools.align.generative.answer_separator` picks). The parser
accepts both, whatever the model was trained with.
A sentence without entities has an empty answer (EOS only).

**Parsing** (:meth:`Linearizer.parse`) maps each item back to a token span of the record:

* an item without ``" : "`` (or, in ``reassign``, without ``" -> "``) is *malformed*: dropped;
* the span text is split on whitespace and matched against the record's token texts as an
  exact word sequence (then, only if that finds nothing, case-insensitively). **Occurrence
  rule**: items are read left to right and each takes the *first* occurrence none of whose
  words an earlier kept item already holds; a span that does not occur in the record is
  dropped (*not_in_text*), one whose every occurrence is taken is dropped (*overlap*);
* a type name that is not one of the format's types is dropped (*unknown_source* /
  *unknown_target*);
* in ``reassign``, a target type that is a known target but not among the candidates of the
  item's source type (``candidates[source]`` of the table: ``organization : Pizza Hut -> dish``
  with ``dish`` aligned to ``MISC``) is handled by the **off-candidate policy**
  (``off_candidate``, ``ner-align train --off-candidate``), chosen at training time and kept in
  the model directory:

  - ``target`` (the default): the generated target type is trusted and the item's source
    type becomes the table's ``assign[target]``;
  - ``default``: the generated source type is trusted and the target becomes that source
    type's default target (``default[source]`` of the table: its candidate with most votes,
    i.e. the most frequent target of that source type in the training data; methods-spec
    §4.6); a source type without candidates is dropped as *target_not_candidate*;
  - ``drop``: the item is dropped (*target_not_candidate*; the only behaviour before the
    policy existed, and what a model directory without a policy gets).

  A repaired item is kept and counted as *off_candidate_repaired* (never silently). Measured
  (README, SmolLM2 on MIT Restaurant 1%, 2 seeds): ``target`` F1 +1.4 / +5.4 over ``drop``
  (the recall that drop loses), ``default`` −1.2 / −2.7.

Every drop is counted in :class:`ParseStats`; the commands report the counts on stderr and
keep them in their metadata.

**Identity targets** (``identity_target="none"``, ``ner-align train --identity-target none``;
methods-spec §4.2, A4): in ``reassign``, a target type whose name equals the name of its own
source type (CrossNER politics' ``person`` under CoNLL's ``PER``: "no refinement") is written
``source : span -> none``, as in the paper's Figure 4, and the prompt's target list names
``none`` once in place of those types. The parser reads ``-> none`` back as the identity target
of the item's source type (a source type without one: *unknown_target*). The default
(``"name"``) writes the real target name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

from nertools.align.names import label_name
from nertools.errors import DataError, UsageError


SEPARATOR = "\n"
LITERAL_SEPARATOR = " \\n "
ITEM_SOURCE = " : "
ITEM_TARGET = " -> "
FORMATS = ("direct", "reassign")
IDENTITY_TARGETS = ("name", "none")
OFF_CANDIDATE = ("target", "default", "drop")  # see the module doc; the first is the default
NONE_TARGET = "none"


def type_name(label: str) -> str:
    """The natural-language, lower-case name of a label (:func:`nertools.align.names.label_name`)."""
    return label_name(label)


def name_map(labels: Iterable[str]) -> dict[str, str]:
    """``{label: name}`` with names made unique: a label whose name collides with another's
    (``PER`` and ``person`` both ``person``) keeps its raw spelling."""
    labels = list(dict.fromkeys(labels))
    names = {lab: type_name(lab) for lab in labels}
    counts: dict[str, int] = {}
    for n in names.values():
        counts[n] = counts.get(n, 0) + 1
    return {lab: (n if counts[n] == 1 and (n == lab or n not in labels) else lab) for lab, n in names.items()}


@dataclass
class ParseStats:
    """What the parser kept and dropped (summed over records with :meth:`add`)."""

    items: int = 0
    kept: int = 0
    malformed: int = 0
    not_in_text: int = 0
    overlap: int = 0
    unknown_source: int = 0
    unknown_target: int = 0
    target_not_candidate: int = 0
    off_candidate_repaired: int = 0  # kept (counted in ``kept`` too): see the off-candidate policy

    def add(self, other: "ParseStats") -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)

    def dropped(self) -> int:
        return self.items - self.kept

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"{k} {v}" for k, v in asdict(self).items()
                 if k not in ("items", "kept", "off_candidate_repaired") and v]
        return (f"{self.kept} of {self.items} generated item(s) kept"
                + (f", {self.off_candidate_repaired} with an off-candidate target repaired"
                   if self.off_candidate_repaired else "")
                + (f" (dropped: {', '.join(parts)})" if parts else ""))


@dataclass
class Linearizer:
    """The prompt, the answer and the parser of one format (see the module doc).

    ``labels`` are the labels emitted in ``direct`` (the data's types) or the target labels
    in ``reassign``; ``source_labels`` are listed as "Source types" (``direct``: optional,
    e.g. the source types an "Ori" run's model was trained on); ``assign`` maps each target
    label to its source label (``reassign`` only) and ``candidates`` each source label to its
    target labels (default: the inverse of ``assign``).
    """

    format: str
    labels: Sequence[str]
    source_labels: Sequence[str] = ()
    assign: dict = field(default_factory=dict)
    candidates: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)     # label -> name, filled in by __post_init__
    identity_target: str = "name"                 # "none": see the module doc
    default: dict = field(default_factory=dict)   # source label -> its default target (the table's)
    off_candidate: str = "target"                 # one of OFF_CANDIDATE: see the module doc

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise UsageError(f"unknown format {self.format!r} (one of {', '.join(FORMATS)})")
        self.labels = list(self.labels)
        self.source_labels = list(self.source_labels)
        if self.format == "reassign":
            missing = [t for t in self.labels if t not in self.assign]
            if missing:
                raise DataError(f"the alignment table assigns no source type to {', '.join(missing)}")
            if not self.source_labels:
                self.source_labels = sorted(set(self.assign[t] for t in self.labels))
            if not self.candidates:
                inv: dict[str, list[str]] = {}
                for t in self.labels:
                    inv.setdefault(self.assign[t], []).append(t)
                self.candidates = inv
            # a source type's default target: the table's, else its first candidate
            self.default = {s: (self.default[s] if self.default.get(s) in ts else ts[0])
                            for s, ts in self.candidates.items() if ts}
        if self.off_candidate not in OFF_CANDIDATE:
            raise UsageError(f"unknown off-candidate policy {self.off_candidate!r} "
                             f"(one of {', '.join(OFF_CANDIDATE)})")
        if not self.names:  # unique within each list; a source and a target may share a name
            self.names = {**name_map(self.source_labels), **name_map(self.labels)}
        self._src_by_name = {self.names[s]: s for s in self.source_labels}
        self._tgt_by_name = {self.names[t]: t for t in self.labels}
        if self.identity_target not in IDENTITY_TARGETS:
            raise UsageError(f"unknown identity target {self.identity_target!r} "
                             f"(one of {', '.join(IDENTITY_TARGETS)})")
        # source label -> its identity target, when identity targets are written "none"
        self._identity: dict[str, str] = {}
        if self.identity_target == "none" and self.format == "reassign":
            if NONE_TARGET in self._tgt_by_name:
                raise UsageError(f"--identity-target none: a target type is already named "
                                 f"{NONE_TARGET!r} ({self._tgt_by_name[NONE_TARGET]})")
            for t in self.labels:
                src = self.assign[t]
                if self.names[t] == self.names.get(src):
                    self._identity[src] = t

        self._head = self._prompt_head()

    def _prompt_head(self) -> str:
        """The record-independent lines of the prompt (the type lists), each with its newline."""
        lines = []
        if self.source_labels:
            lines.append("Source types: " + ", ".join(self.names[s] for s in self.source_labels) + ".")
        if self.format == "reassign" or not self.source_labels or set(self.labels) != set(self.source_labels):
            shown = list(dict.fromkeys(self.target_name(t) for t in self.labels))
            if NONE_TARGET in shown:  # "none" once, last (as in the paper's Figure 4)
                shown = [n for n in shown if n != NONE_TARGET] + [NONE_TARGET]
            lines.append("Target types: " + ", ".join(shown) + ".")
        return "".join(line + "\n" for line in lines)

    def target_name(self, label: str) -> str:
        """How the target ``label`` is written after ``->`` (its name, or ``none``)."""
        if self._identity and self._identity.get(self.assign.get(label)) == label:
            return NONE_TARGET
        return self.names[label]

    # ---- serialisation (kept in the model directory)

    def config(self) -> dict:
        return {"format": self.format, "labels": list(self.labels), "source_labels": list(self.source_labels),
                "assign": dict(self.assign), "candidates": {k: list(v) for k, v in self.candidates.items()},
                "names": dict(self.names), "identity_target": self.identity_target,
                "default": dict(self.default), "off_candidate": self.off_candidate}

    @classmethod
    def from_config(cls, cfg: dict, *, off_candidate: str | None = None) -> "Linearizer":
        """The linearizer a model directory keeps; ``off_candidate`` overrides its policy
        (directories written before the policy existed drop, as they did then)."""
        return cls(cfg["format"], cfg["labels"], cfg.get("source_labels", ()), cfg.get("assign", {}),
                   cfg.get("candidates", {}), cfg.get("names", {}), cfg.get("identity_target", "name"),
                   cfg.get("default", {}), off_candidate or cfg.get("off_candidate", "drop"))

    # ---- text

    def prompt(self, record: dict) -> str:
        """The model input for ``record`` (ends with ``Answer:`` and a newline)."""
        words = " ".join(t["text"] for t in record["tokens"])
        return f"{self._head}Input: {words}\nAnswer:\n"

    def items(self, record: dict) -> list[str]:
        """The answer's items for the record's gold spans (sentence order; spans of labels this
        format does not know are an error, see :meth:`check_labels`)."""
        toks = record["tokens"]
        out = []
        for s in sorted(record.get("spans", []), key=lambda s: (s["token_start"], s["token_end"])):
            words = " ".join(t["text"] for t in toks[s["token_start"]:s["token_end"] + 1])
            lab = s["label"]
            if self.format == "direct":
                out.append(f"{self.names[lab]}{ITEM_SOURCE}{words}")
            else:
                out.append(f"{self.names[self.assign[lab]]}{ITEM_SOURCE}{words}{ITEM_TARGET}{self.target_name(lab)}")
        return out

    def answer(self, record: dict, separator: str = SEPARATOR) -> str:
        """The training target: items joined by ``separator`` (:data:`SEPARATOR` or
        :data:`LITERAL_SEPARATOR`; empty without entities)."""
        return separator.join(self.items(record))

    def check_labels(self, records: Sequence[dict], path: str | None = None) -> None:
        """Refuse (exit 65) gold labels this format cannot emit, naming them."""
        known = set(self.labels)
        unknown = sorted({s["label"] for r in records for s in r.get("spans", [])} - known)
        if unknown:
            where = "the alignment table" if self.format == "reassign" else "the label set"
            raise DataError(f"gold label(s) {', '.join(unknown)} are not in {where} "
                            f"({', '.join(self.labels)}); add them to the table (an override) or "
                            "remove those spans", path=path)

    # ---- parsing

    def parse(self, text: str, record: dict) -> tuple[list[dict], ParseStats]:
        """Spans of ``record`` from generated ``text`` (see the module doc), and the counts."""
        stats = ParseStats()
        toks = record["tokens"]
        words = [t["text"] for t in toks]
        folded = [w.casefold() for w in words]
        taken = [False] * len(words)
        spans: list[dict] = []
        for raw in split_items(text):
            stats.items += 1
            repaired = False
            parsed = self._split(raw)
            if parsed is None:
                stats.malformed += 1
                continue
            src_name, span_text, tgt_name = parsed
            if self.format == "direct":
                label = self._tgt_by_name.get(src_name)
                if label is None:
                    stats.unknown_target += 1
                    continue
                source = None
            else:
                source = self._src_by_name.get(src_name)
                if source is None:
                    stats.unknown_source += 1
                    continue
                if self._identity and tgt_name == NONE_TARGET:
                    label = self._identity.get(source)
                else:  # (an identity target under its real name is read too: it is unambiguous)
                    label = self._tgt_by_name.get(tgt_name)
                if label is None:
                    stats.unknown_target += 1
                    continue
                if label not in self.candidates.get(source, ()):
                    if self.off_candidate == "default" and source in self.default:
                        label = self.default[source]
                    elif self.off_candidate == "target":
                        source = self.assign[label]
                    else:
                        stats.target_not_candidate += 1
                        continue
                    repaired = True
            needle = span_text.split()
            where = find_occurrences(words, needle) or find_occurrences(folded, [w.casefold() for w in needle])
            if not where:
                stats.not_in_text += 1
                continue
            free = [a for a in where if not any(taken[a:a + len(needle)])]
            if not free:
                stats.overlap += 1
                continue
            a = free[0]
            b = a + len(needle) - 1
            for i in range(a, b + 1):
                taken[i] = True
            span = {"start": toks[a]["start"], "end": toks[b]["end"], "token_start": a, "token_end": b,
                    "label": label}
            if source is not None:
                span["source_label"] = source
            spans.append(span)
            stats.kept += 1
            stats.off_candidate_repaired += repaired
        spans.sort(key=lambda s: s["token_start"])
        return spans, stats

    def _split(self, item: str) -> tuple[str, str, str | None] | None:
        head, sep, rest = item.partition(ITEM_SOURCE)
        if not sep or not head.strip() or not rest.strip():
            return None
        if self.format == "direct":
            return head.strip(), rest.strip(), None
        span_text, sep, tgt = rest.rpartition(ITEM_TARGET)
        if not sep or not span_text.strip() or not tgt.strip():
            return None
        return head.strip(), span_text.strip(), tgt.strip()


def split_items(text: str) -> list[str]:
    """Items of a generated answer: split on real newlines and on literal backslash-n."""
    text = text.replace("\\n", "\n")
    return [line.strip() for line in text.split("\n") if line.strip()]


def find_occurrences(words: Sequence[str], needle: Sequence[str]) -> list[int]:
    """Start indices where ``needle`` occurs in ``words`` as a contiguous word sequence."""
    n = len(needle)
    if n == 0 or n > len(words):
        return []
    first = needle[0]
    return [i for i in range(len(words) - n + 1) if words[i] == first and list(words[i:i + n]) == list(needle)]


def table_fields(table: dict) -> tuple[list[str], list[str], dict, dict]:
    """``(source_labels, target_labels, assign, candidates)`` of a parsed alignment table
    (the JSON ``ner-align table`` writes: format ``nertools-align-table``, version 1)."""
    if not isinstance(table, dict) or table.get("format") != "nertools-align-table":
        raise DataError("not an alignment table (format nertools-align-table, written by ner-align table)")
    try:
        assign = {str(k): str(v) for k, v in table["assign"].items()}
    except (KeyError, AttributeError):
        raise DataError("the alignment table has no 'assign' object") from None
    targets = list(table.get("target_labels") or sorted(assign))
    sources = list(table.get("source_labels") or sorted(set(assign.values())))
    cand = table.get("candidates") or {}
    candidates = {str(s): [str(t) for t in ts] for s, ts in cand.items()} if cand else {}
    if not candidates:
        for t in targets:
            if t in assign:
                candidates.setdefault(assign[t], []).append(t)
    return sources, targets, assign, candidates
