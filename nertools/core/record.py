"""The nertools record: one sentence or document with tokens and labelled spans.

Canonical (output) form, Prodigy-compatible::

    {"id": "s1", "text": "EU rejects German call",
     "tokens": [{"text": "EU", "start": 0, "end": 2, "id": 0, "ws": true}, ...],
     "spans": [{"start": 0, "end": 2, "token_start": 0, "token_end": 0, "label": "ORG"}],
     "meta": {}}

Character offsets are end-exclusive, token indices inclusive. Any other field of a
record, and any other key of a span, is passed through untouched.

Accepted (input) forms are looser, see :func:`normalize_record`.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from typing import Any, Callable, Iterable, Sequence

from nertools.errors import DataError

def _combining_marks() -> str:
    """The code points of Unicode category M (combining marks: accents, vowel signs, ...) as
    the body of a regex character class. Marks live in planes 0, 1 and 14 only."""
    ranges: list[list[int]] = []
    for plane in (range(0x20000), range(0xE0000, 0xE1000)):
        for cp in plane:
            if unicodedata.category(chr(cp))[0] == "M":
                if ranges and ranges[-1][1] == cp - 1:
                    ranges[-1][1] = cp
                else:
                    ranges.append([cp, cp])
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


_MARKS = _combining_marks()
_WORD = rf"\w+(?:[{_MARKS}]+\w*)*"

#: The default tokenizer, used for records that carry only ``text``, as documented
#: (``\p{M}`` = a combining mark, Unicode category M): a token is a run of word characters
#: (letters, digits, underscore) and the combining marks that follow them, which may contain
#: inner apostrophes or hyphens ("don't", "Jean-Luc"), or any single other non-space character
#: with its combining marks. Marks never split a word, so decomposed (NFD) text such as
#: "Jose" + U+0301 is one token "José", as its composed (NFC) form is.
DEFAULT_TOKEN_SYNTAX = r"\w[\w\p{M}]*(?:['\u2019\-]\w[\w\p{M}]*)*|[^\w\s]\p{M}*"
#: :data:`DEFAULT_TOKEN_SYNTAX` compiled (``\p{M}`` spelled out as a character class).
DEFAULT_TOKEN_PATTERN = re.compile(rf"{_WORD}(?:['\u2019\-]{_WORD})*|[^\w\s][{_MARKS}]*")
#: The same tokenizer for ASCII text, which has no combining marks (a faster expression).
ASCII_TOKEN_PATTERN = re.compile(r"\w+(?:['\-]\w+)*|[^\w\s]")


def token_pattern(text: str) -> re.Pattern:
    """The compiled default tokenizer for ``text`` (:data:`DEFAULT_TOKEN_PATTERN`, or its ASCII
    equivalent :data:`ASCII_TOKEN_PATTERN` when ``text`` is ASCII)."""
    return ASCII_TOKEN_PATTERN if text.isascii() else DEFAULT_TOKEN_PATTERN


def whitespace_tokenize(text: str) -> list[tuple[int, int]]:
    """Split ``text`` on whitespace only; return ``(start, end)`` character offsets."""
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def default_tokenize(text: str) -> list[tuple[int, int]]:
    """The documented default tokenizer (:data:`DEFAULT_TOKEN_SYNTAX`); ``(start, end)`` offsets."""
    return [(m.start(), m.end()) for m in token_pattern(text).finditer(text)]


def make_tokens(text: str, offsets: Sequence[tuple[int, int]]) -> list[dict]:
    """Canonical token dicts for character ``offsets`` into ``text``."""
    tokens = []
    n = len(text)
    for i, (s, e) in enumerate(offsets):
        tokens.append({"text": text[s:e], "start": s, "end": e, "id": i,
                       "ws": e < n and text[e].isspace()})
    return tokens


def tokens_from_words(words: Sequence[str]) -> tuple[str, list[dict]]:
    """Text (words joined by single spaces) and canonical tokens for a list of words."""
    offsets = []
    pos = 0
    for w in words:
        offsets.append((pos, pos + len(w)))
        pos += len(w) + 1
    text = " ".join(words)
    return text, make_tokens(text, offsets)


def make_span(tokens: Sequence[dict], token_start: int, token_end: int, label: str, **extra: Any) -> dict:
    """A canonical span over tokens ``token_start..token_end`` (inclusive)."""
    span = {"start": tokens[token_start]["start"], "end": tokens[token_end]["end"],
            "token_start": token_start, "token_end": token_end, "label": label}
    span.update(extra)
    return span


def span_text(record: dict, span: dict) -> str:
    return record["text"][span["start"]:span["end"]]


def words(record: dict) -> list[str]:
    """The token strings of a canonical record."""
    return [t["text"] for t in record["tokens"]]


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _align_words(text: str, words_: Sequence[str]) -> list[tuple[int, int]]:
    """Find each word of ``words_`` in ``text`` in order, skipping whitespace between them."""
    offsets = []
    pos = 0
    n = len(text)
    for i, w in enumerate(words_):
        while pos < n and text[pos].isspace():
            pos += 1
        if not w or text.startswith(w, pos) is False:
            raise DataError(f"token {i} {w!r} does not occur at offset {pos} of 'text'")
        offsets.append((pos, pos + len(w)))
        pos += len(w)
    return offsets


def _normalize_tokens(text: str | None, raw_tokens: list) -> tuple[str, list[dict]]:
    if not raw_tokens:
        if text is None:
            raise DataError("'tokens' is empty and there is no 'text'")
        return text, []
    first = raw_tokens[0]
    if isinstance(first, str):
        if not all(isinstance(t, str) for t in raw_tokens):
            raise DataError("'tokens' mixes strings and other values")
        if text is None:
            return tokens_from_words(raw_tokens)
        if not isinstance(text, str):
            raise DataError("'text' is not a string")
        return text, make_tokens(text, _align_words(text, raw_tokens))
    if isinstance(first, dict):
        if text is None:
            # token dicts without text: rebuild text from the token strings and ws flags
            parts = []
            pos = 0
            offsets = []
            for i, t in enumerate(raw_tokens):
                if not isinstance(t, dict) or not isinstance(t.get("text"), str):
                    raise DataError(f"token {i} has no 'text' string")
                offsets.append((pos, pos + len(t["text"])))
                parts.append(t["text"])
                pos += len(t["text"])
                if t.get("ws", True) and i + 1 < len(raw_tokens):
                    parts.append(" ")
                    pos += 1
            text = "".join(parts)
            return text, make_tokens(text, offsets)
        if not isinstance(text, str):
            raise DataError("'text' is not a string")
        n = len(text)
        tokens = []
        prev_end = 0
        for i, t in enumerate(raw_tokens):
            if not isinstance(t, dict):
                raise DataError(f"token {i} is not an object")
            s, e, tt = t.get("start"), t.get("end"), t.get("text")
            if not (_is_int(s) and _is_int(e)):
                raise DataError(f"token {i} has no integer 'start'/'end'")
            if not (prev_end <= s < e <= n):
                raise DataError(f"token {i} offsets [{s}, {e}) are out of order or out of range "
                                f"(text length {n})")
            if tt is None:
                tt = text[s:e]
            elif text[s:e] != tt:
                raise DataError(f"token {i} {tt!r} does not match text[{s}:{e}] = {text[s:e]!r}")
            tok = dict(t)
            tok["text"], tok["start"], tok["end"], tok["id"] = tt, s, e, i
            if "ws" not in tok:
                tok["ws"] = e < n and text[e].isspace()
            tokens.append(tok)
            prev_end = e
        return text, tokens
    raise DataError("'tokens' must be a list of strings or of token objects")


def _normalize_span(i: int, span: Any, text: str, tokens: list[dict], starts: list[int],
                    ends: list[int], labels: frozenset[str] | None) -> dict:
    if not isinstance(span, dict):
        raise DataError(f"span {i} is not an object")
    label = span.get("label")
    if not isinstance(label, str) or not label.strip():
        raise DataError(f"span {i} has an empty or missing 'label'")
    if labels is not None and label not in labels:
        raise DataError(f"span {i} has unknown label {label!r} (known: {', '.join(sorted(labels))})")
    s, e = span.get("start"), span.get("end")
    ts, te = span.get("token_start"), span.get("token_end")
    ntok = len(tokens)
    out = dict(span)
    if s is not None or e is not None:
        if not (_is_int(s) and _is_int(e)):
            raise DataError(f"span {i} 'start'/'end' must be integers")
        if not (0 <= s < e <= len(text)):
            raise DataError(f"span {i} [{s}, {e}) is out of range or empty (text length {len(text)})")
        a = bisect_left(starts, s)
        b = bisect_left(ends, e)
        if a >= ntok or starts[a] != s or b >= ntok or ends[b] != e:
            raise DataError(f"span {i} [{s}, {e}) {text[s:e]!r} is not on token boundaries")
        if ts is not None and ts != a or te is not None and te != b:
            raise DataError(f"span {i} token_start/token_end ({ts}, {te}) disagree with its "
                            f"character offsets (tokens {a}..{b})")
        if b < a:
            raise DataError(f"span {i} [{s}, {e}) covers no token")
        out["token_start"], out["token_end"] = a, b
    elif ts is not None or te is not None:
        if not (_is_int(ts) and _is_int(te)):
            raise DataError(f"span {i} 'token_start'/'token_end' must be integers")
        if not (0 <= ts <= te < ntok):
            raise DataError(f"span {i} tokens {ts}..{te} are out of range ({ntok} tokens; "
                            f"token_end is inclusive)")
        out["start"], out["end"] = tokens[ts]["start"], tokens[te]["end"]
    else:
        raise DataError(f"span {i} has neither character nor token offsets")
    # canonical key order first, then whatever else the span carries
    ordered = {"start": out.pop("start"), "end": out.pop("end"),
               "token_start": out.pop("token_start"), "token_end": out.pop("token_end"),
               "label": out.pop("label")}
    ordered.update(out)
    return ordered


def normalize_record(obj: Any, *, labels: Iterable[str] | None = None,
                     tokenizer: Callable[[str], list[tuple[int, int]]] = default_tokenize,
                     default_id: str | None = None) -> dict:
    """Validate an input record and return it in canonical form.

    Accepted inputs:

    * the canonical form (tokens as objects with character offsets);
    * ``{"text"}`` alone: tokenised by ``tokenizer`` (:func:`default_tokenize`);
    * ``{"tokens": ["EU", ...]}``: token strings; ``text`` is the tokens joined by single
      spaces, or, when given, the tokens are located in ``text`` in order;
    * spans by character offsets (``start``/``end``, end-exclusive) or by token indices
      (``token_start``/``token_end``, inclusive), or both when they agree.

    Raises :class:`DataError` (without file and line: the reader adds them).
    A missing ``id`` becomes ``default_id``; a missing ``meta`` becomes ``{}``.
    """
    if not isinstance(obj, dict):
        raise DataError(f"a record must be a JSON object, got {type(obj).__name__}")
    text = obj.get("text")
    if text is not None and not isinstance(text, str):
        raise DataError("'text' is not a string")
    raw_tokens = obj.get("tokens")
    if raw_tokens is None:
        if text is None:
            raise DataError("record has neither 'text' nor 'tokens'")
        tokens = make_tokens(text, tokenizer(text))
    elif not isinstance(raw_tokens, list):
        raise DataError("'tokens' must be a list")
    else:
        text, tokens = _normalize_tokens(text, raw_tokens)
    raw_spans = obj.get("spans")
    if raw_spans is None:
        raw_spans = []
    elif not isinstance(raw_spans, list):
        raise DataError("'spans' must be a list")
    label_set = frozenset(labels) if labels is not None else None
    starts = [t["start"] for t in tokens]
    ends = [t["end"] for t in tokens]
    spans = [_normalize_span(i, s, text, tokens, starts, ends, label_set)
             for i, s in enumerate(raw_spans)]
    meta = obj.get("meta")
    if meta is None:
        meta = {}
    elif not isinstance(meta, dict):
        raise DataError("'meta' must be an object")
    rid = obj.get("id", default_id)
    out = {"id": rid, "text": text, "tokens": tokens, "spans": spans, "meta": meta}
    for k, v in obj.items():
        if k not in out:
            out[k] = v
    return out


def sort_spans(spans: list[dict]) -> list[dict]:
    return sorted(spans, key=lambda s: (s["start"], s["end"], s["label"]))
