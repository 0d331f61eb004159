"""Atomic writes: a file or directory appears complete at its final path, or not at all.

Every writer of the toolkit goes through here (JSONL outputs, dictionaries, the phrase
index, the LLM cache, model directories, the GGUF cache), so that the rules hold once:

- the new content is written to a temporary sibling (same directory, same file system) and
  renamed into place, so a reader sees the old complete target or the new complete one;
- the final file mode follows the umask, as ``open()`` would give (``0o666 & ~umask`` for
  files, ``0o777 & ~umask`` for directories) and not the private ``0600``/``0700`` of
  ``tempfile``; a replaced file keeps no mode of the temporary;
- ``fsync=True`` flushes the data (and for directories every file in them) before the rename.

``atomic_file(path)`` is a context manager yielding a binary file object; the target is
replaced when the block ends normally and the temporary removed when it raises.

Every temporary made here is remembered until it is committed or discarded, so that a
command can remove what is left by :func:`discard_pending` when it ends early: a Ctrl-C
can land between a writer's last line and its clean-up (at the entry of ``__exit__``),
where no ``except``/``finally`` of the writer runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import orjson

TEMP_PREFIX = ".tmp-"

#: Temporary files and directories of this process not yet committed or discarded
#: (absolute paths).
_PENDING: set[str] = set()


def _key(path: str | os.PathLike) -> str:
    return os.path.abspath(os.fspath(path))


def current_umask() -> int:
    """The process umask (read by setting and restoring it: the only portable way)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    return 0o777 & ~current_umask()


def is_special_file(path: str | os.PathLike) -> bool:
    """True for an existing target that is not a regular file or directory (``/dev/null``,
    ``/dev/stdout``, a FIFO): it is written in place, never replaced by a rename (which, run
    as root, would turn ``/dev/null`` into a regular file)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def final_target(path: str | os.PathLike) -> str:
    """The file a write to ``path`` replaces: ``path`` itself, or for a symbolic link the file it
    points to (resolved, even when it does not exist yet), so that the link stays a link."""
    return os.path.realpath(path) if os.path.islink(path) else os.fspath(path)


def temp_file_beside(path: str | os.PathLike, suffix: str = ".part") -> tuple[int, str]:
    """``(fd, name)`` of a new temporary file beside ``path`` (beside the file a symbolic link
    points to, see :func:`final_target`), with the umask's mode."""
    target = Path(final_target(path))
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{target.name}.", suffix=suffix, dir=directory)
    _PENDING.add(_key(tmp))
    try:
        os.fchmod(fd, file_mode())
    except OSError:
        pass
    return fd, tmp


def commit_file(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished temporary file onto ``path`` (onto its target when ``path`` is a
    symbolic link: :func:`final_target`)."""
    os.replace(tmp, final_target(path))
    _PENDING.discard(_key(tmp))


def discard(tmp: str | os.PathLike | None) -> None:
    """Remove a temporary file or directory, ignoring one that is already gone."""
    if tmp is None:
        return
    _PENDING.discard(_key(tmp))
    p = Path(tmp)
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass


def discard_pending() -> None:
    """Remove every temporary file or directory made here and not yet committed or
    discarded. Commands call it when they end by an error or an interrupt."""
    for tmp in sorted(_PENDING):
        discard(tmp)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[IO[bytes]]:
    """Write ``path`` atomically: ``with atomic_file(p) as fh: fh.write(b"...")``. A special
    file (:func:`is_special_file`: a device, a FIFO) is written in place."""
    if is_special_file(path):
        with open(path, "wb") as fh:
            yield fh
        return
    fd, tmp = temp_file_beside(path)
    fh = os.fdopen(fd, "wb")
    try:
        yield fh
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())
        fh.close()
        commit_file(tmp, path)
    except BaseException:
        fh.close()
        discard(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> None:
    with atomic_file(path, fsync=fsync) as fh:
        fh.write(data)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: bool = True, fsync: bool = False) -> None:
    """``obj`` as JSON (orjson; numpy values allowed), written atomically."""
    opts = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if indent else 0)
    write_bytes_atomic(path, orjson.dumps(obj, option=opts) + b"\n", fsync=fsync)


def temp_dir_beside(target: str | os.PathLike) -> Path:
    """A new empty directory beside ``target`` (created with the umask's mode)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{TEMP_PREFIX}", dir=target.parent))
    _PENDING.add(_key(tmp))
    try:
        os.chmod(tmp, dir_mode())
    except OSError:
        pass
    return tmp


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync every regular file directly in ``path``."""
    for f in Path(path).iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def replace_dir(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the complete directory ``tmp`` to ``target`` by renames (same file system).

    An existing ``target`` is first renamed aside and deleted after the swap: at every
    moment ``target`` is either the old complete directory, absent, or the new one.
    """
    tmp, target = Path(tmp), Path(target)
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.rename(target, old)
        os.rename(tmp, target)
        _PENDING.discard(_key(tmp))
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)
        _PENDING.discard(_key(tmp))


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Build a directory atomically: ``with atomic_dir(out) as tmp: (tmp / "x").write_bytes(...)``.

    On normal exit ``tmp`` replaces ``target`` (see :func:`replace_dir`); on an exception
    ``tmp`` is removed and ``target`` is untouched.
    """
    tmp = temp_dir_beside(target)
    try:
        yield tmp
        if fsync:
            fsync_dir(tmp)
        replace_dir(tmp, target)
    except BaseException:
        discard(tmp)
        raise
