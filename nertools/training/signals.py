"""SIGINT and SIGTERM during training: both stop the run the same way, never in a write.

``timeout``, batch schedulers and ``docker stop`` send SIGTERM, whose default action kills
the process on the spot and leaves temporary directories behind. While a
:class:`SignalGuard` is active (the whole of :meth:`nertools.training.Trainer.fit`):

* SIGTERM behaves like Ctrl-C: it raises :class:`KeyboardInterrupt` where the run is (a
  handler installed before, e.g. by the command wrapper, is called instead), so every
  ``with``/``finally`` cleans up and the command exits 130 with one line;
* inside :meth:`SignalGuard.critical` (writing a checkpoint or the model directory and
  renaming it into place) both signals are held back and acted on when the block ends, so
  the checkpoint on disk is always the previous complete one or the new complete one.

The handlers are only installed in the main thread (Python runs signal handlers there);
elsewhere the guard changes nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalGuard:
    """``with SignalGuard() as guard: ... with guard.critical(): write()`` (see the module doc)."""

    def __init__(self):
        self._depth = 0
        self._pending: tuple | None = None
        self._previous: dict = {}

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                try:
                    self._previous[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):  # pragma: no cover - embedded interpreters
                    pass
        return self

    def __exit__(self, *exc) -> bool:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
        return False

    def _handle(self, signum, frame) -> None:
        if self._depth:
            if self._pending is None:
                self._pending = (signum, frame)
            return
        self._deliver(signum, frame)

    def _deliver(self, signum, frame) -> None:
        previous = self._previous.get(signum)
        if previous is signal.SIG_IGN:
            return
        if callable(previous):
            previous(signum, frame)  # Python's SIGINT handler raises KeyboardInterrupt
            return
        raise KeyboardInterrupt  # SIGTERM's default would kill the process without cleanup

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A block that SIGINT/SIGTERM do not interrupt: a signal received inside takes
        effect when the (outermost) block ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending is not None:
                signum, frame = self._pending
                self._pending = None
                self._deliver(signum, frame)
