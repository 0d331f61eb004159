"""nertools: build named-entity recognisers from almost no supervision.

Every command of the toolkit is a thin wrapper over functions in this package.
The shared core is the record format (:mod:`nertools.record`) and its streaming
reader/writer (:mod:`nertools.jsonl`).
"""

__version__ = "0.1.0"

from nertools.errors import DataError, NertoolsError  # noqa: E402
from nertools.core.record import normalize_record, make_span, whitespace_tokenize  # noqa: E402
from nertools.core.jsonl import read_records, read_jsonl, RecordWriter, open_writer  # noqa: E402

__all__ = [
    "__version__",
    "DataError",
    "NertoolsError",
    "normalize_record",
    "make_span",
    "whitespace_tokenize",
    "read_records",
    "read_jsonl",
    "RecordWriter",
    "open_writer",
]
