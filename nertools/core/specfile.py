"""Small specification files: plain text lines and TSV-or-JSONL tables (seeds, questions,
dictionaries, stop words), read with file:line errors."""

from __future__ import annotations

import io
import os
import sys
from typing import Any, Callable, Iterator

import orjson

from nertools.errors import DataError
from nertools.core.jsonl import display_name, open_binary_input


def read_text_lines(path: str | os.PathLike) -> Iterator[str]:
    """Text lines (without newline) of a file, ``-`` or ``.gz``; for non-JSON inputs."""
    fh = open_binary_input(path)
    try:
        for raw in io.TextIOWrapper(fh, encoding="utf-8", newline=""):
            yield raw.rstrip("\n").rstrip("\r") if raw.endswith("\n") else raw
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


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
