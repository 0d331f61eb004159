"""ner-divscore: score candidate spans against seed entities with a masked or causal LM."""

from __future__ import annotations

import click

from nertools.cli.common import (CONTEXT_SETTINGS, input_argument, nertools_command, on_error_option,
                                 output_option)
from nertools.cli.options import (FiniteFloat, corpus_options, count_type, model_option, model_runtime_options,
                                  quiet_option, run_options)
from nertools.core.jsonl import ErrorPolicy
from nertools.core.labels import parse_key_values
from nertools.core.resume import check_run, run_blocks
from nertools.runtime.models import CAUSAL, MASKED
from nertools.runtime.progress import is_quiet, log
from nertools.runtime.progress import progress as _progress
from nertools.xner.fast import CASCADE_METHODS, DEFAULT_CASCADE_KEEP, QUANTIZE
from nertools.xner.multiseed import COMBINE, DEFAULT_COMBINE
from nertools.xner.scoring import (CAUSAL_ROWS, CONTEXTS, DEFAULT_MODEL, METHODS, block_scorer,
                                   check_fast_options, scorer_default)

EXAMPLE = """\b
Examples:
  ner-spans corpus.jsonl | ner-divscore --model roberta-large \\
      --seed PER="Masaki Yoshida" --seed LOC=Singapore > scored.jsonl
  ner-divscore --seeds examples/conll_seeds.tsv --model gemma-3-270m cands.jsonl -o scored.jsonl
  ner-divscore --seeds examples/conll_seeds.tsv --seed ORG=Microsoft --seed ORG="United Nations" \
      cands.jsonl > scored.jsonl      # several seeds for ORG: the closest one decides
  ner-divscore --method official --seed PER="Masaki Yoshida" cands.jsonl   # the released X-NER code
  ner-divscore --method prompt --label-word MISC=nationality --seeds seeds.tsv cands.jsonl
  ner-divscore --dtype bfloat16 --cascade 1way --seeds examples/conll_seeds.tsv \
      --model gemma-3-270m cands.jsonl > scored.jsonl        # fast mode, 3.7x (README)
  ner-divscore --seeds seeds.tsv --model gemma-3-270m cands.jsonl -o scored.jsonl --resume
  ner-divscore --seeds seeds.tsv cands.jsonl --shard 0/2 -o s0.jsonl   # and --shard 1/2 -o s1.jsonl
  ner-merge s0.jsonl s1.jsonl -o scored.jsonl                           # = the unsharded run
  ner-divscore --seeds seeds.tsv cands.jsonl --backend ray -o scored.jsonl
"""

#: Records per block (--block-records): the unit of --resume, --shard and --backend ray. Each block
#: is scored by a fresh scorer, so a kill loses at most this many records of work.
DIVSCORE_BLOCK_RECORDS = 256


@click.command("ner-divscore", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@input_argument()
@output_option()
@click.option("--seed", "seed_specs", multiple=True, metavar="LABEL=TEXT",
              help="A seed entity, e.g. PER=\"Masaki Yoshida\" (repeat for each label; a label may "
                   "have several seeds, combined by --seed-combine).")
@click.option("--seeds", "seed_files", multiple=True, type=click.Path(dir_okay=False),
              help="Seeds file: LABEL<TAB>SEED[<TAB>LABEL WORD] lines or JSONL.")
@click.option("--seed-combine", type=click.Choice(COMBINE), default=DEFAULT_COMBINE, show_default=True,
              help="Labels with several seeds: each seed is scored on its own; the label's score is "
                   "the min of their divergences (the most similar seed decides) or their mean. The "
                   "per-seed scores are kept in \"seed_scores\".")
@model_option(required=False, default=DEFAULT_MODEL, show_default=True,
              help="Hugging Face name, local folder, GGUF file or alias (smollm2-135m, gemma-3-270m). "
                   "Masked vs causal is read from its config.")
@click.option("--method", type=click.Choice(METHODS), default="2way", show_default=True,
              help="2way: sentence + template divergence; 1way: sentence test only; cosine: "
                   "1 - cosine similarity; prompt: -log p(label word) in a label prompt; official: "
                   "the released X-NER code exactly (masked LMs).")
@click.option("--template", default=None,
              help="Template of the template test ([LABEL] = label word, [SEED] = seed or span). "
                   "Default: masked 2way \"The [LABEL]: [SEED]\", official \"The [LABEL] name: [SEED]\", "
                   "causal \"[SEED] is a/an [LABEL] name\". With --method prompt: the prompt.")
@click.option("--label-word", "label_word_specs", multiple=True, metavar="LABEL=WORD",
              help="What templates say for a label (default: PER person, LOC location, ...).")
@click.option("--temperature", type=FiniteFloat(min=0, min_open=True), default=None,
              help=f"Softmax temperature [default: {scorer_default(MASKED, 'temperature'):g}, as released, "
                   f"for the divergence methods (also measured best with causal LMs); 1 for the "
                   f"causal prompt method].")
@click.option("--context", type=click.Choice(CONTEXTS), default="neighbours",
              show_default=True,
              help="Masked LMs, sentence test: mask the tokens next to the span (the released "
                   "'fast' mode) or every context token (its default mode).")
@click.option("--causal-rows", type=click.Choice(CAUSAL_ROWS), default="next", show_default=True,
              help="Causal LMs, sentence test: the position right after the span only, or every "
                   "right-context position.")
@click.option("--start-token", default="auto", show_default=True,
              help="Causal LMs: the token put before every sequence. auto = the tokenizer's own "
                   "leading special tokens, else <|endoftext|>, else BOS, else EOS; '' = none.")
@click.option("--batch-tokens", type=count_type(16), default=None,
              help=f"Token budget of one forward pass (rows x padded length) "
                   f"[default: {scorer_default(MASKED, 'batch_tokens')} masked, "
                   f"{scorer_default(CAUSAL, 'batch_tokens')} causal].")
@click.option("--cascade", type=click.Choice(CASCADE_METHODS), default=None,
              help="Fast mode: rank every candidate with this cheap method, re-score only the best "
                   "--cascade-keep fraction per label with --method (2way); the others get scores "
                   "ranked after those, in cheap-score order. The cascade ranks within each block of "
                   "--block-records records (raise it to rank over more). Default: off (exact scores for every candidate). "
                   "With --dtype bfloat16 the measured fast mode (README, \"Fast scoring mode\").")
@click.option("--cascade-keep", type=FiniteFloat(min=0, min_open=True, max=1), default=DEFAULT_CASCADE_KEEP,
              show_default=True, metavar="F",
              help="With --cascade: fraction (0 < F <= 1) of candidates per label re-scored exactly.")
@click.option("--quantize", type=click.Choice(QUANTIZE), default="none", show_default=True,
              help="CPU: int8 dynamic quantisation of the linear layers (int8: the body, the LM "
                   "head stays float32; int8-all: the head too). Measured to reorder the ranking (README); "
                   "bfloat16 is as fast and keeps it.")
@click.option("--cascade-quantize", type=click.Choice(QUANTIZE), default="none", show_default=True,
              help="With --cascade: run the cheap pass on an int8 copy of the model (CPU); the "
                   "exact pass keeps the model as loaded. Measured not to pay (README).")
@model_runtime_options
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress with spans/s on stderr (--quiet turns it off too).")
@corpus_options(DIVSCORE_BLOCK_RECORDS)
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: an actor pool of scorers on Ray (pip install 'nertools[ray]'), "
                   "one per GPU, else one per CPU slot; the same bytes as local.")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="ray: the cluster to join (default: RAY_ADDRESS, else a local Ray started for the run).")
@click.option("--ray-actors", type=count_type(1), default=None, metavar="N",
              help="ray: scorer actors (default: one per GPU, else one per CPU of the cluster).")
@on_error_option()
@quiet_option(expose_value=False)
@nertools_command("ner-divscore")
def main(input, output, seed_specs, seed_combine, seed_files, model, method, template, label_word_specs,
         temperature, context, causal_rows, start_token, batch_tokens, cascade, cascade_keep, quantize,
         cascade_quantize, device, dtype, threads, progress, resume, shard, block_records, backend, ray_address,
         ray_actors, on_error):
    """Score every candidate span (from ner-spans) against the seed entities of each label.

    Adds "scores": {LABEL: float} to each candidate, LOWER = MORE LIKE THE SEED (a
    divergence; cosine is stored as 1 - cos, prompt as -log p). Everything else is kept.
    Records stream through in input order, scored in blocks of --block-records (with
    --cascade: each block is written once all of it has been ranked).
    """
    from nertools.runtime.models import set_threads
    from nertools.runtime.progress import quiet_transformers
    from nertools.xner.candidates import read_candidates
    from nertools.xner.seeds import collect_seeds

    seeds = collect_seeds(seed_specs, seed_files, several=True)
    label_words = parse_key_values(label_word_specs, option="--label-word", form="LABEL=WORD")
    set_threads(threads)
    quiet_transformers()  # keep stderr to one progress line
    policy = ErrorPolicy(on_error)
    options = dict(seed_combine=seed_combine, method=method, template=template, temperature=temperature,
                   batch_tokens=batch_tokens,
                   context=context, causal_rows=causal_rows, start_token=start_token)
    check_fast_options(method, cascade, cascade_keep, quantize, cascade_quantize)
    if cascade is not None:
        options.update(cascade=cascade, cascade_keep=cascade_keep, cascade_quantize=cascade_quantize)
    if quantize != "none":
        options.update(quantize=quantize)
    header = check_run(output, command="ner-divscore", input_path=input, block=block_records, shard=shard,
                       resume=resume, options=run_options(neutral=("backend", "ray_address", "ray_actors")))
    records = read_candidates(input, policy)
    if backend == "ray":
        from nertools.xner.ray_scoring import RayBlockScorer

        pool = RayBlockScorer(seeds, model=model, label_words=label_words, device=device, dtype=dtype,
                              threads=threads, address=ray_address, actors=ray_actors, **options)
        stream, process = pool.map, None
    else:
        score = block_scorer(seeds, model=model, label_words=label_words, device=device, dtype=dtype, **options)
        stream, process = None, score
    try:
        with _progress(unit="span", desc="ner-divscore", enabled=progress and not is_quiet()) as bar:
            run_blocks(records, process, process_stream=stream, output=output, command="ner-divscore",
                       input_path=input, options=header and header["options"], block=block_records, shard=shard,
                       resume=resume, header=header, dumps=_counting_dumps(bar),
                       info=lambda m: log(m, prog="ner-divscore"))
    finally:
        if backend == "ray":
            pool.shutdown()
    policy.report("ner-divscore")


def _counting_dumps(bar):
    """The JSONL line of a scored record, counting its spans on the progress bar."""
    from nertools.core.jsonl import dumps

    def line(rec):
        bar.update(len(rec.get("candidates") or ()))
        return dumps(rec)

    return line
