"""Deprecated import path: the contents moved to nertools.core.jsonl, nertools.core.specfile.

Kept for one release."""
import warnings
from nertools.core.jsonl import (ErrorPolicy, ON_ERROR_CHOICES, RecordWriter, display_name, dumps, open_binary_input, open_writer, read_converted, read_jsonl, read_records, write_jsonl)  # noqa: F401
from nertools.core.specfile import (read_small_table, read_text_lines)  # noqa: F401

warnings.warn("nertools.jsonl moved to nertools.core.jsonl, nertools.core.specfile", DeprecationWarning, stacklevel=2)
