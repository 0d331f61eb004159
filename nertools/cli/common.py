"""What every nertools command shares: input/output options, error handling, exit codes.

A command is written as::

    @click.command(epilog=EXAMPLE)
    @input_argument()
    @output_option()
    @on_error_option()
    @quiet_option(expose_value=False)          # nertools.cli.options
    @nertools_command("ner-foo")
    def main(input, output, on_error):
        policy = ErrorPolicy(on_error)
        ...  # one call of the command's library function

:func:`nertools_command` turns :class:`~nertools.errors.NertoolsError` into a one-line
message on stderr and its exit code (a :class:`~nertools.errors.UsageError`, e.g. a
malformed ``LABEL=VALUE``, exits 2 like click's own usage errors), ends quietly when stdout is
closed early (``| head``), exits 130 on Ctrl-C and 143 on SIGTERM (``timeout``, ``kill``,
``docker stop``: the signal is turned into :class:`~nertools.errors.Terminated`, which unwinds
like Ctrl-C through every writer's clean-up), and reports a write error (a full disk,
``> /dev/full``) and running out of memory (``MemoryError``, ``torch.cuda.OutOfMemoryError``)
as one line with exit 1. However the command ends early, the temporary files of unfinished
outputs are removed (:func:`nertools.core.atomic.discard_pending`). ``NERTOOLS_DEBUG=1`` in
the environment re-raises every error instead, to show its traceback.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import sys
from typing import Callable, NoReturn

import click

from nertools.core.atomic import discard_pending
from nertools.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED, NertoolsError, Terminated
from nertools.core.jsonl import ON_ERROR_CHOICES, write_error

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: Set to 1 to get the traceback of an error instead of its one-line message.
DEBUG_ENV = "NERTOOLS_DEBUG"
OOM_HINT = "lower --batch-tokens/--batch-size (where the command has them) or give it smaller inputs"


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so interpreter shutdown stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _flush_stdout() -> None:
    """Hand what is buffered for stdout to the OS now, while errors can still be reported."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise write_error("<stdout>", e) from None


def _settle_stdout() -> None:
    """Before an error exit: flush stdout, or, if it cannot be written (``/dev/full``), point it
    at /dev/null so that interpreter shutdown does not print a second error."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        _silence_stdout()


def fail(prog: str, message: str, code: int = EXIT_FAILURE) -> NoReturn:
    _settle_stdout()
    click.echo(f"{prog}: error: {message}", err=True)
    sys.exit(code)


def is_out_of_memory(e: BaseException) -> bool:
    """``MemoryError``, or torch's out-of-memory error (checked without importing torch)."""
    if isinstance(e, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(e, RuntimeError):
        return False
    kinds = tuple(k for k in (getattr(torch, "OutOfMemoryError", None),
                              getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None))
                  if isinstance(k, type))
    return isinstance(e, kinds) or str(e).startswith(("CUDA out of memory", "MPS backend out of memory"))


def _on_sigterm(signum, frame) -> NoReturn:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM does not cut the clean-up short
    raise Terminated()


def _install_sigterm():
    """Turn SIGTERM into :class:`Terminated`; returns the previous handler (``None``: none set,
    e.g. not in the main thread)."""
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main thread of the main interpreter
        return None
    return signal.SIG_DFL if previous is None else previous


def nertools_command(prog: str) -> Callable:
    """Decorator for a click callback: uniform errors, exit codes, signals and broken pipes."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            previous = _install_sigterm()
            try:
                result = fn(*args, **kwargs)
                _flush_stdout()
                return result
            except BrokenPipeError:
                discard_pending()
                _silence_stdout()
                sys.exit(0)
            except Terminated:
                discard_pending()
                _settle_stdout()
                click.echo(f"{prog}: terminated", err=True)
                sys.exit(EXIT_TERMINATED)
            except KeyboardInterrupt:
                discard_pending()
                _settle_stdout()
                click.echo(f"{prog}: interrupted", err=True)
                sys.exit(EXIT_INTERRUPTED)
            except NertoolsError as e:
                discard_pending()
                if debugging():
                    raise
                fail(prog, str(e), e.exit_code)
            except OSError as e:  # a write no library code turned into an OutputError
                discard_pending()
                if debugging():
                    raise
                fail(prog, _os_error_message(e))
            except (MemoryError, RuntimeError) as e:
                discard_pending()
                if debugging() or not is_out_of_memory(e):
                    raise
                where = "" if isinstance(e, MemoryError) else " on the accelerator"
                fail(prog, f"out of memory{where}: {OOM_HINT}")
            except BaseException:
                discard_pending()
                raise
            finally:
                if previous is not None:
                    try:
                        signal.signal(signal.SIGTERM, previous)
                    except (ValueError, OSError):
                        pass

        return wrapper

    return deco


def _os_error_message(e: OSError) -> str:
    """One line for an OSError that reached the command: ``cannot write <stdout>: ...`` when
    standard output is what failed, else the file it names and the system's reason."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        _silence_stdout()
        if e.filename is None:
            return str(write_error("<stdout>", e))
    reason = e.strerror or str(e)
    if e.filename is not None:
        return f"{e.filename}: {reason}"
    if e.errno in _WRITE_ERRNOS:
        return f"cannot write: {reason}"
    return reason


_WRITE_ERRNOS = {getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS") if hasattr(errno, n)}


def input_argument(name: str = "input", **kw) -> Callable:
    """``INPUT`` positional argument: a JSONL file, ``.gz`` or ``-`` (stdin, the default)."""
    return click.argument(name, default="-", required=False, metavar=kw.pop("metavar", "INPUT"),
                          type=click.Path(allow_dash=True, dir_okay=False), **kw)


def output_option(**kw) -> Callable:
    """``-o/--output`` and, with it, the output form (``--output-form``/``--compact``,
    :func:`nertools.cli.options.output_form_option`): every command that writes records has
    both."""
    from nertools.cli.options import output_form_option

    output = click.option("-o", "--output", default="-", show_default=True,
                          type=click.Path(allow_dash=True, dir_okay=False),
                          help=kw.pop("help", "Output JSONL file (.gz compresses); - is stdout. "
                                      "A file is replaced only when the run succeeds."), **kw)

    def apply(fn: Callable) -> Callable:
        return output(output_form_option(fn))

    return apply


def on_error_option() -> Callable:
    return click.option("--on-error", type=click.Choice(ON_ERROR_CHOICES), default="fail",
                        show_default=True,
                        help="A bad input record: fail (exit 65 naming file and line), skip it "
                             "(counted on stderr at the end) or warn (print each and skip).")
