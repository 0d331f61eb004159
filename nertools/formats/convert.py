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
    Tags in BIO2, IOB1, IOBES or BILOU (:mod:`nertools.core.tags`), detected from the first
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

import os
from typing import Any, Callable, Iterable, Iterator, Sequence

from nertools.errors import DataError
from nertools.core.jsonl import ErrorPolicy, RecordWriter, dumps, dumps_record
from nertools.core.record import normalize_record
from nertools.core.tags import canonical_scheme
from nertools.formats.common import DETECT_WINDOW, _read_json_format
from nertools.formats.conll import conll_block, read_conll
from nertools.formats.doccano import doccano_to_record, record_to_doccano
from nertools.formats.gliner import gliner_to_record, record_to_gliner
from nertools.formats.hf import read_hf, record_to_hf

FORMATS = ("conll", "jsonl", "prodigy", "doccano", "gliner", "hf")


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
    if fmt == "jsonl":  # the output form the command line chose (canonical unless --compact)
        return dumps_record
    if fmt == "prodigy":
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
