"""Command-line options that several commands share, declared once (spaCy's ``_util`` idea).

Each is a decorator factory: ``@device_option()``, or ``@model_runtime_options()`` for the
usual ``--device/--dtype/--threads`` trio. ``help=`` and ``default=`` may be overridden where a
command needs another wording, never another meaning.
"""

from __future__ import annotations

from typing import Callable

import click

DTYPES = ("auto", "float32", "bfloat16", "float16")
#: Short spellings :func:`nertools.runtime.models.resolve_dtype` accepts as well.
DTYPE_ALIASES = ("fp32", "bf16", "fp16")


def _opt(*decls, **defaults) -> Callable[..., Callable]:
    def factory(**kw) -> Callable:
        return click.option(*decls, **{**defaults, **kw})

    return factory


model_option = _opt(
    "--model", required=True,
    help="Hugging Face name or local folder, a GGUF file, or an alias "
         "(all-minilm-l6-v2, smollm2-135m, gemma-3-270m).")
device_option = _opt("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
dtype_option = _opt(
    "--dtype", default="auto", show_default=True,
    type=click.Choice(DTYPES + DTYPE_ALIASES, case_sensitive=False),
    help="auto (bfloat16/float16 on GPU, float32 on CPU), float32, bfloat16, float16 "
         "(or fp32, bf16, fp16).")
threads_option = _opt("--threads", type=click.IntRange(min=1), default=None,
                      help="CPU threads for torch (default: torch's choice).")


def quiet_option(**kw) -> Callable:
    """``-q/--quiet``: no progress bars or informational lines on stderr (errors stay)."""

    def callback(ctx, param, value):
        from nertools.runtime.progress import set_quiet

        set_quiet(bool(value))  # also back off, for a second command run in the same process
        return value

    return click.option("-q", "--quiet", is_flag=True, callback=callback, expose_value=kw.pop("expose_value", True),
                        is_eager=True,
                        help=kw.pop("help", "No progress bars or informational lines on stderr."), **kw)


def labels_option(**kw) -> Callable:
    """``--labels L1,L2,...``: a comma list, given to the command as a list (``None`` when absent)."""

    def callback(ctx, param, value):
        from nertools.core.labels import parse_list

        return parse_list(value)

    return click.option("--labels", default=None, metavar=kw.pop("metavar", "L1,L2,..."),
                        callback=callback, **kw)


def model_runtime_options(fn: Callable) -> Callable:
    """``--device``, ``--dtype`` and ``--threads`` together (in that order in --help)."""
    for make in (threads_option, dtype_option, device_option):
        fn = make()(fn)
    return fn
