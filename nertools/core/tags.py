"""Token tags <-> spans: the BIO2 (IOB2), IOB1, IOBES and BILOU tagging schemes.

A tag is ``O`` or ``<prefix>-<TYPE>``; the type is everything after the first ``-``
(``B-creative-work`` has type ``creative-work``). Spans here are token spans
``(token_start, token_end, label)`` with ``token_end`` INCLUSIVE, as in the record format.

Prefixes per scheme:

========  =========================================================
BIO2      B = begin, I = inside (every entity starts with B)
IOB1      I = inside, B = begin only when the entity directly follows
          another entity of the same type (CoNLL-2003's original files)
IOBES     B = begin, I = inside, E = end, S = single-token entity
BILOU     B = begin, I = inside, L = last, U = unit (single-token)
========  =========================================================

Decoding is lenient and never fails on a well-formed tag string; it reads any sequence
with the rule of the CoNLL evaluation script (and of seqeval's default mode):

* ``O`` closes the open entity;
* ``B-X`` closes the open entity and opens an ``X`` entity;
* ``I-X`` continues an open ``X`` entity; after ``O``, at the start, or after an entity of
  another type (or a closed one), it opens a new ``X`` entity;
* ``E-X``/``L-X`` continues and closes an open ``X`` entity; otherwise it is a one-token
  ``X`` entity (an end without a begin);
* ``S-X``/``U-X`` closes the open entity and is a one-token ``X`` entity.

The same rule serves every scheme (in BIO2 and IOB1 only O/B/I occur), so decoding does
not need to know the scheme; encoding does. Decoded spans never overlap and are sorted.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from nertools.errors import DataError

SCHEMES = ("BIO2", "IOB1", "IOBES", "BILOU")

#: Alternative names accepted by :func:`canonical_scheme`.
SCHEME_ALIASES = {"BIO2": "BIO2", "IOB2": "BIO2", "BIO": "BIO2", "IOB1": "IOB1", "IOB": "IOB1",
                  "IOBES": "IOBES", "BIOES": "IOBES", "BILOU": "BILOU", "BILUO": "BILOU"}

PREFIXES = {"BIO2": frozenset("BI"), "IOB1": frozenset("BI"),
            "IOBES": frozenset("BIES"), "BILOU": frozenset("BILU")}

Span = tuple[int, int, str]


def canonical_scheme(name: str) -> str:
    """``"iob2"`` -> ``"BIO2"`` etc.; raises :class:`ValueError` for an unknown scheme."""
    try:
        return SCHEME_ALIASES[name.upper()]
    except KeyError:
        raise ValueError(f"unknown tagging scheme {name!r} (known: {', '.join(SCHEMES)})") from None


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")``.

    Raises :class:`DataError` for anything else (no prefix, a prefix longer than one
    letter, an empty type).
    """
    if tag == "O":
        return "O", ""
    prefix, sep, label = tag.partition("-")
    if not sep or len(prefix) != 1 or not label:
        raise DataError(f"malformed tag {tag!r} (expected O or <prefix>-<TYPE>)")
    return prefix, label


def check_tag(tag: str, scheme: str) -> None:
    """Raise :class:`DataError` when ``tag`` is not a tag of ``scheme``."""
    prefix, _ = split_tag(tag)
    if prefix != "O" and prefix not in PREFIXES[scheme]:
        raise DataError(f"tag {tag!r} is not a {scheme} tag")


def decode(tags: Sequence[str]) -> list[Span]:
    """Spans ``(token_start, token_end, label)`` of a tag sequence (lenient, see module doc).

    Raises :class:`DataError` only for a malformed tag string (see :func:`split_tag`).
    """
    spans: list[Span] = []
    start = -1          # start of the open entity, -1 when none is open
    label = ""
    for i, tag in enumerate(tags):
        prefix, typ = split_tag(tag)
        if prefix == "O":
            if start >= 0:
                spans.append((start, i - 1, label))
                start = -1
            continue
        continues = start >= 0 and typ == label and prefix in "IEL"
        if not continues and start >= 0:
            spans.append((start, i - 1, label))
            start = -1
        if start < 0:
            start, label = i, typ
        if prefix in "ELSU":  # closes the entity at this token
            spans.append((start, i, label))
            start = -1
    if start >= 0:
        spans.append((start, len(tags) - 1, label))
    return spans


def encode(spans: Iterable[Sequence], length: int, scheme: str = "BIO2") -> list[str]:
    """Tags for ``length`` tokens from ``spans`` (``(token_start, token_end, label)``, end
    inclusive, or span dicts with ``token_start``/``token_end``/``label``).

    Raises :class:`DataError` when spans overlap or are out of range (a tag sequence
    cannot express overlapping spans).
    """
    scheme = canonical_scheme(scheme)
    items = sorted(_as_tuple(s) for s in spans)
    tags = ["O"] * length
    prev_end, prev_label = -2, None
    for start, end, label in items:
        if not (0 <= start <= end < length):
            raise DataError(f"span tokens {start}..{end} are out of range ({length} tokens)")
        if start <= prev_end:
            raise DataError(f"overlapping spans at token {start} cannot be written as tags")
        if not label or label != label.strip():
            raise DataError(f"span label {label!r} cannot be written as a tag")
        if scheme == "BIO2":
            tags[start] = "B-" + label
            for i in range(start + 1, end + 1):
                tags[i] = "I-" + label
        elif scheme == "IOB1":
            begin = "B-" if prev_end == start - 1 and prev_label == label else "I-"
            tags[start] = begin + label
            for i in range(start + 1, end + 1):
                tags[i] = "I-" + label
        else:
            single, last = ("S-", "E-") if scheme == "IOBES" else ("U-", "L-")
            if start == end:
                tags[start] = single + label
            else:
                tags[start] = "B-" + label
                for i in range(start + 1, end):
                    tags[i] = "I-" + label
                tags[end] = last + label
        prev_end, prev_label = end, label
    return tags


def _as_tuple(span) -> Span:
    if isinstance(span, dict):
        return span["token_start"], span["token_end"], span["label"]
    start, end, label = span
    return start, end, label


class SchemeDetector:
    """Guess the tagging scheme from sample tag sequences (:meth:`add` each sentence).

    * any ``E-``/``S-`` tag: IOBES; any ``L-``/``U-`` tag: BILOU (both: an error);
    * otherwise BIO2 vs IOB1 by how entities start: BIO2 starts every entity with ``B-``;
      IOB1 starts an entity with ``I-`` and uses ``B-`` only right after an entity of
      the same type. The majority of the entity starts seen decides; no evidence at all
      (only ``O`` tags) gives BIO2.
    """

    def __init__(self) -> None:
        self.prefixes: set[str] = set()
        self.b_starts = 0   # B-X after O / sentence start / another type: BIO2 evidence
        self.i_starts = 0   # I-X after O / sentence start / another type: IOB1 evidence

    def add(self, tags: Sequence[str]) -> None:
        prev_prefix, prev_type = "O", ""
        for tag in tags:
            prefix, typ = split_tag(tag)
            self.prefixes.add(prefix)
            starts_fresh = prev_prefix == "O" or prev_type != typ
            if prefix == "B" and starts_fresh:
                self.b_starts += 1
            elif prefix == "I" and starts_fresh:
                self.i_starts += 1
            prev_prefix, prev_type = prefix, typ

    @property
    def evidence(self) -> int:
        """How many decisive observations were made so far."""
        return self.b_starts + self.i_starts + len(self.prefixes & set("ESLU"))

    def scheme(self) -> str:
        es = self.prefixes & {"E", "S"}
        lu = self.prefixes & {"L", "U"}
        if es and lu:
            raise DataError("tags mix IOBES (E-/S-) and BILOU (L-/U-) prefixes; give --scheme")
        if es:
            return "IOBES"
        if lu:
            return "BILOU"
        if self.i_starts > self.b_starts:
            return "IOB1"
        return "BIO2"


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """The scheme (one of :data:`SCHEMES`) of a corpus of tag sequences; see :class:`SchemeDetector`."""
    det = SchemeDetector()
    for tags in tag_sequences:
        det.add(tags)
    return det.scheme()
