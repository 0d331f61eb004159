"""Progress bars and log lines on stderr, one switch for all of them.

Data goes to stdout; everything a person reads goes to stderr through here. ``--quiet``
on every command calls :func:`set_quiet` (progress bars and informational lines off;
errors and the final one-line summary stay). Library users get progress only when they
ask for it (``enabled=True``) or leave it to the command-line default.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

_QUIET = False


def set_quiet(quiet: bool = True) -> None:
    """Turn progress bars and :func:`log` lines off (``--quiet``) or back on."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    return _QUIET


class NoProgress:
    """The do-nothing stand-in for a tqdm bar (same methods the toolkit uses)."""

    n = 0

    def __init__(self, iterable: Iterable | None = None, **_: Any):
        self._it = iterable

    def __iter__(self):
        return iter(self._it if self._it is not None else ())

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *_: Any, **__: Any) -> None:
        pass

    def set_postfix_str(self, *_: Any, **__: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
             unit: str = "it", enabled: bool = True, **kw: Any):
    """A tqdm bar on stderr, or :class:`NoProgress` when disabled or ``--quiet``."""
    if not enabled or _QUIET:
        return NoProgress(iterable)
    from tqdm import tqdm

    kw.setdefault("mininterval", 1.0)
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, **kw)


def log(message: str, *, prog: str | None = None) -> None:
    """One informational line on stderr (suppressed by ``--quiet``)."""
    if _QUIET:
        return
    print(f"{prog}: {message}" if prog else message, file=sys.stderr, flush=True)


def quiet_transformers() -> None:
    """Keep transformers' load reports and download bars off stderr."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
