"""Corpus formats (``ner-convert``): one module per format, :mod:`~nertools.formats.convert` dispatches.

conll (:mod:`.conll`), doccano (:mod:`.doccano`), gliner (:mod:`.gliner`), hf (:mod:`.hf`);
jsonl and prodigy are the canonical records themselves (:mod:`nertools.core.jsonl`).
"""

from nertools.formats.convert import FORMATS, convert, formatter, read_format, write_format

__all__ = ["FORMATS", "convert", "formatter", "read_format", "write_format"]
