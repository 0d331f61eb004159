"""Convert NER corpora between nertools records and other formats, streaming.

Formats (:data:`FORMATS`):

``jsonl``
    canonical nertools records (nertools-format(5)); any accepted input form is read.
``prodigy``
    Prodigy's span format. Canonical records are Prodigy-compatible, so this is read and
    written exactly like ``jsonl`` (Prodigy's own fields such as ``answer`` pass through).
``conll``
    one token per line, columns separated by a tab or by spaces (detected from the first
    line), a blank line after each sentence. The token is column ``token_col`` (0), the tag
    column ``tag_col`` (-1, the last), so CoNLL-2003's four-column files work as they are.
    Tags in BIO2, IOB1, IOBES or BILOU (:mod:`nertools.tags`), detected from the first
    :data:`DETECT_WINDOW` sentences unless given. ``-DOCSTART-`` lines are kept in the
    next sentence's ``meta["docstart"]`` (and every sentence after the first one gets
    ``meta["doc"]``, its 0-based document number) so that they are written back.
    ``meta["conll"]`` records the scheme, separator and any other columns, so that
    conll -> jsonl -> conll reproduces a file byte for byte (for files in the canonical
    layout: one separator character, a blank line after every sentence, LF line ends).
``doccano``
    ``{"text", "label": [[start, end, "LABEL"], ...]}`` (character offsets, end
    exclusive); the older ``labels`` key and ``{"start_offset","end_offset","label"}``
    objects are read too. The text is tokenised by the default tokenizer, split further at
    span boundaries; whitespace at the edges of a span is trimmed.
``gliner``
    ``{"tokenized_text": [...], "ner": [[token_start, token_end, "LABEL"], ...]}``, token
    indices with the end INCLUSIVE.
``hf``
    ``{"tokens": [...], "ner_tags": [...]}`` (Hugging Face token classification): tags as
    strings, or integers with ``labels`` (the id -> tag list, e.g. ``O,B-PER,I-PER``).

Every reader yields canonical records one at a time; every writer turns one record into
one complete unit of output. Records without an id get ``id_prefix`` + the 0-based
sentence number (conll) or + the line number (JSON formats).
"""

from __future__ import annotations

import itertools
import os
import sys
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from nertools.errors import DataError
from nertools.jsonl import (ErrorPolicy, RecordWriter, display_name, dumps, open_binary_input, read_converted,
                            read_jsonl)
from nertools.record import default_tokenize, make_span, normalize_record, tokens_from_words
from nertools.tags import SchemeDetector, canonical_scheme, check_tag, decode, encode

FORMATS = ("conll", "jsonl", "prodigy", "doccano", "gliner", "hf")

#: Number of leading sentences (conll) or records (hf) the tagging scheme is detected from.
DETECT_WINDOW = 2000

DOCSTART = "-DOCSTART-"
SEPARATORS = {"tab": "\t", "space": " "}


# --------------------------------------------------------------------------- helpers

def _read_json_format(path, to_record: Callable[[Any, str], dict], policy: ErrorPolicy | None,
                      id_prefix: str, allow_empty: bool) -> Iterator[dict]:
    """Records from a JSONL file whose lines ``to_record(obj, default_id)`` converts."""
    return read_converted(path, lambda obj, lineno: to_record(obj, f"{id_prefix}{lineno}"),
                          policy=policy, allow_empty=allow_empty)


def _with_scheme(items: Iterator, tags_of: Callable[[Any], Sequence[str]], scheme: str,
                 window: int) -> tuple[str, Iterator]:
    """Resolve ``scheme`` ("auto" or a name). For "auto", buffer up to ``window`` items
    (errors, given as :class:`DataError` values, are buffered in order but not looked at),
    detect, and return the scheme with an iterator over all items."""
    if scheme.lower() != "auto":
        return canonical_scheme(scheme), items
    det = SchemeDetector()
    buffered = []
    for item in items:
        buffered.append(item)
        if not isinstance(item, DataError):
            try:
                det.add(tags_of(item))
            except DataError:
                pass  # reported with its line when the item is converted
        if len(buffered) >= window:
            break
    return det.scheme(), itertools.chain(buffered, items)


def _int_id(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# --------------------------------------------------------------------------- conll

@dataclass
class _Sentence:
    """One CoNLL sentence: the split fields of each token line, with line numbers."""
    lines: list[int]
    fields: list[list[str]]


@dataclass
class _DocStart:
    line: int
    text: str


class _ConllParser:
    """Split a CoNLL file into sentences and ``-DOCSTART-`` lines (streaming).

    The separator (a tab when the first non-blank line has one, else spaces) and the
    number of columns (of the first token line) hold for the whole file.
    """

    def __init__(self, path, token_col: int = 0, tag_col: int = -1):
        self.path = path
        self.name = display_name(path)
        self.token_col = token_col
        self.tag_col = tag_col
        self.sep: str | None = None
        self.ncols: int | None = None
        self.good_tags: set[str] = set()  # tags already checked against the scheme

    def split(self, line: str) -> list[str]:
        if self.sep is None:
            self.sep = "\t" if "\t" in line else " "
        if self.sep == "\t":
            return line.split("\t")
        return [f for f in line.split(" ") if f]

    def items(self) -> Iterator[_Sentence | _DocStart | DataError]:
        fh = open_binary_input(self.path)
        lines: list[int] = []
        fields: list[list[str]] = []
        bad: DataError | None = None
        try:
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    bad = bad or DataError("not UTF-8", path=self.name, line=lineno)
                    continue
                if line.endswith("\n"):
                    line = line[:-2] if line.endswith("\r\n") else line[:-1]
                if not line.strip():
                    if bad is not None:
                        yield bad
                    elif fields:
                        yield _Sentence(lines, fields)
                    lines, fields, bad = [], [], None
                    continue
                cols = self.split(line)
                if cols and cols[0] == DOCSTART:
                    yield _DocStart(lineno, line)
                    continue
                if bad is not None:
                    continue
                err = self._check(cols)
                if err:
                    bad = DataError(err, path=self.name, line=lineno)
                    continue
                lines.append(lineno)
                fields.append(cols)
        except OSError as e:
            if isinstance(e, BrokenPipeError):
                raise
            raise DataError(f"cannot read: {e}", path=self.name) from None
        finally:
            if fh is not sys.stdin.buffer:
                fh.close()
        if bad is not None:
            yield bad
        elif fields:
            yield _Sentence(lines, fields)

    def _check(self, cols: list[str]) -> str | None:
        if self.ncols is None:
            self.ncols = len(cols)
            for opt, col in (("--token-col", self.token_col), ("--tag-col", self.tag_col)):
                if not -len(cols) <= col < len(cols):
                    return f"{opt} {col} is out of range: the file has {len(cols)} column(s)"
            self.token_col %= len(cols)
            self.tag_col %= len(cols)
            if self.token_col == self.tag_col:
                return "--token-col and --tag-col name the same column"
        if len(cols) != self.ncols:
            return (f"expected {self.ncols} columns (as on the first line), found {len(cols)}")
        if not cols[self.token_col]:
            return "empty token"
        return None


def read_conll(path: str | os.PathLike = "-", *, scheme: str = "auto", token_col: int = 0,
               tag_col: int = -1, id_prefix: str = "", policy: ErrorPolicy | None = None,
               detect_window: int = DETECT_WINDOW, allow_empty: bool = False) -> Iterator[dict]:
    """Canonical records from a CoNLL file (see the module doc for the layout).

    A sentence with a wrong column count, an empty token or a tag that is not of the
    scheme raises :class:`DataError` naming file and line (or is skipped per ``policy``).
    """
    policy = policy or ErrorPolicy()
    parser = _ConllParser(path, token_col, tag_col)
    items = parser.items()

    def tags_of(item):
        return [f[parser.tag_col] for f in item.fields] if isinstance(item, _Sentence) else []

    hint = ""
    if scheme.lower() == "auto":
        hint = f" (scheme detected from the first {detect_window} sentences; give --scheme)"
    scheme, items = _with_scheme(items, tags_of, scheme, detect_window)
    doc = -1
    docstarts: list[str] = []
    count = 0
    for item in items:
        if isinstance(item, _DocStart):
            doc += 1
            docstarts.append(item.text)
            continue
        if isinstance(item, DataError):
            policy.handle(item)
            continue
        try:
            rec = _conll_record(item, parser, scheme, f"{id_prefix}{count}", hint)
        except DataError as e:
            policy.handle(e)
            continue
        if docstarts:
            rec["meta"]["docstart"] = docstarts
            docstarts = []
        if doc >= 0:
            rec["meta"]["doc"] = doc
        count += 1
        yield rec
    if count == 0 and not allow_empty:
        raise DataError("no sentences (empty input)", path=parser.name)


def _conll_record(sent: _Sentence, parser: _ConllParser, scheme: str, rid: str,
                  hint: str = "") -> dict:
    tc, gc = parser.token_col, parser.tag_col
    tags = [f[gc] for f in sent.fields]
    for lineno, tag in zip(sent.lines, tags):
        if tag in parser.good_tags:
            continue
        try:
            check_tag(tag, scheme)
        except DataError as e:
            wrong_scheme = e.message.endswith(f"is not a {scheme} tag")
            raise DataError(e.message + (hint if wrong_scheme else ""), path=parser.name,
                            line=lineno) from None
        parser.good_tags.add(tag)
    text, tokens = tokens_from_words([f[tc] for f in sent.fields])
    spans = [make_span(tokens, s, e, label) for s, e, label in decode(tags)]
    conll: dict[str, Any] = {"scheme": scheme, "sep": parser.sep}
    if parser.ncols != 2 or (tc, gc) != (0, 1):
        conll.update(ncols=parser.ncols, token_col=tc, tag_col=gc,
                     columns={str(k): [f[k] for f in sent.fields]
                              for k in range(parser.ncols) if k not in (tc, gc)})
    return {"id": rid, "text": text, "tokens": tokens, "spans": spans, "meta": {"conll": conll}}


def conll_block(rec: dict, *, scheme: str | None = None, sep: str | None = None) -> str:
    """One record as a CoNLL sentence block (with its ``-DOCSTART-`` lines and the blank line).

    ``scheme`` and ``sep`` default to what ``meta["conll"]`` recorded, else BIO2 and a tab.
    Columns other than token and tag are written back when ``meta["conll"]`` has them for
    every token. Raises :class:`DataError` for overlapping spans or a token or label that
    cannot be written (empty, or holding the separator or a line break).
    """
    meta = rec.get("meta") or {}
    cm = meta.get("conll") or {}
    scheme = canonical_scheme(scheme or cm.get("scheme") or "BIO2")
    sep = sep or cm.get("sep") or "\t"
    words = [t["text"] for t in rec["tokens"]]
    n = len(words)
    tags = encode(rec["spans"], n, scheme)
    ncols, tc, gc = cm.get("ncols", 2), cm.get("token_col", 0), cm.get("tag_col", 1)
    extra = {int(k): v for k, v in (cm.get("columns") or {}).items()}
    layout_ok = (isinstance(ncols, int) and {tc, gc} | set(extra) == set(range(ncols))
                 and len({tc, gc}) == 2 and all(len(v) == n for v in extra.values()))
    if not layout_ok:
        ncols, tc, gc, extra = 2, 0, 1, {}
    out = []
    docstart = meta.get("docstart") or []
    for line in [docstart] if isinstance(docstart, str) else docstart:
        out.append(f"{line}\n\n")
    if n == 0:
        return "".join(out)
    row = [""] * ncols
    for i in range(n):
        row[tc], row[gc] = words[i], tags[i]
        for k, v in extra.items():
            row[k] = v[i]
        for value in row:
            if not value or sep in value or "\n" in value or "\r" in value:
                raise DataError(f"token {i}: {value!r} cannot be written as a CoNLL field "
                                f"(empty, or holds the separator or a line break)")
        out.append(sep.join(row))
        out.append("\n")
    out.append("\n")
    return "".join(out)


# --------------------------------------------------------------------------- doccano

def _split_offsets(offsets: list[tuple[int, int]], cuts: list[int]) -> list[tuple[int, int]]:
    """Split token offsets at each character position in ``cuts`` (sorted)."""
    out = []
    for s, e in offsets:
        i = bisect_right(cuts, s)
        while i < len(cuts) and cuts[i] < e:
            out.append((s, cuts[i]))
            s = cuts[i]
            i += 1
        out.append((s, e))
    return out


def doccano_to_record(obj: Any, default_id: str | None = None) -> dict:
    """A canonical record from a doccano line (see the module doc)."""
    if not isinstance(obj, dict):
        raise DataError(f"a record must be a JSON object, got {type(obj).__name__}")
    text = obj.get("text")
    if not isinstance(text, str):
        raise DataError("doccano record has no 'text' string")
    key = next((k for k in ("label", "labels", "entities") if k in obj), None)
    raw = obj.get(key, []) if key else []
    if not isinstance(raw, list):
        raise DataError(f"'{key}' must be a list")
    spans = []
    for i, item in enumerate(raw):
        if isinstance(item, (list, tuple)) and len(item) == 3:
            s, e, label = item
        elif isinstance(item, dict):
            s, e, label = item.get("start_offset"), item.get("end_offset"), item.get("label")
        else:
            raise DataError(f"{key} {i} must be [start, end, label]")
        if not (_int_id(s) and _int_id(e)) or not 0 <= s < e <= len(text):
            raise DataError(f"{key} {i} [{s}, {e}) is out of range or empty "
                            f"(text length {len(text)})")
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s == e:
            raise DataError(f"{key} {i} covers only whitespace")
        spans.append({"start": s, "end": e, "label": label})
    cuts = sorted({x for sp in spans for x in (sp["start"], sp["end"])})
    rest = {k: v for k, v in obj.items() if k not in ("text", "label", "labels", "entities")}
    rest.update(text=text, spans=spans)
    return normalize_record(rest, default_id=default_id,
                            tokenizer=lambda t: _split_offsets(default_tokenize(t), cuts))


def record_to_doccano(rec: dict) -> dict:
    return {"id": rec.get("id"), "text": rec["text"],
            "label": [[s["start"], s["end"], s["label"]] for s in rec["spans"]]}


# --------------------------------------------------------------------------- gliner

def gliner_to_record(obj: Any, default_id: str | None = None) -> dict:
    """A canonical record from a GLiNER line (token spans, end inclusive)."""
    if not isinstance(obj, dict):
        raise DataError(f"a record must be a JSON object, got {type(obj).__name__}")
    words = obj.get("tokenized_text")
    if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
        raise DataError("'tokenized_text' must be a list of non-empty strings")
    ner = obj.get("ner", [])
    if not isinstance(ner, list):
        raise DataError("'ner' must be a list")
    spans = []
    for i, item in enumerate(ner):
        if not (isinstance(item, (list, tuple)) and len(item) == 3):
            raise DataError(f"ner {i} must be [token_start, token_end, label]")
        spans.append({"token_start": item[0], "token_end": item[1], "label": item[2]})
    rest = {k: v for k, v in obj.items() if k not in ("tokenized_text", "ner")}
    rest.update(tokens=words, spans=spans)
    rest.pop("text", None)
    return normalize_record(rest, default_id=default_id)


def record_to_gliner(rec: dict) -> dict:
    return {"id": rec.get("id"), "tokenized_text": [t["text"] for t in rec["tokens"]],
            "ner": [[s["token_start"], s["token_end"], s["label"]] for s in rec["spans"]]}


# --------------------------------------------------------------------------- hf

def _hf_tags(obj: Any, labels: Sequence[str] | None) -> list[str]:
    if not isinstance(obj, dict):
        raise DataError(f"a record must be a JSON object, got {type(obj).__name__}")
    words, tags = obj.get("tokens"), obj.get("ner_tags")
    if not isinstance(words, list) or not isinstance(tags, list):
        raise DataError("hf record needs 'tokens' and 'ner_tags' lists")
    if len(words) != len(tags):
        raise DataError(f"{len(words)} tokens but {len(tags)} ner_tags")
    out = []
    for i, t in enumerate(tags):
        if isinstance(t, str):
            out.append(t)
        elif _int_id(t):
            if labels is None:
                raise DataError("ner_tags are integers: give the id -> tag list (--labels)")
            if not 0 <= t < len(labels):
                raise DataError(f"ner_tags[{i}] = {t} is out of range ({len(labels)} labels)")
            out.append(labels[t])
        else:
            raise DataError(f"ner_tags[{i}] must be a string or an integer")
    return out


def read_hf(path: str | os.PathLike = "-", *, scheme: str = "auto",
            labels: Sequence[str] | None = None, id_prefix: str = "",
            policy: ErrorPolicy | None = None, detect_window: int = DETECT_WINDOW,
            allow_empty: bool = False) -> Iterator[dict]:
    """Canonical records from Hugging Face ``{"tokens", "ner_tags"}`` lines."""
    policy = policy or ErrorPolicy()
    name = display_name(path)

    def items():
        for lineno, obj in read_jsonl(path, policy=policy, allow_empty=True):
            try:
                yield lineno, obj, _hf_tags(obj, labels)
            except DataError as e:
                yield e.located(name, lineno)

    scheme, stream = _with_scheme(items(), lambda item: item[2], scheme, detect_window)
    good = 0
    for item in stream:
        if isinstance(item, DataError):
            policy.handle(item)
            continue
        lineno, obj, tags = item
        try:
            for t in tags:
                check_tag(t, scheme)
            rest = {k: v for k, v in obj.items() if k not in ("tokens", "ner_tags", "text")}
            rest.update(tokens=obj["tokens"], spans=[{"token_start": s, "token_end": e, "label": lab}
                                                     for s, e, lab in decode(tags)])
            rec = normalize_record(rest, default_id=f"{id_prefix}{lineno}")
        except DataError as e:
            policy.handle(e.located(name, lineno))
            continue
        good += 1
        yield rec
    if good == 0 and not allow_empty:
        raise DataError("no records (empty input)", path=name)


def record_to_hf(rec: dict, *, scheme: str | None = None,
                 label_ids: dict[str, int] | None = None) -> dict:
    """``{"id", "tokens", "ner_tags"}``; tags as strings, or integers via ``label_ids``."""
    cm = (rec.get("meta") or {}).get("conll") or {}
    tags = encode(rec["spans"], len(rec["tokens"]), scheme or cm.get("scheme") or "BIO2")
    if label_ids is not None:
        try:
            tags = [label_ids[t] for t in tags]
        except KeyError as e:
            raise DataError(f"tag {e.args[0]!r} is not in --labels") from None
    return {"id": rec.get("id"), "tokens": [t["text"] for t in rec["tokens"]], "ner_tags": tags}


# --------------------------------------------------------------------------- dispatch

def _canonical(obj: Any, default_id: str | None = None) -> dict:
    """jsonl/prodigy: any accepted input form of nertools-format(5)."""
    return normalize_record(obj, default_id=default_id)


def read_format(fmt: str, path: str | os.PathLike = "-", *, policy: ErrorPolicy | None = None,
                scheme: str = "auto", token_col: int = 0, tag_col: int = -1,
                labels: Sequence[str] | None = None, id_prefix: str = "",
                detect_window: int = DETECT_WINDOW, allow_empty: bool = False) -> Iterator[dict]:
    """Canonical records from ``path`` in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "conll":
        return read_conll(path, scheme=scheme, token_col=token_col, tag_col=tag_col,
                          id_prefix=id_prefix, policy=policy, detect_window=detect_window,
                          allow_empty=allow_empty)
    if fmt == "hf":
        return read_hf(path, scheme=scheme, labels=labels, id_prefix=id_prefix, policy=policy,
                       detect_window=detect_window, allow_empty=allow_empty)
    to_record = {"jsonl": _canonical, "prodigy": _canonical,
                 "doccano": doccano_to_record, "gliner": gliner_to_record}.get(fmt)
    if to_record is None:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    return _read_json_format(path, to_record, policy, id_prefix, allow_empty)


def formatter(fmt: str, *, scheme: str | None = None, sep: str | None = None,
              labels: Sequence[str] | None = None) -> Callable[[dict], bytes]:
    """A function turning one canonical record into its bytes in format ``fmt``.

    ``scheme`` (conll, hf) and ``sep`` (conll) default to what the record's
    ``meta["conll"]`` recorded; ``labels`` makes hf tags integers.
    """
    if scheme is not None:
        scheme = canonical_scheme(scheme)
    if fmt in ("jsonl", "prodigy"):
        return dumps
    if fmt == "doccano":
        return lambda rec: dumps(record_to_doccano(rec))
    if fmt == "gliner":
        return lambda rec: dumps(record_to_gliner(rec))
    if fmt == "hf":
        ids = {t: i for i, t in enumerate(labels)} if labels is not None else None
        return lambda rec: dumps(record_to_hf(rec, scheme=scheme, label_ids=ids))
    if fmt == "conll":
        return lambda rec: conll_block(rec, scheme=scheme, sep=sep).encode("utf-8")
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def write_format(fmt: str, records: Iterable[dict], path: str | os.PathLike = "-", *,
                 policy: ErrorPolicy | None = None, scheme: str | None = None,
                 sep: str | None = None, labels: Sequence[str] | None = None) -> int:
    """Write ``records`` to ``path`` in format ``fmt``; return how many were written.

    A record that cannot be written (e.g. overlapping spans as tags) raises
    :class:`DataError` naming its id, or is skipped per ``policy``. A file target is
    replaced only on success.
    """
    policy = policy or ErrorPolicy()
    fmt_one = formatter(fmt, scheme=scheme, sep=sep, labels=labels)
    with RecordWriter(path) as out:
        for rec in records:
            try:
                data = fmt_one(rec)
            except DataError as e:
                policy.handle(DataError(f"record {rec.get('id')!r}: {e.message}",
                                        path=e.path, line=e.line))
                continue
            out.write_raw(data)
        return out.count


def convert(input: str | os.PathLike, output: str | os.PathLike, from_fmt: str, to_fmt: str, *,
            policy: ErrorPolicy | None = None, scheme: str = "auto", out_scheme: str | None = None,
            token_col: int = 0, tag_col: int = -1, sep: str | None = None,
            labels: Sequence[str] | None = None, id_prefix: str = "") -> int:
    """Convert ``input`` (format ``from_fmt``) to ``output`` (``to_fmt``), streaming.

    Returns the number of records written. ``scheme`` is the input tagging scheme
    ("auto" detects), ``out_scheme`` the output one (default: as read, else BIO2).
    """
    policy = policy or ErrorPolicy()
    records = read_format(from_fmt, input, policy=policy, scheme=scheme, token_col=token_col,
                          tag_col=tag_col, labels=labels, id_prefix=id_prefix)
    return write_format(to_fmt, records, output, policy=policy, scheme=out_scheme, sep=sep,
                        labels=labels)
