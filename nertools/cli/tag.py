"""ner-tag: apply a trained tagger to a stream of records."""

from __future__ import annotations

import click

from nertools.core.jsonl import ErrorPolicy
from nertools.cli.common import (CONTEXT_SETTINGS, input_argument, nertools_command,
                                 on_error_option, output_option)
from nertools.cli.options import (FiniteFloat, corpus_options, model_option, model_runtime_options, quiet_option,
                                  run_options)
from nertools.core.jsonl import read_records

EXAMPLE = """\b
Examples:
  ner-tag --model tagger corpus.jsonl -o tagged.jsonl
  echo '{"text": "Masaki Yoshida visited Singapore."}' | ner-tag --model tagger
  ner-tag --model tagger --threshold 0.8 dev.jsonl | ner-eval --gold dev.jsonl --pred -
  ner-tag --model tagger corpus.jsonl -o tagged.jsonl --resume      # rerun the same after a kill
  ner-tag --model tagger corpus.jsonl --shard 1/4 -o part1.jsonl    # then: ner-merge part*.jsonl
"""


@click.command("ner-tag", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@input_argument()
@output_option()
@model_option(type=click.Path(file_okay=False), help="Model directory written by ner-selftrain.")
@click.option("--threshold", default=0.0, show_default=True, type=FiniteFloat(0, 1),
              help="Drop predicted spans whose score (mean probability of their tags) is lower.")
@click.option("--max-tokens", default=8192, show_default=True, type=click.IntRange(16),
              help="Token budget of a batch (batch size x padded length).")
@click.option("--chunk", default=512, show_default=True, type=click.IntRange(1),
              help="Records read ahead and batched together (output keeps input order).")
@model_runtime_options
@corpus_options(512)
@quiet_option(expose_value=False)
@on_error_option()
@nertools_command("ner-tag")
def main(input, output, model, threshold, max_tokens, chunk, device, dtype, threads, resume, shard, block_records,
         on_error):
    """Tag records with a trained tagger: each record's `spans` is replaced by the predicted
    entities, {"start","end","token_start","token_end","label","score","source":"ner-tag"}.

    Records are streamed, batched by --max-tokens, and written in input order with every
    other field kept. Sentences longer than the model window are split into overlapping
    windows and merged back (each word is taken from the window where it has most context).
    A progress bar counts the records on stderr (--quiet: none).
    """
    from nertools.runtime.models import set_threads
    from nertools.runtime.progress import log, progress
    from nertools.tagging.tagger import Tagger

    from nertools.core.resume import check_run, run_blocks

    set_threads(threads)
    policy = ErrorPolicy(on_error)
    header = check_run(output, command="ner-tag", input_path=input, options=run_options(), block=block_records,
                       shard=shard, resume=resume)
    tagger = Tagger.load(model, device=device, dtype=dtype)
    with progress(desc="ner-tag", unit="rec") as bar:
        run_blocks(read_records(input, policy=policy),
                   lambda block: tagger.tag(block, threshold=threshold, max_tokens=max_tokens, chunk=chunk),
                   output=output, command="ner-tag", input_path=input, options=header and header["options"],
                   block=block_records, shard=shard, resume=resume, header=header,
                   on_block=lambda recs, lines: bar.update(recs), info=lambda m: log(m, prog="ner-tag"))
    policy.report("ner-tag")
