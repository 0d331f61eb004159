"""Candidate spans for X-NER span mining (``ner-spans``).

The default rules are exactly those of the official X-NER code (``mining.py::fastndd_search``):

* word n-grams of length ``max_length`` (3), then shorter ones down to 1, left to right;
* when the last word of the sentence is exactly ``"."``, no span includes it;
* a span is dropped when any of its words, lower-cased, is a stop word (the 179-word NLTK
  English list shipped as ``nertools/data/english_stopwords.txt``) or one of the punctuation
  words in :data:`PUNCTUATION`;
* a span is dropped when any digit character occurs in it.

A "word" is a token of the canonical record. Overlapping candidates are all kept; the
order is the official one (longest first, then left to right).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Iterable, Iterator

from nertools.core.jsonl import ErrorPolicy, read_converted
from nertools.core.record import normalize_record
from nertools.errors import DataError

#: Punctuation words the official code adds to the stop list.
PUNCTUATION = (".", ",", "?", "!", "'", '"', "(", ")", "-", "--", "_", "[", "]", "{", "}", "#", "@", "*")

DIGITS = frozenset("0123456789")


def load_stopwords(path: str | None = None) -> frozenset[str]:
    """The stop-word list: ``path`` (one word per line, ``#`` comments) or the shipped NLTK list."""
    if path is None:
        text = resources.files("nertools").joinpath("data/english_stopwords.txt").read_text("utf-8")
    else:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as e:
            raise DataError(f"cannot read stop-word file: {e.strerror or e}", path=path) from None
    return frozenset(w.strip().lower() for w in text.splitlines()
                     if w.strip() and not w.lstrip().startswith("#"))


@dataclass
class SpanRules:
    """The rules that decide which word n-grams are candidates.

    ``max_tokens``: sentences with more words get no candidates at all (the paper's
    sentence-length cap, App. C: 30 for CoNLL); ``None`` means no cap.
    """

    max_length: int = 3
    stopwords: frozenset[str] = field(default_factory=load_stopwords)
    punctuation: frozenset[str] = frozenset(PUNCTUATION)
    allow_digits: bool = False
    final_period: bool = True  # a sentence-final "." is never inside a span
    max_tokens: int | None = None

    def __post_init__(self):
        if self.max_length < 1:
            raise ValueError("max_length must be at least 1")
        self._blocked = frozenset(self.stopwords) | frozenset(self.punctuation)

    def word_ok(self, word: str) -> bool:
        if word.lower() in self._blocked:
            return False
        return self.allow_digits or not any(c in DIGITS for c in word)

    def too_long(self, n_words: int) -> bool:
        return self.max_tokens is not None and n_words > self.max_tokens

    def candidate_ranges(self, words: list[str]) -> list[tuple[int, int]]:
        """``(start, end)`` word ranges (end exclusive) of every candidate, official order."""
        n = len(words)
        if n == 0 or self.too_long(n):
            return []
        ok = [self.word_ok(w) for w in words]
        usable = n - 1 if self.final_period and words[-1] == "." else n
        out = []
        for length in range(min(self.max_length, n), 0, -1):
            for start in range(0, usable - length + 1):
                if all(ok[start:start + length]):
                    out.append((start, start + length))
        return out


def candidates_for_record(record: dict, rules: SpanRules) -> list[dict]:
    """Candidate dicts ``{"start","end","token_start","token_end","text"}`` for a canonical record."""
    tokens = record["tokens"]
    words = [t["text"] for t in tokens]
    text = record["text"]
    out = []
    for a, b in rules.candidate_ranges(words):
        s, e = tokens[a]["start"], tokens[b - 1]["end"]
        out.append({"start": s, "end": e, "token_start": a, "token_end": b - 1, "text": text[s:e]})
    return out


@dataclass
class SpanStats:
    records: int = 0
    candidates: int = 0
    capped: int = 0  # sentences over the length cap (passed through with no candidates)


def add_candidates(records: Iterable[dict], rules: SpanRules, stats: SpanStats | None = None) -> Iterator[dict]:
    """Yield each record with ``"candidates"`` set (replacing any earlier candidates)."""
    stats = stats if stats is not None else SpanStats()
    for rec in records:
        cands = candidates_for_record(rec, rules)
        stats.records += 1
        stats.candidates += len(cands)
        if rules.too_long(len(rec["tokens"])):
            stats.capped += 1
        rec["candidates"] = cands
        yield rec


def check_candidates(rec: dict, *, required: bool = True) -> None:
    """A canonical record's ``candidates`` must be a list of objects with integer
    ``start``/``end``/``token_start``/``token_end`` inside the record that agree with its
    tokens (what ``ner-spans`` writes). Raises :class:`DataError` naming the record id and
    the candidate; the reader adds file and line. ``required=False`` lets a record without
    ``candidates`` through."""
    cands = rec.get("candidates")
    rid = rec.get("id")
    if cands is None:
        if not required:
            return
        raise DataError(f"record {rid!r} has no 'candidates'; run ner-spans first "
                        "(ner-spans corpus.jsonl | ner-divscore ...)")
    if not isinstance(cands, list):
        raise DataError(f"record {rid!r}: 'candidates' must be a list, not {type(cands).__name__}")
    tokens = rec["tokens"]
    ntok, nchar = len(tokens), len(rec["text"])
    for i, c in enumerate(cands):
        if type(c) is not dict:
            raise DataError(f"record {rid!r}: candidate {i} is not an object")
        s, e, ts, te = c.get("start"), c.get("end"), c.get("token_start"), c.get("token_end")
        if not (type(s) is int and type(e) is int and type(ts) is int and type(te) is int):  # not bool
            bad = [k for k in ("start", "end", "token_start", "token_end") if type(c.get(k)) is not int]
            raise DataError(f"record {rid!r}: candidate {i} needs integer start/end/token_start/token_end "
                            f"({', '.join(bad)} missing or not an integer)")
        if not (0 <= s < e <= nchar):
            raise DataError(f"record {rid!r}: candidate {i} [{s}, {e}) is out of range "
                            f"(text length {nchar})")
        if not (0 <= ts <= te < ntok):
            raise DataError(f"record {rid!r}: candidate {i} tokens {ts}..{te} are out of range "
                            f"({ntok} tokens; token_end is inclusive)")
        if tokens[ts]["start"] != s or tokens[te]["end"] != e:
            raise DataError(f"record {rid!r}: candidate {i} character and token offsets disagree")


def _record_with_candidates(obj, lineno: int) -> dict:
    rec = normalize_record(obj, default_id=str(lineno))
    check_candidates(rec)
    return rec


def read_candidates(path: str, policy: ErrorPolicy | None = None) -> Iterator[dict]:
    """The records of ``path`` (``-`` = stdin) with their ``candidates`` checked
    (:func:`check_candidates`), as ``ner-divscore`` reads them: a bad record is a
    :class:`DataError` naming file and line, or is skipped, per ``policy``."""
    return read_converted(path, _record_with_candidates, policy=policy)
