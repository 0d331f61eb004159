"""Command-line options that several commands share, declared once (spaCy's ``_util`` idea).

Each is a decorator factory: ``@device_option()``, or ``@model_runtime_options()`` for the
usual ``--device/--dtype/--threads`` trio. ``help=`` and ``default=`` may be overridden where a
command needs another wording, never another meaning.
"""

from __future__ import annotations

import re
from typing import Callable

import click

DTYPES = ("auto", "float32", "bfloat16", "float16")
#: Short spellings :func:`nertools.runtime.models.resolve_dtype` accepts as well.
DTYPE_ALIASES = ("fp32", "bf16", "fp16")


#: The largest count (``--k``, ``--top-k``, sizes, ...) a command accepts: beyond it a value
#: is a usage error (exit 2), not an overflow deep inside a library.
MAX_COUNT = 2**31 - 1
#: The most columns a column option (``ner-convert --token-col``) may count, either way.
MAX_COLUMNS = 1024
#: The most CPU threads ``--threads`` accepts (more only makes the thread pools fail to start).
MAX_THREADS = 1024


class Count(click.IntRange):
    """An integer in ``min..max``. A value over ``max`` is reported as too large; the help
    shows only the lower bound when the upper one is :data:`MAX_COUNT`."""

    def convert(self, value, param, ctx):
        number = click.INT.convert(value, param, ctx)
        if self.max is not None and number > self.max:
            self.fail(f"{number} is too large (at most {self.max}).", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        if self.max == MAX_COUNT:
            return f"x>={self.min}"
        return super()._describe_range()


def count_type(min: int = 1, max: int = MAX_COUNT) -> Count:
    """The click type of a count option: an integer in ``min..max`` (default ``1..MAX_COUNT``);
    anything else, e.g. ``--k 99999999999999999999``, is a usage error (exit 2)."""
    return Count(min=min, max=max)


def _opt(*decls, **defaults) -> Callable[..., Callable]:
    def factory(**kw) -> Callable:
        return click.option(*decls, **{**defaults, **kw})

    return factory


model_option = _opt(
    "--model", required=True,
    help="Hugging Face name or local folder, a GGUF file, or an alias "
         "(all-minilm-l6-v2, smollm2-135m, gemma-3-270m).")
DEVICE_RE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)", re.IGNORECASE)


def _check_device(ctx, param, value):
    """``--device`` is checked when the command line is parsed (a usage error, exit 2), before
    any model loads; whether CUDA is there is checked when the model is put on it."""
    if value is not None and not DEVICE_RE.fullmatch(value):
        raise click.BadParameter(f"unknown device {value!r} (auto, cpu, cuda, cuda:N)")
    return value


device_option = _opt("--device", default="auto", show_default=True, callback=_check_device,
                     help="auto, cpu, cuda or cuda:N.")
dtype_option = _opt(
    "--dtype", default="auto", show_default=True,
    type=click.Choice(DTYPES + DTYPE_ALIASES, case_sensitive=False),
    help="auto (bfloat16/float16 on GPU, float32 on CPU), float32, bfloat16, float16 "
         "(or fp32, bf16, fp16).")
threads_option = _opt("--threads", type=count_type(1, MAX_THREADS), default=None, metavar="N",
                      help=f"CPU threads for torch, 1-{MAX_THREADS} (default: torch's choice).")


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


def dataclass_options(cls, *, skip: tuple[str, ...] = ()) -> Callable:
    """click options for the fields of the dataclass ``cls`` (the HfArgumentParser idea): a new
    knob is one field. ``--field-name`` per field, in field order, from its type, default and
    metadata: ``help``, ``min``/``max``/``min_open`` (a range; floats are always finite),
    ``choices``; ``cli=False`` (or a name in ``skip``) leaves a field out. ``bool`` fields are
    flags; a default other than ``None`` (or ``False`` for flags) is shown in --help.
    """
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    decorators = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if meta.get("cli") is False or f.name in skip:
            continue
        kind = _base_type(hints[f.name])
        default = None if f.default is dataclasses.MISSING else f.default
        kw: dict = {"default": default, "help": meta.get("help")}
        if kind is bool:
            kw["is_flag"] = True
        else:
            kw["type"] = _click_type(kind, meta)
            kw["show_default"] = default is not None
        decorators.append(click.option("--" + f.name.replace("_", "-"), f.name, **kw))

    def apply(fn: Callable) -> Callable:
        for deco in reversed(decorators):
            fn = deco(fn)
        return fn

    return apply


def _base_type(hint):
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args and typing.get_origin(hint) is not None else hint


class FiniteFloat(click.FloatRange):
    """A float in an optional range that is never ``nan`` or ``inf`` (``--lr nan`` is a usage
    error, exit 2, and not a failure deep inside training)."""

    def convert(self, value, param, ctx):
        import math

        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        return "" if self.min is None and self.max is None else super()._describe_range()


def _click_type(kind, meta):
    if "choices" in meta:
        return click.Choice(list(meta["choices"]))
    bounds = {k: meta[k] for k in ("min", "max", "min_open") if k in meta}
    if kind is int:
        return click.IntRange(**bounds) if bounds else click.INT
    if kind is float:
        return FiniteFloat(**bounds)
    if kind is str:
        return click.STRING
    raise TypeError(f"no command-line type for {kind!r}")


def llm_client_options(fn: Callable) -> Callable:
    """The OpenAI-compatible client's options (nertools.llm.client.LLMConfig), for every command
    that talks to an LLM server: ``--base-url``, ``--timeout``, ``--retries``, ``--retry-wait``,
    ``--cache-dir``, ``--no-cache`` (in that order in --help)."""
    options = [
        click.option("--base-url", default=None,
                     help="openai: the OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1."),
        click.option("--timeout", type=FiniteFloat(0.01), default=60.0, show_default=True,
                     help="openai: seconds per request."),
        click.option("--retries", type=count_type(0), default=3, show_default=True,
                     help="openai: retries after a timeout, connection error, HTTP 429 or 5xx."),
        click.option("--retry-wait", type=FiniteFloat(0), default=1.0, show_default=True,
                     help="openai: seconds before the first retry (doubles; a longer Retry-After wins)."),
        click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
                     help="openai: response cache (default ~/.cache/nertools/llm)."),
        click.option("--no-cache", is_flag=True, help="openai: neither read nor write the cache."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


OUTPUT_FORM_CHOICES = ("canonical", "compact")  # = nertools.core.jsonl.OUTPUT_FORMS
_FORM_META = "nertools.output_form"


def output_form_option(fn: Callable) -> Callable:
    """``--output-form canonical|compact`` (default ``$NERTOOLS_OUTPUT_FORM``, else canonical)
    and its short form ``--compact``: the form in which the command writes records
    (nertools-format(5), COMPACT). Applied by :func:`nertools.cli.common.output_option`, so every
    command that writes records has it; it sets :func:`nertools.core.jsonl.set_output_form`,
    which every :class:`~nertools.core.jsonl.RecordWriter` of the run follows. Reading needs no
    option: both forms are recognised record by record."""

    def settle(ctx, param, value):
        from nertools.core.jsonl import set_output_form

        state = ctx.meta.setdefault(_FORM_META, {})
        if param.name == "compact":
            if not value:
                if "form" not in state:
                    return value
                form = state["form"]
            else:
                explicit = state.get("explicit")
                if explicit is not None and explicit != "compact":
                    raise click.BadParameter(f"--compact contradicts --output-form {explicit}")
                state["compact"] = True
                form = "compact"
        else:
            source = ctx.get_parameter_source(param.name)
            explicit = source is click.core.ParameterSource.COMMANDLINE
            if state.get("compact") and explicit and value != "compact":
                raise click.BadParameter(f"{value!r} contradicts --compact")
            if explicit:
                state["explicit"] = value
            form = "compact" if state.get("compact") else value
            state["form"] = form
        set_output_form(form)
        return value

    fn = click.option("--compact", is_flag=True, expose_value=False, callback=settle,
                      help="Short for --output-form compact.")(fn)
    return click.option(
        "--output-form", type=click.Choice(OUTPUT_FORM_CHOICES), default="canonical",
        envvar="NERTOOLS_OUTPUT_FORM", show_default=True, show_envvar=True, expose_value=False,
        callback=settle,
        help="How records are written: canonical (token objects with offsets: the interchange "
             "form) or compact (token strings, whitespace flags, spans by token index; about "
             "6x smaller and several times faster to read). Every command reads both.")(fn)
#: Options that never change a command's output bytes, left out of a run's journal (a resumed
#: run may change them): where the output goes, how it is shown, and the threads.
RUN_NEUTRAL_OPTIONS = frozenset({"input", "output", "resume", "shard", "quiet", "progress", "threads"})


def corpus_options(block_default: int, *, block_help: str | None = None) -> Callable:
    """``--resume``, ``--shard I/N`` and ``--block-records N`` of the commands that do model
    work over a corpus (nertools.core.resume, nertools.core.shard), in that order in --help."""

    def shard_callback(ctx, param, value):
        from nertools.core.shard import parse_shard
        from nertools.errors import UsageError

        try:
            return parse_shard(value)
        except UsageError as e:
            raise click.BadParameter(str(e).split(": ", 1)[-1]) from None

    options = [
        click.option("--resume", is_flag=True,
                     help="Append to -o FILE in place with a progress journal FILE.progress; a killed run "
                          "rerun with --resume continues at its first unfinished block, and the result is "
                          "the same bytes as an uninterrupted run. Other inputs or options are refused."),
        click.option("--shard", default=None, metavar="I/N", callback=shard_callback,
                     help="Do only the blocks b with b mod N = I (counted from 0); -o FILE gets a journal "
                          "FILE.progress, and ner-merge joins the N outputs into the unsharded run's bytes."),
        click.option("--block-records", type=count_type(1), default=block_default, show_default=True,
                     help=block_help or "Records per block, the unit of resume and sharding: each block is "
                                        "scored on its own, so its output bytes do not depend on the rest."),
    ]

    def apply(fn: Callable) -> Callable:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def run_options(ctx: click.Context | None = None, *, neutral: tuple[str, ...] = ()) -> dict:
    """The command's parameters that shape its output (for a run journal): every click parameter
    but :data:`RUN_NEUTRAL_OPTIONS` and ``neutral``, as JSON values."""
    ctx = ctx or click.get_current_context()
    flags = {p.name: max((o for o in p.opts if o.startswith("--")), key=len, default=p.name)
             for p in ctx.command.params}
    out = {}
    for key, value in sorted(ctx.params.items()):
        if key in RUN_NEUTRAL_OPTIONS or key in neutral:
            continue
        out[flags.get(key, key).lstrip("-")] = list(value) if isinstance(value, tuple) else value
    return out
