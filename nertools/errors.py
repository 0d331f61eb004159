"""Exceptions shared by every nertools module, and the exit codes the commands use.

Exit codes (documented in README and nertools-format(5)):

* 0   success
* 1   failure (a runtime problem: a model that cannot load, an output that cannot be
      written, a full disk, out of memory, ...)
* 2   usage error (bad or missing options, an unknown ``--device``, an input file named on the
      command line that does not exist, is a directory or cannot be read; click's own code)
* 65  bad input data (broken JSON, not UTF-8, a record over the size limit, spans out of
      range, unknown labels, empty input); the value is ``EX_DATAERR`` from BSD's sysexits.h
* 130 interrupted (SIGINT, Ctrl-C)
* 143 terminated (SIGTERM: ``timeout``, ``kill``, ``docker stop``); 128 + 15 as a shell reports it
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DATA = 65
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class NertoolsError(Exception):
    """A problem that a command reports as one line and exit code 1."""

    exit_code = EXIT_FAILURE


class UsageError(NertoolsError):
    """A bad command-line value (``--seed Masaki``, ``--threshold x``): exit code 2, like
    click's own usage errors. Bad values read from a *file* are :class:`DataError`."""

    exit_code = EXIT_USAGE


class DataError(NertoolsError):
    """Bad input data. Carries the file name and the 1-based line number when known."""

    exit_code = EXIT_DATA

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        super().__init__(self.__str__())

    def located(self, path: str | None, line: int | None) -> "DataError":
        """Return a copy that names ``path`` and ``line`` (keeps what is already set)."""
        return type(self)(self.message, path=self.path or path, line=self.line or line)

    def __str__(self) -> str:
        where = ""
        if self.path is not None and self.line is not None:
            where = f"{self.path}:{self.line}: "
        elif self.path is not None:
            where = f"{self.path}: "
        elif self.line is not None:
            where = f"line {self.line}: "
        return f"{where}{self.message}"


class InputFileError(DataError):
    """An input file named on the command line that cannot be opened (missing, a directory,
    no permission): exit code 2 like click's own ``Path`` checks, so that the rule is one for
    every input of every command. A :class:`DataError` (it names the file) for callers that
    catch those."""

    exit_code = EXIT_USAGE


class OutputError(DataError):
    """An output that cannot be written (no such directory, no permission, a full disk):
    exit code 1, a runtime failure, not bad input. A :class:`DataError` subclass only so that
    callers written for the older "cannot write" :class:`DataError` still catch it."""

    exit_code = EXIT_FAILURE


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler of :func:`nertools.cli.common.nertools_command`: it
    unwinds like Ctrl-C (every ``with``/``finally`` clean-up runs, including code that
    handles :class:`KeyboardInterrupt` such as checkpointing) and the command exits 143."""
