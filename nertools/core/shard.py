"""Shards of a corpus run and their ordered merge (``--shard I/N``, ``ner-merge``).

Records are grouped into **blocks** of ``block`` consecutive records, in input order (the
records the reader yields: a bad record skipped by ``--on-error skip`` takes no place).
Block ``b`` (0-based) belongs to shard ``b mod N``. Every shard reads (and checks) the whole
input and does the model work of its blocks only, so N processes split the work, and
each block's output is the same bytes as in a single run (:mod:`nertools.core.resume`).

A shard run writes its output and a progress journal (``FILE.progress``: the run's header and
one line per block with the block's number and line count). :func:`merge_shards` checks that
the journals describe the N shards of one run (same command, input, options, block size;
each shard ``0..N-1`` exactly once, each complete) and writes the blocks back in block order:
the bytes of the unsharded run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import IO, Iterator, Sequence

from nertools.core.resume import Journal, blocks, header_differences, journal_path  # noqa: F401 (blocks: re-exported)
from nertools.errors import DataError, UsageError


SHARD_RE = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N`` (``None`` -> ``(0, 1)``: the whole input)."""
    if spec is None:
        return (0, 1)
    m = SHARD_RE.fullmatch(spec)
    if not m:
        raise UsageError(f"--shard {spec!r}: expected I/N, e.g. 0/4 (shard I of N, counted from 0)")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or i >= n:
        raise UsageError(f"--shard {spec!r}: need 0 <= I < N")
    return (i, n)


def shard_of_block(block: int, count: int) -> int:
    return block % count


@dataclass
class ShardFile:
    path: str
    index: int
    count: int
    header: dict
    blocks: list[dict]
    complete: dict


def read_shard(path: str) -> ShardFile:
    """The journal of a shard output, checked to be complete."""

    jpath = journal_path(path)
    if not os.path.exists(path):
        from nertools.errors import InputFileError

        raise InputFileError("cannot open: No such file or directory", path=path)
    j = Journal.read(jpath, cut=False)
    if j is None:
        raise DataError(f"no progress journal {jpath}: not the output of a --shard run "
                        "(or its run did not finish)", path=path)
    if j.complete is None:
        raise UsageError(f"{path}: its shard run did not finish ({len(j.blocks)} block(s) in {jpath}); "
                         "rerun it with --resume")
    index, count = j.header.get("shard", [0, 1])
    return ShardFile(path, index, count, j.header, j.blocks, j.complete)


def check_shards(shards: Sequence[ShardFile]) -> list[ShardFile]:
    """The shards in index order, or a :class:`UsageError` saying what is missing, doubled or
    from another run."""

    if not shards:
        raise UsageError("no shard files given")
    first = shards[0]
    n = first.count
    for s in shards[1:]:
        diffs = [d for d in header_differences(first.header, s.header) if not d.startswith("shard ")]
        if s.count != n:
            diffs.insert(0, f"{n} shards -> {s.count} shards")
        if diffs:
            raise UsageError(f"{s.path} is not a shard of the same run as {first.path}: {'; '.join(diffs)}")
    by_index: dict[int, ShardFile] = {}
    for s in shards:
        if s.index in by_index:
            raise UsageError(f"shard {s.index}/{n} is given twice: {by_index[s.index].path} and {s.path}")
        by_index[s.index] = s
    missing = [i for i in range(n) if i not in by_index]
    if missing:
        raise UsageError(f"missing shard(s) {', '.join(f'{i}/{n}' for i in missing)} of {n} "
                         f"(given: {', '.join(sorted(f'{i}/{n}' for i in by_index))})")
    totals = {s.complete.get("input_records") for s in shards}
    if len(totals) != 1:
        sizes = ", ".join(f"{s.path}: {s.complete.get('input_records')}" for s in shards)
        raise UsageError(f"the shards read inputs of different sizes ({sizes} records)")
    ordered = [by_index[i] for i in range(n)]
    total = totals.pop()
    block = first.header["block"]
    nblocks = -(-total // block) if total else 0
    for s in ordered:
        want = [b for b in range(nblocks) if b % n == s.index]
        got = [e["block"] for e in s.blocks]
        if got != want:
            raise DataError(f"its journal lists blocks {got[:5]}... but shard {s.index}/{n} of "
                            f"{total} records has blocks {want[:5]}...", path=s.path)
    return ordered


def merge_shards(paths: Sequence[str], out: IO[bytes] | None = None, *, write=None) -> int:
    """Merge the outputs of the ``--shard`` runs at ``paths`` (any order) block by block into
    ``write(bytes)`` (or the binary file ``out``); returns the lines written. Each shard file
    must hold exactly the lines its journal counts."""
    shards = check_shards([read_shard(p) for p in paths])
    if write is None:
        assert out is not None
        write = out.write
    n = len(shards)
    readers = [_lines(s.path) for s in shards]
    blocks_of = [iter(s.blocks) for s in shards]
    total_blocks = sum(len(s.blocks) for s in shards)
    lines = 0
    for b in range(total_blocks):
        k = b % n
        entry = next(blocks_of[k])
        for _ in range(entry["lines"]):
            line = next(readers[k], None)
            if line is None:
                raise DataError(f"ends before its journal's block {entry['block']} "
                                f"({entry['lines']} lines) is complete", path=shards[k].path)
            write(line)
            lines += 1
    for s, reader in zip(shards, readers):
        if next(reader, None) is not None:
            raise DataError(f"has more lines than its journal counts ({s.complete.get('lines')})", path=s.path)
    if lines == 0:
        raise DataError("no records (empty input)", path=shards[0].path)
    return lines


def _lines(path: str) -> Iterator[bytes]:
    """The non-blank lines of a shard output as they are (bytes, with their newline), each
    checked to be one valid record (nertools.core.jsonl's limits, nertools.core.record's
    checks and file:line errors)."""
    import orjson

    from nertools.core.jsonl import _json_error, display_name, max_record_bytes, raw_lines, too_long
    from nertools.core.record import normalize_record

    for lineno, raw in raw_lines(path):
        if raw is None:
            raise too_long(path, lineno, max_record_bytes())
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise _json_error(raw, e, path, lineno) from None
        try:  # a valid record in either form (the line itself is written as it is)
            normalize_record(obj, default_id=str(lineno))
        except DataError as e:
            raise e.located(display_name(path), lineno) from None
        yield raw.rstrip(b"\r\n") + b"\n"  # CRLF (a shard edited elsewhere) is written as LF
