"""ner-divscore: score candidate spans against seed entities with a masked or causal LM."""

from __future__ import annotations

import click

from nertools.cli.common import (CONTEXT_SETTINGS, input_argument, make_policy, nertools_command,
                                 on_error_option, output_option)
from nertools.errors import DataError, NertoolsError
from nertools.core.jsonl import RecordWriter, read_records

EXAMPLE = """\b
Examples:
  ner-spans corpus.jsonl | ner-divscore --model roberta-large \\
      --seed PER="Masaki Yoshida" --seed LOC=Singapore > scored.jsonl
  ner-divscore --seeds examples/conll_seeds.tsv --model gemma-3-270m cands.jsonl -o scored.jsonl
  ner-divscore --method official --seed PER="Masaki Yoshida" cands.jsonl   # the released X-NER code
  ner-divscore --method prompt --label-word MISC=nationality --seeds seeds.tsv cands.jsonl
"""

METHOD_CHOICES = ("2way", "1way", "cosine", "prompt", "official")


def _label_words(specs, seeds):
    from dataclasses import replace

    words = {}
    for spec in specs:
        if "=" not in spec:
            raise DataError(f"--label-word {spec!r} is not of the form LABEL=WORD")
        label, word = (x.strip() for x in spec.split("=", 1))
        if not word:
            raise DataError(f"--label-word {spec!r} has an empty word")
        words[label] = word
    known = {s.label for s in seeds}
    unknown = sorted(set(words) - known)
    if unknown:
        raise DataError(f"--label-word for label(s) without a seed: {', '.join(unknown)} "
                        f"(seeded labels: {', '.join(sorted(known))})")
    return [replace(s, label_word=words.get(s.label, s.label_word)) for s in seeds]


def build_scorer(lm, seeds, *, method, template, temperature, batch_tokens, context, causal_rows,
                 progress, start_token="auto"):
    """The scorer for ``lm``'s kind: :class:`MaskedDivergenceScorer` or ``CausalDivergenceScorer``."""
    from nertools.runtime.models import CAUSAL

    if lm.kind == CAUSAL:
        if method == "official":
            raise NertoolsError("--method official reproduces the released masked-LM code; "
                                "use a masked LM (e.g. roberta-large) or another method")
        try:
            from nertools.xner.causal import CausalDivergenceScorer
        except ImportError as e:
            raise NertoolsError(f"causal-LM scoring is not available: {e}") from None
        kwargs = {"method": method, "batch_tokens": batch_tokens, "rows": causal_rows,
                  "progress": progress, "start_token": start_token}
        if temperature is not None:
            kwargs["temperature"] = temperature
        if template is not None:
            kwargs["prompt_template" if method == "prompt" else "template"] = template
        return CausalDivergenceScorer(lm, seeds, **kwargs)
    from nertools.xner.masked import MaskedDivergenceScorer

    return MaskedDivergenceScorer(lm, seeds, method=method, template=template,
                                  temperature=2.0 if temperature is None else temperature,
                                  context=context, batch_tokens=batch_tokens, progress=progress)


@click.command("ner-divscore", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@input_argument()
@output_option()
@click.option("--seed", "seed_specs", multiple=True, metavar="LABEL=TEXT",
              help="A seed entity, e.g. PER=\"Masaki Yoshida\" (repeat for each label).")
@click.option("--seeds", "seed_files", multiple=True, type=click.Path(dir_okay=False),
              help="Seeds file: LABEL<TAB>SEED[<TAB>LABEL WORD] lines or JSONL.")
@click.option("--model", default="roberta-large", show_default=True,
              help="Hugging Face name, local folder, GGUF file or alias (smollm2-135m, gemma-3-270m). "
                   "Masked vs causal is read from its config.")
@click.option("--method", type=click.Choice(METHOD_CHOICES), default="2way", show_default=True,
              help="2way: sentence + template divergence; 1way: sentence test only; cosine: "
                   "1 - cosine similarity; prompt: -log p(label word) in a label prompt; official: "
                   "the released X-NER code exactly (masked LMs).")
@click.option("--template", default=None,
              help="Template of the template test ([LABEL] = label word, [SEED] = seed or span). "
                   "Default: masked 2way \"The [LABEL]: [SEED]\", official \"The [LABEL] name: [SEED]\", "
                   "causal \"[SEED] is a/an [LABEL] name\". With --method prompt: the prompt.")
@click.option("--label-word", "label_word_specs", multiple=True, metavar="LABEL=WORD",
              help="What templates say for a label (default: PER person, LOC location, ...).")
@click.option("--temperature", type=float, default=None,
              help="Softmax temperature [default: 2, as released, for the divergence methods "
                   "(also measured best with causal LMs); 1 for the causal prompt method].")
@click.option("--context", type=click.Choice(["neighbours", "full"]), default="neighbours",
              show_default=True,
              help="Masked LMs, sentence test: mask the tokens next to the span (the released "
                   "'fast' mode) or every context token (its default mode).")
@click.option("--causal-rows", type=click.Choice(["next", "all"]), default="next", show_default=True,
              help="Causal LMs, sentence test: the position right after the span only, or every "
                   "right-context position.")
@click.option("--start-token", default="auto", show_default=True,
              help="Causal LMs: the token put before every sequence. auto = the tokenizer's own "
                   "leading special tokens, else <|endoftext|>, else BOS, else EOS; '' = none.")
@click.option("--batch-tokens", type=click.IntRange(min=16), default=None,
              help="Token budget of one forward pass (rows x padded length) "
                   "[default: 8192 masked, 2048 causal].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--dtype", default="auto", show_default=True,
              help="auto (bfloat16/float16 on GPU, float32 on CPU), float32, bfloat16, float16.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for torch (default: torch's choice).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress with spans/s on stderr.")
@on_error_option()
@nertools_command("ner-divscore")
def main(input, output, seed_specs, seed_files, model, method, template, label_word_specs,
         temperature, context, causal_rows, start_token, batch_tokens, device, dtype, threads, progress,
         on_error):
    """Score every candidate span (from ner-spans) against one seed entity per label.

    Adds "scores": {LABEL: float} to each candidate, LOWER = MORE LIKE THE SEED (a
    divergence; cosine is stored as 1 - cos, prompt as -log p). Everything else is kept.
    Records stream through in input order.
    """
    from nertools.runtime.models import MASKED, load_lm, set_threads
    from nertools.xner.seeds import collect_seeds

    if temperature is not None and not temperature > 0:
        raise click.BadParameter("must be > 0", param_hint="--temperature")
    seeds = _label_words(label_word_specs, collect_seeds(seed_specs, seed_files))
    set_threads(threads)
    try:  # keep stderr to one progress line
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
    lm = load_lm(model, device=device, dtype=dtype)
    if batch_tokens is None:
        batch_tokens = 8192 if lm.kind == MASKED else 2048
    scorer = build_scorer(lm, seeds, method=method, template=template, temperature=temperature,
                          batch_tokens=batch_tokens, context=context, causal_rows=causal_rows,
                          progress=progress, start_token=start_token)
    policy = make_policy(on_error)
    with RecordWriter(output) as out:
        for rec in scorer.score_records(read_records(input, policy=policy)):
            out.write(rec)
    policy.report("ner-divscore")
