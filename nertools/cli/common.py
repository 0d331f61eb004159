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
closed early (``| head``), and exits 130 on Ctrl-C. However the command ends early, the temporary
files of unfinished outputs are removed (:func:`nertools.core.atomic.discard_pending`).
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable, NoReturn

import click

from nertools.core.atomic import discard_pending
from nertools.errors import EXIT_FAILURE, NertoolsError
from nertools.core.jsonl import ON_ERROR_CHOICES

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so interpreter shutdown stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def fail(prog: str, message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"{prog}: error: {message}", err=True)
    sys.exit(code)


def nertools_command(prog: str) -> Callable:
    """Decorator for a click callback: uniform errors, exit codes and broken-pipe handling."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except BrokenPipeError:
                discard_pending()
                _silence_stdout()
                sys.exit(0)
            except NertoolsError as e:
                discard_pending()
                fail(prog, str(e), e.exit_code)
            except KeyboardInterrupt:
                discard_pending()
                click.echo(f"{prog}: interrupted", err=True)
                sys.exit(130)
            except MemoryError:
                discard_pending()
                fail(prog, "out of memory")
            except BaseException:
                discard_pending()
                raise

        return wrapper

    return deco


def input_argument(name: str = "input", **kw) -> Callable:
    """``INPUT`` positional argument: a JSONL file, ``.gz`` or ``-`` (stdin, the default)."""
    return click.argument(name, default="-", required=False, metavar=kw.pop("metavar", "INPUT"),
                          type=click.Path(allow_dash=True, dir_okay=False), **kw)


def output_option(**kw) -> Callable:
    return click.option("-o", "--output", default="-", show_default=True,
                        type=click.Path(allow_dash=True, dir_okay=False),
                        help=kw.pop("help", "Output JSONL file (.gz compresses); - is stdout. "
                                    "A file is replaced only when the run succeeds."), **kw)


def on_error_option() -> Callable:
    return click.option("--on-error", type=click.Choice(ON_ERROR_CHOICES), default="fail",
                        show_default=True,
                        help="A bad input record: fail (exit 65 naming file and line), skip it "
                             "(counted on stderr at the end) or warn (print each and skip).")
