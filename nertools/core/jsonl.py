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

from nertools.errors import DataError
from nertools.core.atomic import commit_file, discard, temp_file_beside
from nertools.core.record import normalize_record

ON_ERROR_CHOICES = ("fail", "skip", "warn")


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


def display_name(path: str | os.PathLike) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def open_binary_input(path: str | os.PathLike) -> IO[bytes]:
    """Open ``path`` for binary reading: ``-`` is stdin, ``*.gz`` is decompressed."""
    p = str(path)
    if p == "-":
        return sys.stdin.buffer
    try:
        if p.endswith(".gz"):
            return gzip.open(p, "rb")
        return open(p, "rb")
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror or e}", path=p) from None


def read_jsonl(path: str | os.PathLike, *, policy: ErrorPolicy | None = None,
               allow_empty: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, parsed_object)`` for each non-blank line of a JSONL file.

    Broken JSON raises :class:`DataError` naming the file and line (or is skipped, per
    ``policy``). An input with no records raises unless ``allow_empty``.
    """
    policy = policy or ErrorPolicy()
    name = display_name(path)
    fh = open_binary_input(path)
    count = 0
    try:
        lineno = 0
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                policy.handle(DataError(f"broken JSON: {e}", path=name, line=lineno))
                continue
            except UnicodeDecodeError:  # pragma: no cover - orjson reports this as JSONDecodeError
                policy.handle(DataError("not UTF-8", path=name, line=lineno))
                continue
            count += 1
            yield lineno, obj
    except (OSError, EOFError) as e:
        if isinstance(e, BrokenPipeError):
            raise
        raise DataError(f"cannot read: {e}", path=name) from None
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()
    if count == 0 and not allow_empty:
        raise DataError("no records (empty input)", path=name)


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
        raise DataError("no records (empty input)", path=name)


def read_records(path: str | os.PathLike, *, policy: ErrorPolicy | None = None,
                 labels: Iterable[str] | None = None, allow_empty: bool = False,
                 normalize: bool = True, **normalize_kwargs: Any) -> Iterator[dict]:
    """Yield canonical records (:func:`nertools.core.record.normalize_record`) from a JSONL file.

    Invalid records raise :class:`DataError` with file and line, or are skipped per
    ``policy``. A record without ``id`` gets its 1-based line number as id.
    """
    label_set = frozenset(labels) if labels is not None else None

    def convert(obj: Any, lineno: int) -> Any:
        if not normalize:
            return obj
        return normalize_record(obj, labels=label_set, default_id=str(lineno), **normalize_kwargs)

    return read_converted(path, convert, policy=policy, allow_empty=allow_empty)


def dumps(obj: Any) -> bytes:
    """One JSONL line (with its newline)."""
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)


class RecordWriter:
    """Write JSON objects as lines to a path, ``-`` (stdout) or ``*.gz``.

    Lines are buffered and written in whole-line chunks. A file target is written to a
    temporary file beside it (:func:`nertools.core.atomic.temp_file_beside`, mode from the
    umask) and renamed into place by :meth:`close`; on failure (:meth:`abort`, leaving a
    ``with`` block by an exception, or an error while closing) the temporary file is removed
    and the target is untouched.
    """

    def __init__(self, path: str | os.PathLike = "-", *, buffer_size: int = 1 << 16):
        self.path = str(path)
        self.count = 0
        self._buf = bytearray()
        self._limit = buffer_size
        self._tmp: str | None = None
        self._closed = False
        if self.path == "-":
            self._fh: IO[bytes] = sys.stdout.buffer
        else:
            try:
                fd, self._tmp = temp_file_beside(self.path)
            except OSError as e:
                raise DataError(f"cannot write: {e.strerror or e}", path=self.path) from None
            raw = os.fdopen(fd, "wb")
            self._fh = gzip.GzipFile(fileobj=raw, mode="wb") if self.path.endswith(".gz") else raw
            self._raw = raw

    def write(self, obj: Any) -> None:
        self.write_raw(dumps(obj))

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

    def flush(self) -> None:
        if self._buf:
            self._fh.write(self._buf)
            self._buf.clear()
        self._fh.flush()

    def close(self) -> None:
        """Write out what is buffered; a file target is then renamed into place."""
        if self._closed:
            return
        if self._tmp is None:
            self._closed = True
            self.flush()
            return
        try:
            self.flush()
            if self._fh is not self._raw:
                self._fh.close()
            self._raw.close()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        try:
            commit_file(self._tmp, self.path)
        except OSError as e:
            discard(self._tmp)
            raise DataError(f"cannot write: {e.strerror or e}", path=self.path) from None
        finally:
            self._tmp = None

    def abort(self) -> None:
        """Write out the complete lines buffered so far (stdout), or discard the temp file."""
        if self._closed:
            return
        self._closed = True
        if self._tmp is None:
            try:
                self.flush()
            except (BrokenPipeError, OSError):
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


def open_writer(path: str | os.PathLike = "-") -> RecordWriter:
    return RecordWriter(path)


def write_jsonl(path: str | os.PathLike, objs: Iterable[Any]) -> int:
    """Write all ``objs`` to ``path`` atomically; return the number written."""
    with RecordWriter(path) as w:
        return w.write_many(objs)
