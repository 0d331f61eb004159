"""Small specification files: plain text lines and TSV-or-JSONL tables (seeds, questions,
dictionaries, stop words), read with file:line errors."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import orjson

from nertools.errors import DataError
from nertools.core.jsonl import BOM, decode_line  # noqa: F401  (re-exported: the text-line rules live in core.jsonl)
from nertools.core.jsonl import display_name, max_record_bytes, raw_lines, too_long


def read_text_lines(path: str | os.PathLike) -> Iterator[str]:
    """Text lines (without newline) of a file, ``-`` or ``.gz``; for non-JSON inputs.

    UTF-8 only (a UTF-8 byte order mark at the start is dropped, as Notepad and Excel write
    one); a line that is not UTF-8, longer than :func:`~nertools.core.jsonl.max_record_bytes`,
    or a truncated ``.gz``, raises :class:`DataError` naming the file (and line).
    """
    name = display_name(path)
    for lineno, raw in raw_lines(path, name):
        if raw is None:
            raise too_long(name, lineno, max_record_bytes())
        line = decode_line(raw, name, lineno)
        yield line.rstrip("\n").rstrip("\r") if line.endswith("\n") else line


def read_small_table(path: str | os.PathLike, parse_json: Callable[[dict], Any],
                     parse_fields: Callable[[list[str]], Any], *, what: str) -> list[Any]:
    """Read a small TSV-or-JSONL specification file (seeds, questions, ...).

    Blank lines and lines starting with ``#`` are skipped; a line starting with ``{`` is a
    JSON object handed to ``parse_json``, any other line is split on tabs and handed to
    ``parse_fields``. Errors name the file and line; a file with no entries is an error
    ("no {what} in file").
    """
    name = display_name(path)
    out = []
    for lineno, line in enumerate(read_text_lines(path), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            if stripped.startswith("{"):
                obj = orjson.loads(stripped)
                if not isinstance(obj, dict):
                    raise DataError("expected a JSON object")
                out.append(parse_json(obj))
            else:
                out.append(parse_fields(line.split("\t")))
        except orjson.JSONDecodeError as e:
            raise DataError(f"broken JSON: {e}", path=name, line=lineno) from None
        except DataError as e:
            raise e.located(name, lineno) from None
    if not out:
        raise DataError(f"no {what} in file", path=name)
    return out
