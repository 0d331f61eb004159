"""Resumable corpus runs: append-only outputs, a progress journal, exact restarts.

A model command (``ner-divscore``, ``ner-tag``, ``ner-annotate``) reads its records in
**blocks** of a fixed number of records (:func:`blocks`) and does the
model work of each block on its own (a fresh scorer, its own batches). The bytes a block
writes are therefore a function of the block's records only, and not of where the run started
or which other blocks it saw. That is what makes three things exact, byte for byte:

* **resume** (``--resume -o FILE``): a killed run restarts at its first unfinished block;
* **shards** (``--shard I/N``): block ``b`` belongs to shard ``b mod N``, and ``ner-merge``
  interleaves the shards' blocks back (:mod:`nertools.core.shard`);
* the Ray backend, whose actors score whole blocks.

(Batched float32 model output depends on batch composition: the same spans scored in other
batches differ in the last bits, so a restart that only skipped the records already written
would not reproduce an uninterrupted run.)

What is on disk besides ``FILE``: the **progress journal** ``FILE.progress`` (JSON lines). Its
first line is the run's header (command, input fingerprint, the options that shape the output,
block size, shard); each finished block appends ``{"block", "lines", "bytes", "records"}`` after
the block's lines are flushed to ``FILE``; a finished run appends ``{"complete": true, ...}``.
A restart cuts ``FILE`` back to the ``bytes`` of the last journal line (a block whose lines
were written but not journalled is redone) and a torn last journal line is cut off
(:func:`scan_lines`, the same cut as for a torn output line). A run with other inputs or options
is refused, naming what differs. A finished ``--resume`` run without ``--shard`` removes its
journal; a ``--shard`` run keeps it for ``ner-merge``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import orjson

from nertools.errors import DataError, NertoolsError, UsageError

#: The journal's format tag (its first line's ``format``).
JOURNAL_FORMAT = "nertools-run/1"
JOURNAL_SUFFIX = ".progress"

T = TypeVar("T")


def blocks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"block size must be >= 1, not {size}")
    buf: list[T] = []
    for x in items:
        buf.append(x)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


# --------------------------------------------------------------------------- append-only JSONL

@dataclass
class ScanResult:
    """What :func:`scan_lines` found in an existing file."""

    lines: int = 0         # complete lines
    size: int = 0          # bytes of the complete lines (the file is cut to this)
    last: bytes | None = None  # the last complete non-blank line
    cut: int = 0           # bytes of a torn last line that were cut off


def scan_lines(path: str, *, each: Callable[[bytes, int], None] | None = None,
               chunk: int = 1 << 20) -> ScanResult:
    """Count the complete lines of ``path`` (streaming, in ``chunk`` pieces) and cut off a torn
    last line (bytes after the last newline: what a killed writer leaves). ``each(line,
    lineno)`` is called for every complete non-blank line. A missing file is empty."""
    res = ScanResult()
    if not os.path.exists(path):
        return res
    if path.endswith(".gz"):
        raise NertoolsError("--resume cannot append to a .gz output; write plain JSONL")
    tail = b""
    with open(path, "rb") as fh:
        while True:
            data = fh.read(chunk)
            if not data:
                break
            data = tail + data
            start = 0
            while True:
                nl = data.find(b"\n", start)
                if nl < 0:
                    break
                line = data[start:nl]
                res.lines += 1
                if line.strip():
                    res.last = line
                    if each is not None:
                        each(line, res.lines)
                start = nl + 1
            res.size += start
            tail = data[start:]
    if tail:
        res.cut = len(tail)
        with open(path, "r+b") as fh:
            fh.truncate(res.size)
    return res


def done_ids(path: str) -> set:
    """Ids of the complete records in an existing output file (``ner-annotate --resume`` onto
    an output written without a journal); a torn last line is cut off."""
    ids: set = set()

    def add(line: bytes, lineno: int) -> None:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise DataError("broken JSON in the output being resumed", path=path, line=lineno) from None
        if isinstance(obj, dict):
            ids.add(obj.get("id"))

    scan_lines(path, each=add)
    return ids


class AppendWriter:
    """Appends JSONL lines to a file in place (``--resume``). ``flush_each``: every line is
    handed to the OS at once (a kill loses at most a torn last line); else lines are handed
    over by :meth:`flush` (the block runner flushes after every block)."""

    def __init__(self, path: str, *, flush_each: bool = True):
        self.path = path
        self.count = 0
        self.flush_each = flush_each
        try:
            self._fh = open(path, "ab")
        except OSError as e:
            from nertools.core.jsonl import write_error

            raise write_error(path, e) from None

    def write(self, obj: Any) -> None:
        from nertools.core.jsonl import dumps_record

        self.write_raw(dumps_record(obj))

    def write_raw(self, data: bytes) -> None:
        try:
            self._fh.write(data)
            if self.flush_each:
                self._fh.flush()
        except OSError as e:
            from nertools.core.jsonl import write_error

            raise write_error(self.path, e) from None
        self.count += 1

    def flush(self) -> None:
        self._fh.flush()

    def tell(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    abort = close  # an append-only output keeps what it has

    def __enter__(self) -> "AppendWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- fingerprints, header

def fingerprint(path: str, *, chunk: int = 1 << 20) -> dict:
    """``{"path", "size", "sha256"}`` of an input file (read once, streaming); stdin (``-``) is
    ``{"path": "-"}`` and cannot be checked."""
    if str(path) == "-":
        return {"path": "-"}
    h = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as fh:
            while True:
                data = fh.read(chunk)
                if not data:
                    break
                size += len(data)
                h.update(data)
    except OSError as e:
        from nertools.errors import InputFileError

        raise InputFileError(f"cannot open: {e.strerror or e}", path=str(path)) from None
    return {"path": os.path.abspath(path), "size": size, "sha256": h.hexdigest()}


def journal_path(output: str) -> str:
    return f"{output}{JOURNAL_SUFFIX}"


def make_header(command: str, input_fp: dict, options: dict, *, block: int, shard: tuple[int, int]) -> dict:
    return {"format": JOURNAL_FORMAT, "command": command, "input": input_fp,
            "options": options, "block": block, "shard": list(shard)}


def header_differences(old: dict, new: dict) -> list[str]:
    """What differs between two run headers, in words (empty: the same run)."""
    diffs = []
    if old.get("format") != new.get("format"):
        return [f"journal format {old.get('format')!r}, not {new.get('format')!r}"]
    for key in ("command", "block", "shard"):
        if old.get(key) != new.get(key):
            diffs.append(f"{key} {_show(old.get(key))} -> {_show(new.get(key))}")
    oi, ni = old.get("input") or {}, new.get("input") or {}
    if oi.get("path") == "-" or ni.get("path") == "-":
        if (oi.get("path") == "-") != (ni.get("path") == "-"):
            diffs.append(f"input {oi.get('path')} -> {ni.get('path')}")
    elif (oi.get("size"), oi.get("sha256")) != (ni.get("size"), ni.get("sha256")):
        diffs.append(f"input {oi.get('path')} ({oi.get('size')} bytes) -> {ni.get('path')} "
                     f"({ni.get('size')} bytes, other content)")
    oo, no = old.get("options") or {}, new.get("options") or {}
    for key in sorted(set(oo) | set(no)):
        if oo.get(key) != no.get(key):
            diffs.append(f"--{key} {_show(oo.get(key))} -> {_show(no.get(key))}")
    return diffs


def _show(v: Any) -> str:
    return "(default)" if v is None else orjson.dumps(v).decode()


@dataclass
class Journal:
    """A progress journal: the header and the finished blocks (one dict each)."""

    path: str
    header: dict
    blocks: list[dict] = field(default_factory=list)
    complete: dict | None = None

    @classmethod
    def read(cls, path: str, *, cut: bool = True) -> "Journal | None":
        """The journal at ``path`` (``None`` when there is none); a torn last line is cut off
        when ``cut``."""
        if not os.path.exists(path):
            return None
        objs: list[dict] = []

        def add(line: bytes, lineno: int) -> None:
            try:
                objs.append(json.loads(line))  # small; the stdlib parser (orjson is for records)
            except ValueError:
                raise DataError("broken progress journal", path=path, line=lineno) from None

        if cut:
            scan_lines(path, each=add)
        else:
            with open(path, "rb") as fh:
                for lineno, line in enumerate(fh, 1):
                    if line.endswith(b"\n") and line.strip():
                        add(line, lineno)
        if not objs or not isinstance(objs[0], dict) or objs[0].get("format") != JOURNAL_FORMAT:
            raise DataError(f"not a nertools progress journal ({JOURNAL_FORMAT})", path=path, line=1)
        j = cls(path, objs[0])
        for o in objs[1:]:
            if o.get("complete"):
                j.complete = o
            else:
                j.blocks.append(o)
        return j

    @property
    def bytes(self) -> int:
        return self.blocks[-1]["bytes"] if self.blocks else 0


class JournalWriter:
    """Appends the journal's lines (each flushed at once)."""

    def __init__(self, path: str, header: dict | None):
        self.path = path
        self._fh = open(path, "ab")
        if header is not None:
            self.append(header)

    def append(self, obj: dict) -> None:
        self._fh.write(orjson.dumps(obj) + b"\n")
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


# --------------------------------------------------------------------------- the block runner

class PartialBlock(Exception):
    """Raised by a block's ``process`` that had to stop inside the block (an LLM endpoint gone
    after its retries): :func:`run_blocks` writes the ``outputs`` it has, does not journal the
    block (a resume redoes it whole), finishes the output file and raises ``error``."""

    def __init__(self, outputs: list, error: BaseException):
        super().__init__(str(error))
        self.outputs = outputs
        self.error = error


@dataclass
class RunResult:
    blocks: int = 0          # blocks of this shard processed now
    blocks_skipped: int = 0  # done before (resume)
    records: int = 0         # records of this shard (done before and now)
    input_records: int = 0   # records of the whole input
    lines: int = 0           # lines of this shard's output (before and now)


def run_blocks(records: Iterable[dict], process: Callable[[list[dict]], Iterable[Any]] | None = None, *,
               output: str, process_stream: Callable[[Iterator[list[dict]]], Iterator[Iterable[Any]]] | None = None,
               command: str, input_path: str, options: dict, block: int,
               shard: tuple[int, int] = (0, 1), resume: bool = False,
               open_plain: Callable[[str], Any] | None = None, dumps: Callable[[Any], bytes] | None = None,
               on_block: Callable[[int, int], None] | None = None,
               info: Callable[[str], None] | None = None, header: dict | None = None,
               push: bool = False) -> RunResult:
    """Run ``process`` over the blocks of ``records`` that belong to ``shard`` and write its
    output records to ``output``, in order.

    ``process(block_records)`` returns the output records of one block (any number);
    ``process_stream(blocks)`` instead maps an iterator of blocks to their outputs, in order
    (several blocks in flight: the Ray backend); with ``push``, ``process(block_records, emit)``
    calls ``emit(output)`` for each output as soon as it is ready (with ``resume`` each line is
    flushed at once). Without
    ``resume`` and with one shard, output goes through ``open_plain(output)`` (a
    :class:`~nertools.core.jsonl.RecordWriter`: atomic, ``-`` = stdout) and no journal is
    written. With ``resume`` (needs a file), ``output`` is appended to in place with a journal;
    a shard run (``N > 1``) writes its journal too, for ``ner-merge``. ``on_block(records,
    lines)`` is told about every processed block (a progress bar). ``header``: the run header
    :func:`check_run` made (else it is made here)."""
    from nertools.core.jsonl import RecordWriter, dumps_record as jdumps

    dumps = dumps or jdumps
    index, count = shard
    journalled = resume or count > 1
    if journalled and output == "-":
        raise UsageError(f"{'--resume' if resume else '--shard'} needs -o FILE (the output and its "
                         f"progress journal {'FILE' + JOURNAL_SUFFIX} are files)")
    if journalled and header is None:
        header = make_header(command, fingerprint(input_path), options, block=block, shard=shard)
    jpath = journal_path(output) if journalled else None
    result = RunResult()
    skip_blocks = 0
    writer: Any
    journal: JournalWriter | None = None
    if resume:
        old = Journal.read(jpath)
        if old is None:
            if os.path.exists(output) and os.path.getsize(output) > 0:
                raise UsageError(f"{output} exists but has no progress journal {jpath}: it is not the "
                                 "output of an unfinished --resume run (a finished run removes its journal); "
                                 "remove it or choose another -o")
            with open(output, "wb"):
                pass
        else:
            diffs = header_differences(old.header, header)
            if diffs:
                raise UsageError(f"cannot resume {output}: it was started with other inputs or options "
                                 f"({'; '.join(diffs)}); rerun with those, or remove {output} and {jpath}")
            if old.complete is not None:
                _info(info, f"{output} is complete ({old.complete.get('lines')} lines); nothing to do")
                if count == 1:
                    _remove(jpath)
                return RunResult(records=old.complete.get("records", 0),
                                 input_records=old.complete.get("input_records", 0),
                                 lines=old.complete.get("lines", 0))
            size = os.path.getsize(output) if os.path.exists(output) else 0
            if size < old.bytes:
                raise DataError(f"is shorter ({size} bytes) than its progress journal says ({old.bytes}); "
                                f"remove it and {jpath} to start again", path=output)
            with open(output, "r+b") if os.path.exists(output) else open(output, "wb") as fh:
                fh.truncate(old.bytes)
            skip_blocks = len(old.blocks)
            result.lines = sum(b["lines"] for b in old.blocks)
            result.records = sum(b["records"] for b in old.blocks)
            result.blocks_skipped = skip_blocks
            if skip_blocks:
                _info(info, f"resuming {output}: {skip_blocks} block(s), {result.records} records "
                            f"({result.lines} lines) already done")
        writer = AppendWriter(output, flush_each=push)
        journal = JournalWriter(jpath, header if old is None else None)
    elif journalled:
        writer = (open_plain or RecordWriter)(output)
        journal = None  # written (replacing an earlier one) when the output is committed
        done_blocks: list[dict] = []
    else:
        writer = (open_plain or RecordWriter)(output)
    ok = False
    try:
        seen = {"local": 0}
        pending: deque = deque()

        def selected() -> Iterator[list[dict]]:
            for b, recs in enumerate(blocks(records, block)):
                result.input_records += len(recs)
                if b % count != index:
                    continue
                seen["local"] += 1
                if seen["local"] <= skip_blocks:
                    continue
                pending.append((b, len(recs)))
                yield recs

        if push:
            def pushed() -> Iterator[list]:
                for recs in selected():
                    process(recs, emit)
                    yield ()

            outputs = pushed()
        elif process_stream is not None:
            outputs = iter(process_stream(selected()))
        else:
            outputs = map(process, selected())
        emitted = [0]

        def emit(out: Any) -> None:
            writer.write_raw(dumps(out))
            emitted[0] += 1
        while True:
            try:
                outs = next(outputs)
            except StopIteration:
                break
            except PartialBlock as stop:
                for out in stop.outputs:
                    writer.write_raw(dumps(out))
                result.lines += len(stop.outputs) + emitted[0]
                writer.close()  # keep every finished record; the block stays unjournalled
                if journal is not None:
                    journal.close()
                ok = True
                raise stop.error from None
            b, n_recs = pending.popleft()
            n = emitted[0]
            emitted[0] = 0
            for out in outs:
                writer.write_raw(dumps(out))
                n += 1
            result.blocks += 1
            result.records += n_recs
            result.lines += n
            entry = {"block": b, "records": n_recs, "lines": n}
            if journal is not None:
                writer.flush()
                entry["bytes"] = writer.tell()
                journal.append(entry)
            elif journalled:
                done_blocks.append(entry)
            if on_block is not None:
                on_block(n_recs, n)
        local = seen["local"]
        if resume and skip_blocks > local:
            raise UsageError(f"cannot resume {output}: its journal lists {skip_blocks} finished blocks, "
                             f"but the input has only {local} for this shard")
        final = {"complete": True, "blocks": local, "records": result.records, "lines": result.lines,
                 "input_records": result.input_records}
        writer.close()
        if journal is not None:
            journal.append(final)
            journal.close()
            if count == 1:
                _remove(jpath)
        elif journalled:
            from nertools.core.atomic import write_bytes_atomic

            write_bytes_atomic(jpath, b"".join(orjson.dumps(o) + b"\n" for o in (header, *done_blocks, final)))
        ok = True
        return result
    finally:
        if not ok:
            if journal is not None:
                journal.close()
            if isinstance(writer, AppendWriter):
                writer.close()
            else:
                writer.abort()


def check_run(output: str, *, command: str, input_path: str, options: dict, block: int,
              shard: tuple[int, int] = (0, 1), resume: bool = False) -> dict | None:
    """Check a run's output target before any model loads (nothing is changed): a ``--resume`` or
    ``--shard`` run needs a file; a ``--resume`` onto a journal started with other inputs or
    options is refused, naming what differs. Returns the run header (``None``: a plain run)."""
    if not (resume or shard[1] > 1):
        return None
    if output == "-":
        raise UsageError(f"{'--resume' if resume else '--shard'} needs -o FILE (the output and its "
                         f"progress journal FILE{JOURNAL_SUFFIX} are files)")
    header = make_header(command, fingerprint(input_path), options, block=block, shard=shard)
    if resume:
        jpath = journal_path(output)
        old = Journal.read(jpath, cut=False)
        if old is not None:
            diffs = header_differences(old.header, header)
            if diffs:
                raise UsageError(f"cannot resume {output}: it was started with other inputs or options "
                                 f"({'; '.join(diffs)}); rerun with those, or remove {output} and {jpath}")
        elif os.path.exists(output) and os.path.getsize(output) > 0:
            raise UsageError(f"{output} exists but has no progress journal {jpath}: it is not the "
                             "output of an unfinished --resume run (a finished run removes its journal); "
                             "remove it or choose another -o")
    return header


def _remove(path: str | None) -> None:
    if path is None:
        return
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _info(info, msg: str) -> None:
    if info is not None:
        info(msg)
