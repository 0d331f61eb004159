"""Streaming JSONL input and output for files, ``-`` (stdin/stdout) and ``.gz``.

Reading yields one parsed object (or normalised record) at a time; nothing holds the
whole file. Writing emits whole lines only: a line is handed to the operating system in
one piece, so a consumer (or a crash) never sees half a record. Output files are written
to a temporary file beside the target and renamed into place on success, so a failed run
never clobbers or truncates an earlier result.
"""

from __future__ import annotations

import gzip
import os
import sys
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterable, Iterator

import orjson

from nertools.errors import DataError, InputFileError, OutputError, UsageError
from nertools.core.atomic import commit_file, discard, is_special_file, temp_file_beside
from nertools.core.record import normalize_record, to_compact

ON_ERROR_CHOICES = ("fail", "skip", "warn")

#: The forms records are written in: ``canonical`` (the interchange form, the default) and
#: ``compact`` (nertools-format(5), COMPACT: :func:`nertools.core.record.to_compact`). Both are
#: read by every reader, detected record by record.
OUTPUT_FORMS = ("canonical", "compact")
#: The environment variable that gives the commands' ``--output-form`` its default.
OUTPUT_FORM_ENV = "NERTOOLS_OUTPUT_FORM"
_output_form = "canonical"


def set_output_form(form: str) -> None:
    """Set the form in which :class:`RecordWriter` (and :func:`dumps_record`) write records
    when not told otherwise; the commands' ``--output-form``/``--compact`` call this."""
    global _output_form
    if form not in OUTPUT_FORMS:
        raise UsageError(f"unknown output form {form!r} (known: {', '.join(OUTPUT_FORMS)})")
    _output_form = form


def output_form() -> str:
    """The current default output form (:func:`set_output_form`; ``canonical`` unless set)."""
    return _output_form

#: The longest input line (a JSONL record, a line of a text or specification file) accepted, in bytes,
#: unless the environment variable ``NERTOOLS_MAX_RECORD_BYTES`` says otherwise. A longer
#: line is refused (exit 65, naming file:line) before it is parsed: parsing and tokenising a
#: record takes about 150 times its size in memory.
DEFAULT_MAX_RECORD_BYTES = 16 << 20
MAX_RECORD_ENV = "NERTOOLS_MAX_RECORD_BYTES"

BOM = b"\xef\xbb\xbf"


@dataclass
class ErrorPolicy:
    """What to do with a bad input line: ``fail`` (raise), ``skip`` (count) or ``warn``
    (count and print each on stderr). Skips are summarised by :meth:`report`."""

    mode: str = "fail"
    skipped: int = 0
    first: str | None = None
    stream: Any = field(default=None, repr=False)

    def __post_init__(self):
        if self.mode not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, not {self.mode!r}")

    def handle(self, err: DataError) -> None:
        if self.mode == "fail":
            raise err
        self.skipped += 1
        if self.first is None:
            self.first = str(err)
        if self.mode == "warn":
            print(f"warning: skipped {err}", file=self.stream or sys.stderr)

    def report(self, prog: str = "nertools") -> None:
        if self.skipped:
            print(f"{prog}: skipped {self.skipped} bad record(s); first: {self.first}",
                  file=self.stream or sys.stderr)

    def no_records(self, name: str) -> DataError:
        """The error for an input without a single good record: says how many were skipped."""
        if self.skipped:
            return DataError(f"no valid records: {self.skipped} skipped (first: {self.first})", path=name)
        return DataError("no records (empty input)", path=name)


def display_name(path: str | os.PathLike, *, output: bool = False) -> str:
    """A path for messages: ``-`` is ``<stdin>`` (``<stdout>`` for an ``output``)."""
    if str(path) == "-":
        return "<stdout>" if output else "<stdin>"
    return str(path)


def write_error(name: str, e: OSError) -> OutputError:
    """``cannot write NAME: No space left on device`` (exit 1) for an OSError while writing."""
    return OutputError(f"cannot write {name}: {e.strerror or e}")


def open_binary_input(path: str | os.PathLike) -> IO[bytes]:
    """Open ``path`` for binary reading: ``-`` is stdin, ``*.gz`` is decompressed.

    A file that cannot be opened (missing, a directory, no permission) raises
    :class:`~nertools.errors.InputFileError` (exit 2, like click's own path checks)."""
    p = str(path)
    if p == "-":
        return sys.stdin.buffer
    try:
        if p.endswith(".gz"):
            return gzip.open(p, "rb")
        return open(p, "rb")
    except OSError as e:
        raise InputFileError(f"cannot open: {e.strerror or e}", path=p) from None


def max_record_bytes() -> int:
    """The line-length limit: ``$NERTOOLS_MAX_RECORD_BYTES`` or :data:`DEFAULT_MAX_RECORD_BYTES`."""
    value = os.environ.get(MAX_RECORD_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_RECORD_BYTES
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise UsageError(f"{MAX_RECORD_ENV}={value!r}: expected a positive number of bytes")
    return limit


def too_long(name: str, lineno: int, limit: int) -> DataError:
    return DataError(f"line longer than {limit} bytes (the record size limit; set {MAX_RECORD_ENV} "
                     "to raise it)", path=name, line=lineno)


def bounded_lines(fh: IO[bytes], limit: int | None = None) -> Iterator[tuple[int, bytes | None]]:
    """``(line_number, raw_line)`` for each line of ``fh``, reading at most ``limit`` bytes of
    a line (:func:`max_record_bytes`): a longer line is consumed in bounded pieces and given
    as ``(line_number, None)``, so that no huge line is ever held in memory."""
    limit = max_record_bytes() if limit is None else limit
    lineno = 0
    while True:
        raw = fh.readline(limit + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > limit and not raw.endswith(b"\n"):  # more than limit bytes before the newline
            raw = None
            while True:  # skip the rest of the line
                piece = fh.readline(1 << 20)
                if not piece or piece.endswith(b"\n"):
                    break
        yield lineno, raw


def decode_line(raw: bytes, name: str, lineno: int) -> str:
    """One line of a text file as str: UTF-8, a BOM on line 1 dropped, errors with file:line."""
    if lineno == 1 and raw.startswith(BOM):
        raw = raw[len(BOM):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line); "
                        "convert the file to UTF-8", path=name, line=lineno) from None


def _json_error(raw: bytes, err: orjson.JSONDecodeError, name: str, lineno: int) -> DataError:
    """The error for a line orjson refuses: "not UTF-8 (...)" when that is the cause (orjson
    words it as a surrogate error at column 1), else "broken JSON: ..."."""
    try:
        decode_line(raw, name, lineno)
    except DataError as e:
        return e
    return DataError(f"broken JSON: {err}", path=name, line=lineno)


def raw_lines(path: str | os.PathLike, name: str | None = None) -> Iterator[tuple[int, bytes | None]]:
    """``(line_number, raw_line)`` of a file, ``-`` or ``.gz``, as :func:`bounded_lines` gives
    them (``None`` for a line over the record size limit). The file is closed at the end (stdin
    is left open); a read error or a truncated ``.gz`` is a :class:`DataError` naming the file
    and the line it stopped at."""
    name = name or display_name(path)
    fh = open_binary_input(path)
    lineno = 0
    try:
        for lineno, raw in bounded_lines(fh):
            yield lineno, raw
    except (OSError, EOFError) as e:
        if isinstance(e, BrokenPipeError):
            raise
        why = (f"{e} (truncated .gz?)" if isinstance(e, EOFError)
               else str(e.strerror or e) if isinstance(e, OSError) else str(e))
        raise DataError(f"cannot read: {why}", path=name, line=lineno + 1) from None
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def read_jsonl(path: str | os.PathLike, *, policy: ErrorPolicy | None = None,
               allow_empty: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, parsed_object)`` for each non-blank line of a JSONL file.

    Broken JSON raises :class:`DataError` naming the file and line (or is skipped, per
    ``policy``). An input with no records raises unless ``allow_empty``.
    """
    policy = policy or ErrorPolicy()
    name = display_name(path)
    count = 0
    for lineno, raw in raw_lines(path, name):
        if raw is None:
            policy.handle(too_long(name, lineno, max_record_bytes()))
            continue
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            policy.handle(_json_error(raw, e, name, lineno))
            continue
        count += 1
        yield lineno, obj
    if count == 0 and not allow_empty:
        raise policy.no_records(name)


def read_converted(path: str | os.PathLike, convert: Callable[[Any, int], Any], *,
                   policy: ErrorPolicy | None = None, allow_empty: bool = False) -> Iterator[Any]:
    """Yield ``convert(obj, line_number)`` for each JSON line of ``path``.

    A :class:`DataError` raised by ``convert`` is located at the file and line and handled by
    ``policy`` (raised, or counted and skipped). An input with no good records raises unless
    ``allow_empty``. This is the loop under every JSON-based reader of nertools.
    """
    policy = policy or ErrorPolicy()
    name = display_name(path)
    good = 0
    for lineno, obj in read_jsonl(path, policy=policy, allow_empty=True):
        try:
            item = convert(obj, lineno)
        except DataError as e:
            policy.handle(e.located(name, lineno))
            continue
        good += 1
        yield item
    if good == 0 and not allow_empty:
        raise policy.no_records(name)


def read_records(path: str | os.PathLike, *, policy: ErrorPolicy | None = None,
                 labels: Iterable[str] | None = None, allow_empty: bool = False,
                 normalize: bool = True, **normalize_kwargs: Any) -> Iterator[dict]:
    """Yield canonical records (:func:`nertools.core.record.normalize_record`) from a JSONL file
    of records in any accepted form, canonical and compact ones mixed as they come.

    Invalid records raise :class:`DataError` with file and line, or are skipped per
    ``policy``. A record without ``id`` gets its 1-based line number as id.
    """
    label_set = frozenset(labels) if labels is not None else None

    def convert(obj: Any, lineno: int) -> Any:
        if not normalize:
            return obj
        return normalize_record(obj, labels=label_set, default_id=str(lineno), **normalize_kwargs)

    return read_converted(path, convert, policy=policy, allow_empty=allow_empty)


_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY


def dumps(obj: Any) -> bytes:
    """One JSONL line (with its newline)."""
    return orjson.dumps(obj, option=_DUMPS_OPTIONS)


def dumps_record(obj: Any, form: str | None = None) -> bytes:
    """One JSONL line for a record in ``form`` (default: :func:`output_form`): ``compact``
    writes a canonical record compactly (:func:`~nertools.core.record.to_compact`; anything
    else, e.g. a record already compact, as it is)."""
    if (form or _output_form) == "compact":
        obj = to_compact(obj)
    return orjson.dumps(obj, option=_DUMPS_OPTIONS)


class RecordWriter:
    """Write JSON objects as lines to a path, ``-`` (stdout) or ``*.gz``.

    Lines are buffered and written in whole-line chunks. A file target is written to a
    temporary file beside it (:func:`nertools.core.atomic.temp_file_beside`, mode from the
    umask) and renamed into place by :meth:`close`; on failure (:meth:`abort`, leaving a
    ``with`` block by an exception, or an error while closing) the temporary file is removed
    and the target is untouched.

    ``form``: ``canonical`` or ``compact`` (:data:`OUTPUT_FORMS`); ``None``, the default, takes
    :func:`output_form` (what the command line chose). In the compact form :meth:`write` turns
    canonical records compact (:func:`~nertools.core.record.to_compact`) and writes any other
    object as it is.
    """

    def __init__(self, path: str | os.PathLike = "-", *, buffer_size: int = 1 << 16,
                 form: str | None = None):
        form = form or _output_form
        if form not in OUTPUT_FORMS:
            raise UsageError(f"unknown output form {form!r} (known: {', '.join(OUTPUT_FORMS)})")
        self.form = form
        self._compact = form == "compact"
        self.path = str(path)
        self.count = 0
        self._buf = bytearray()
        self._limit = buffer_size
        self._tmp: str | None = None
        self._closed = False
        self._direct = False  # a device or FIFO target, written in place
        if self.path == "-":
            self._fh: IO[bytes] = sys.stdout.buffer
        elif is_special_file(self.path):
            try:
                raw = open(self.path, "wb")
            except OSError as e:
                raise self._write_error(e) from None
            self._fh = gzip.GzipFile(fileobj=raw, mode="wb") if self.path.endswith(".gz") else raw
            self._raw = raw
            self._direct = True
        else:
            try:
                fd, self._tmp = temp_file_beside(self.path)
            except OSError as e:
                raise self._write_error(e) from None
            raw = os.fdopen(fd, "wb")
            self._fh = gzip.GzipFile(fileobj=raw, mode="wb") if self.path.endswith(".gz") else raw
            self._raw = raw

    def write(self, obj: Any) -> None:
        if self._compact:
            obj = to_compact(obj)
        self._buf += orjson.dumps(obj, option=_DUMPS_OPTIONS)
        self.count += 1
        if len(self._buf) >= self._limit:
            self.flush()

    def write_raw(self, data: bytes) -> None:
        """Write one complete unit of output (a JSON line, a CoNLL sentence block) as-is."""
        self._buf += data
        self.count += 1
        if len(self._buf) >= self._limit:
            self.flush()

    def write_many(self, objs: Iterable[Any]) -> int:
        n = 0
        for o in objs:
            self.write(o)
            n += 1
        return n

    def _write_error(self, e: OSError) -> OutputError:
        return write_error(display_name(self.path, output=True), e)

    def flush(self) -> None:
        try:
            if self._buf:
                self._fh.write(self._buf)
                self._buf.clear()
            self._fh.flush()
        except BrokenPipeError:
            raise
        except OSError as e:  # a full disk, /dev/full, a quota, an I/O error
            self._buf.clear()
            raise self._write_error(e) from None

    def close(self) -> None:
        """Write out what is buffered; a file target is then renamed into place."""
        if self._closed:
            return
        if self._tmp is None:
            self._closed = True
            self.flush()
            if self._direct:
                self._close_direct()
            return
        try:
            self.flush()
            if self._fh is not self._raw:
                self._fh.close()
            self._raw.close()
        except BaseException as e:
            self.abort()
            if isinstance(e, OSError) and not isinstance(e, BrokenPipeError):
                raise self._write_error(e) from None
            raise
        self._closed = True
        try:
            commit_file(self._tmp, self.path)
        except OSError as e:
            discard(self._tmp)
            raise self._write_error(e) from None
        finally:
            self._tmp = None

    def _close_direct(self) -> None:
        try:
            if self._fh is not self._raw:
                self._fh.close()
            self._raw.close()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise self._write_error(e) from None

    def abort(self) -> None:
        """Write out the complete lines buffered so far (stdout, a device), or discard the
        temp file."""
        if self._closed:
            return
        self._closed = True
        if self._tmp is None:
            try:
                self.flush()
                if self._direct:
                    self._close_direct()
            except (OSError, OutputError):  # BrokenPipeError included
                pass
            return
        try:
            self._raw.close()
        except OSError:
            pass
        finally:
            discard(self._tmp)
            self._tmp = None

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def open_writer(path: str | os.PathLike = "-", *, form: str | None = None) -> RecordWriter:
    return RecordWriter(path, form=form)


def write_jsonl(path: str | os.PathLike, objs: Iterable[Any], *, form: str | None = None) -> int:
    """Write all ``objs`` to ``path`` atomically (records in ``form``, see
    :class:`RecordWriter`); return the number written."""
    with RecordWriter(path, form=form) as w:
        return w.write_many(objs)
