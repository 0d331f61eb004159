"""CoNLL column files (see :mod:`nertools.formats.convert` for the layout)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Iterator

from nertools.errors import DataError
from nertools.core.jsonl import (ErrorPolicy, bounded_lines, display_name, max_record_bytes, open_binary_input,
                                  too_long)
from nertools.core.specfile import decode_line
from nertools.core.record import make_span, tokens_from_words
from nertools.core.tags import canonical_scheme, check_tag, decode, encode
from nertools.formats.common import DETECT_WINDOW, _with_scheme

DOCSTART = "-DOCSTART-"
SEPARATORS = {"tab": "\t", "space": " "}


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
            limit = max_record_bytes()
            for lineno, raw in bounded_lines(fh, limit):
                if raw is None:
                    bad = bad or too_long(self.name, lineno, limit)
                    continue
                try:
                    line = decode_line(raw, self.name, lineno)
                except DataError as e:
                    bad = bad or e
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
                if cols and cols[0] == DOCSTART and not fields:  # mid-sentence: a token
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
        except (OSError, EOFError) as e:
            if isinstance(e, BrokenPipeError):
                raise
            why = f"{e} (truncated .gz?)" if isinstance(e, EOFError) else str(e)
            raise DataError(f"cannot read: {why}", path=self.name) from None
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
    if words[0] == DOCSTART:
        raise DataError(f"token 0: {DOCSTART!r} at the start of a sentence cannot be written to CoNLL: "
                        "it would read back as a document separator")
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
