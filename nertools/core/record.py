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

import orjson

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
        append = tokens.append
        prev_end = 0
        for i, t in enumerate(raw_tokens):
            if type(t) is not dict:
                if not isinstance(t, dict):
                    raise DataError(f"token {i} is not an object")
            s, e, tt = t.get("start"), t.get("end"), t.get("text")
            if type(s) is not int or type(e) is not int:  # bool is not an offset
                if not (_is_int(s) and _is_int(e)):
                    raise DataError(f"token {i} has no integer 'start'/'end'")
            if not (prev_end <= s < e <= n):
                raise DataError(f"token {i} offsets [{s}, {e}) are out of order or out of range "
                                f"(text length {n})")
            seg = text[s:e]
            if tt is None:
                tt = seg
            elif seg != tt:
                raise DataError(f"token {i} {tt!r} does not match text[{s}:{e}] = {seg!r}")
            tid = t.get("id")
            if type(tid) is int and tid == i and "ws" in t and t["text"] is tt:
                append(t)  # already canonical: reused as it is (the common case, and fast)
            else:
                tok = dict(t)
                tok["text"], tok["start"], tok["end"], tok["id"] = tt, s, e, i
                if "ws" not in tok:
                    tok["ws"] = e < n and text[e].isspace()
                append(tok)
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
    * the compact form (``toks``, ``ws``, spans as ``[token_start, token_end, label]``; see
      :data:`COMPACT_DOC` and :func:`to_compact`), recognised by its ``toks`` field;
    * ``{"text"}`` alone: tokenised by ``tokenizer`` (:func:`default_tokenize`);
    * ``{"tokens": ["EU", ...]}``: token strings; ``text`` is the tokens joined by single
      spaces, or, when given, the tokens are located in ``text`` in order;
    * spans by character offsets (``start``/``end``, end-exclusive) or by token indices
      (``token_start``/``token_end``, inclusive), or both when they agree.

    Raises :class:`DataError` (without file and line: the reader adds them).
    A missing ``id`` becomes ``default_id``; a missing ``meta`` becomes ``{}``. Token objects
    of the input that are already canonical are reused in the output, not copied.
    """
    if type(obj) is not dict and not isinstance(obj, dict):
        raise DataError(f"a record must be a JSON object, got {type(obj).__name__}")
    if "toks" in obj:
        return _normalize_compact(obj, labels, default_id)
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
    if raw_spans:
        label_set = frozenset(labels) if labels is not None else None
        starts = [t["start"] for t in tokens]
        ends = [t["end"] for t in tokens]
        spans = [_normalize_span(i, s, text, tokens, starts, ends, label_set)
                 for i, s in enumerate(raw_spans)]
    else:
        spans = []
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


# --------------------------------------------------------------------------- the compact form

#: The compact record form, as documented in nertools-format(5), COMPACT.
COMPACT_DOC = """\
{"id": "s1", "toks": ["EU", "rejects", "German", "call"], "ws": "1110",
 "spans": [[0, 0, "ORG"], [2, 2, "MISC", {"score": 0.93, "source": "ner-tag"}]],
 "meta": {}}"""

#: Fields of a compact record that the canonical form spells differently.
COMPACT_FIELDS = frozenset({"toks", "ws", "offs"})
_WS_TABLE = bytes.maketrans(b"\x00\x01", b"01")
_CANON_TOKEN_KEYS = ("text", "start", "end", "id", "ws")
_SPAN_KEYS = frozenset({"start", "end", "token_start", "token_end", "label"})
_CAND_KEYS = frozenset({"start", "end", "token_start", "token_end", "text"})


def is_compact(obj: Any) -> bool:
    """Whether ``obj`` is a record in the compact form (it has a ``toks`` field)."""
    return type(obj) is dict and "toks" in obj


def compact_flags(ws: Any, n: int, text: str | None = None) -> list[bool] | None:
    """The whitespace flags of a compact record with ``n`` tokens: ``ws`` as a string of
    ``0``/``1`` (one per token), a list of booleans or 0/1, or ``None`` (absent: returns
    ``None``, the default). A wrong length or value is a :class:`DataError`."""
    if ws is None:
        return None
    if type(ws) is str:
        if len(ws) != n:
            raise DataError(f"'ws' has {len(ws)} flags for {n} tokens")
        if ws.strip("01"):
            raise DataError("'ws' must hold only the characters 0 and 1")
        return list(map("1".__eq__, ws))
    if type(ws) is list:
        if len(ws) != n:
            raise DataError(f"'ws' has {len(ws)} flags for {n} tokens")
        if not all(w is True or w is False or (type(w) is int and 0 <= w <= 1) for w in ws):
            raise DataError("'ws' must be a string of 0/1 or a list of booleans or 0/1")
        return [bool(w) for w in ws]
    raise DataError("'ws' must be a string of 0/1 or a list of booleans or 0/1")


def _tokens_from_flags(toks: list[str], flags: list[bool] | None) -> tuple[str, list[dict]]:
    """Text and canonical tokens of a compact record without ``text``: each token, then one
    space where its flag is set (``flags`` ``None``: between tokens, not after the last)."""
    n = len(toks)
    if flags is None:
        flags = [True] * n
        if n:
            flags[-1] = False
        text = " ".join(toks)
    elif n and not flags[-1] and all(flags[:-1]):
        text = " ".join(toks)
    else:
        text = "".join([t + " " if w else t for t, w in zip(toks, flags)])
    tokens: list[dict] = []
    append = tokens.append
    pos = 0
    i = 0
    for t, w in zip(toks, flags):
        e = pos + len(t)
        append({"text": t, "start": pos, "end": e, "id": i, "ws": w})
        pos = e + w
        i += 1
    return text, tokens


def _compact_tokens(obj: dict) -> tuple[str, list[dict]]:
    toks = obj["toks"]
    if type(toks) is not list:
        raise DataError("'toks' must be a list of strings")
    n = len(toks)
    if n and set(map(type, toks)) != _STR_ONLY:
        i = next(i for i, t in enumerate(toks) if type(t) is not str)
        raise DataError(f"token {i} of 'toks' is not a string")
    if "" in toks:
        raise DataError(f"token {toks.index('')} of 'toks' is empty")
    text = obj.get("text")
    flags = compact_flags(obj.get("ws"), n)
    offs = obj.get("offs")
    if text is None:
        if offs is not None:
            raise DataError("'offs' needs 'text'")
        return _tokens_from_flags(toks, flags)
    if type(text) is not str:
        raise DataError("'text' is not a string")
    nchar = len(text)
    if offs is None:  # tokens in order, whitespace between them skipped
        starts = []
        pos = 0
        for i, t in enumerate(toks):
            while pos < nchar and text[pos].isspace():
                pos += 1
            if not text.startswith(t, pos):
                raise DataError(f"token {i} {t!r} does not occur at offset {pos} of 'text'")
            starts.append(pos)
            pos += len(t)
    else:
        if type(offs) is not list or len(offs) != n:
            raise DataError(f"'offs' must be a list of {n} token start offsets")
        starts = offs
        prev = 0
        for i, (s, t) in enumerate(zip(offs, toks)):
            if type(s) is not int or not prev <= s <= nchar - len(t):
                raise DataError(f"token {i} offset {s!r} is not an integer in order and in "
                                f"range (text length {nchar})")
            if not text.startswith(t, s):
                raise DataError(f"token {i} {t!r} does not match text[{s}:{s + len(t)}] = "
                                f"{text[s:s + len(t)]!r}")
            prev = s + len(t)
    if flags is None:
        flags = [s + len(t) < nchar and text[s + len(t)].isspace() for s, t in zip(starts, toks)]
    tokens = [{"text": t, "start": s, "end": s + len(t), "id": i, "ws": w}
              for i, (s, t, w) in enumerate(zip(starts, toks, flags))]
    return text, tokens


def _compact_span(i: int, span: Any, tokens: list[dict], labels: frozenset[str] | None) -> dict:
    """A span of a compact record, ``[token_start, token_end, label]`` with an optional object
    of other keys as a fourth item, as a canonical span."""
    k = len(span)
    if k != 3 and k != 4:
        raise DataError(f"span {i} must be [token_start, token_end, label] or "
                        f"[token_start, token_end, label, {{...}}]")
    ts, te, label = span[0], span[1], span[2]
    if type(ts) is not int or type(te) is not int:
        raise DataError(f"span {i} token_start/token_end must be integers")
    ntok = len(tokens)
    if not 0 <= ts <= te < ntok:
        raise DataError(f"span {i} tokens {ts}..{te} are out of range ({ntok} tokens; "
                        f"token_end is inclusive)")
    if type(label) is not str or not label.strip():
        raise DataError(f"span {i} has an empty or missing label")
    if labels is not None and label not in labels:
        raise DataError(f"span {i} has unknown label {label!r} (known: {', '.join(sorted(labels))})")
    out = {"start": tokens[ts]["start"], "end": tokens[te]["end"], "token_start": ts,
           "token_end": te, "label": label}
    if k == 4:
        extra = span[3]
        if type(extra) is not dict:
            raise DataError(f"span {i}: the fourth item must be an object of other keys")
        if not _SPAN_KEYS.isdisjoint(extra):
            raise DataError(f"span {i}: the fourth item repeats a position or the label")
        out.update(extra)
    return out


def _compact_candidates(cands: Any, text: str, tokens: list[dict]) -> Any:
    """``candidates`` of a compact record: ``[token_start, token_end]`` (with an optional
    object of other keys, e.g. scores) as canonical candidate objects; objects pass as they are."""
    if type(cands) is not list:
        return cands
    out = []
    ntok = len(tokens)
    for i, c in enumerate(cands):
        if type(c) is not list:
            out.append(c)
            continue
        k = len(c)
        if k not in (2, 3) or type(c[0]) is not int or type(c[1]) is not int:
            raise DataError(f"candidate {i} must be [token_start, token_end] or "
                            f"[token_start, token_end, {{...}}]")
        ts, te = c[0], c[1]
        if not 0 <= ts <= te < ntok:
            raise DataError(f"candidate {i} tokens {ts}..{te} are out of range ({ntok} tokens; "
                            f"token_end is inclusive)")
        s, e = tokens[ts]["start"], tokens[te]["end"]
        d = {"start": s, "end": e, "token_start": ts, "token_end": te, "text": text[s:e]}
        if k == 3:
            if type(c[2]) is not dict or not _CAND_KEYS.isdisjoint(c[2]):
                raise DataError(f"candidate {i}: the third item must be an object of other keys")
            d.update(c[2])
        out.append(d)
    return out


def _normalize_compact(obj: dict, labels: Iterable[str] | None, default_id: str | None) -> dict:
    if "tokens" in obj:
        raise DataError("a record has either 'toks' (compact form) or 'tokens', not both")
    text, tokens = _compact_tokens(obj)
    raw_spans = obj.get("spans")
    if raw_spans is None:
        raw_spans = []
    elif type(raw_spans) is not list:
        raise DataError("'spans' must be a list")
    spans = []
    if raw_spans:
        label_set = frozenset(labels) if labels is not None else None
        starts = ends = None
        for i, sp in enumerate(raw_spans):
            if type(sp) is list:
                spans.append(_compact_span(i, sp, tokens, label_set))
            else:
                if starts is None:
                    starts = [t["start"] for t in tokens]
                    ends = [t["end"] for t in tokens]
                spans.append(_normalize_span(i, sp, text, tokens, starts, ends, label_set))
    meta = obj.get("meta")
    if meta is None:
        meta = {}
    elif not isinstance(meta, dict):
        raise DataError("'meta' must be an object")
    out = {"id": obj.get("id", default_id), "text": text, "tokens": tokens, "spans": spans,
           "meta": meta}
    for k, v in obj.items():
        if k not in out and k not in COMPACT_FIELDS:
            out[k] = _compact_candidates(v, text, tokens) if k == "candidates" else v
    return out


def to_compact(record: Any) -> Any:
    """``record`` (canonical) in the compact form, losslessly: :func:`normalize_record` of the
    result equals ``normalize_record(record)``.

    ``text`` is left out when the tokens and their ``ws`` flags rebuild it (each token followed
    by one space where its flag is 1); otherwise it is kept, with ``offs`` (token start
    offsets). Spans and candidates become ``[token_start, token_end, (label,) {other keys}]``;
    one whose offsets do not sit on its tokens stays an object. Anything that is not a
    canonical record (no token objects, tokens with keys other than text/start/end/id/ws or
    a ``ws`` that is not a boolean, an object already compact) is returned as it is, so
    writing it compact is always safe.
    """
    if type(record) is not dict:
        return record
    tokens = record.get("tokens")
    text = record.get("text")
    if type(tokens) is not list or type(text) is not str or "toks" in record:
        return record
    try:
        toks = [t["text"] for t in tokens]
        flags = [t["ws"] for t in tokens]
    except (TypeError, KeyError):
        return record
    if tokens and (set(map(type, flags)) != _BOOL_ONLY or set(map(type, toks)) != _STR_ONLY
                   or "" in toks):
        return record
    # lossless by construction: the reader's own rebuilding must give back these very tokens
    # (compared as JSON, so key order and types count too)
    try:
        want = orjson.dumps(tokens)
        text2, tokens2 = _tokens_from_flags(toks, flags)
        rebuilt = text2 == text and orjson.dumps(tokens2) == want
        starts = None
        if not rebuilt:
            starts = [t["start"] for t in tokens]
            text2, tokens2 = _compact_tokens({"toks": toks, "text": text, "offs": starts, "ws": flags})
            if orjson.dumps(tokens2) != want:
                return record
    except (TypeError, KeyError, DataError, orjson.JSONEncodeError):
        return record
    out: dict = {}
    for k, v in record.items():
        if k == "text":
            if not rebuilt:
                out["text"] = text
        elif k == "tokens":
            out["toks"] = toks
            out["ws"] = bytes(flags).translate(_WS_TABLE).decode("ascii")
            if not rebuilt:
                out["offs"] = starts
        elif k == "spans" and type(v) is list:
            out["spans"] = [_span_to_compact(s, tokens) for s in v]
        elif k == "candidates" and type(v) is list:
            out["candidates"] = [_candidate_to_compact(c, tokens, text) for c in v]
        else:
            out[k] = v
    return out


def _span_to_compact(span: Any, tokens: list[dict]) -> Any:
    try:
        ts, te, label = span["token_start"], span["token_end"], span["label"]
        s, e = span["start"], span["end"]
        if (type(ts) is not int or type(te) is not int or not 0 <= ts <= te < len(tokens)
                or type(s) is not int or type(e) is not int
                or s != tokens[ts]["start"] or e != tokens[te]["end"] or type(label) is not str):
            return span
    except (TypeError, KeyError):
        return span
    if len(span) == 5:
        return [ts, te, label]
    return [ts, te, label, {k: v for k, v in span.items() if k not in _SPAN_KEYS}]


def _candidate_to_compact(cand: Any, tokens: list[dict], text: str) -> Any:
    try:
        ts, te = cand["token_start"], cand["token_end"]
        if (type(ts) is not int or type(te) is not int or not 0 <= ts <= te < len(tokens)):
            return cand
        s, e = cand["start"], cand["end"]
        if (type(s) is not int or type(e) is not int or s != tokens[ts]["start"]
                or e != tokens[te]["end"] or cand["text"] != text[s:e]):
            return cand
    except (TypeError, KeyError):
        return cand
    if len(cand) == 5:
        return [ts, te]
    return [ts, te, {k: v for k, v in cand.items() if k not in _CAND_KEYS}]


_STR_ONLY = frozenset({str})
_BOOL_ONLY = frozenset({bool})


def sort_spans(spans: list[dict]) -> list[dict]:
    return sorted(spans, key=lambda s: (s["start"], s["end"], s["label"]))
