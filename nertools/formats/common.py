"""Helpers shared by the format readers."""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator, Sequence

from nertools.errors import DataError
from nertools.core.jsonl import ErrorPolicy, read_converted
from nertools.core.tags import SchemeDetector, canonical_scheme

#: Number of leading sentences (conll) or records (hf) the tagging scheme is detected from.
DETECT_WINDOW = 2000


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
