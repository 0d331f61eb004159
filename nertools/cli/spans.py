"""ner-spans: add X-NER candidate spans to each record."""

from __future__ import annotations

import sys

import click

from nertools.cli.common import (CONTEXT_SETTINGS, input_argument, nertools_command, on_error_option,
                                 output_option)
from nertools.cli.options import count_type, quiet_option
from nertools.core.jsonl import ErrorPolicy, RecordWriter, read_records
from nertools.runtime.progress import log
from nertools.xner.candidates import SpanRules, SpanStats, add_candidates, load_stopwords

EXAMPLE = """\b
Examples:
  ner-spans corpus.jsonl -o candidates.jsonl
  ner-spans --max-tokens 30 train.jsonl | ner-divscore --seed PER="Masaki Yoshida" ...
  echo '{"text": "Masaki Yoshida visited Singapore ."}' | ner-spans
"""


@click.command("ner-spans", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@input_argument()
@output_option()
@click.option("--max-length", default=3, show_default=True, type=count_type(),
              help="Longest candidate, in tokens.")
@click.option("--stopwords", "stopwords_file", default=None, type=click.Path(dir_okay=False),
              help="Stop-word file (one word per line) instead of the shipped 179-word NLTK list.")
@click.option("--allow-digits", is_flag=True,
              help="Keep spans that contain a digit (the official rules drop them).")
@click.option("--max-tokens", default=None, type=count_type(),
              help="Sentence-length cap: longer records pass through with no candidates "
                   "(counted on stderr). The paper uses 30 for CoNLL.")
@on_error_option()
@quiet_option(expose_value=False)
@nertools_command("ner-spans")
def main(input, output, max_length, stopwords_file, allow_digits, max_tokens, on_error):
    """Add "candidates" (word n-grams that may be entities) to each record.

    Default rules are the official X-NER code's: n-grams of up to 3 tokens, no token in the
    stop-word or punctuation list, no digit, a sentence-final "." never inside a span.
    Every other field is kept; existing "candidates" are replaced.
    """
    rules = SpanRules(max_length=max_length, stopwords=load_stopwords(stopwords_file),
                      allow_digits=allow_digits, max_tokens=max_tokens)
    policy = ErrorPolicy(on_error)
    stats = SpanStats()
    with RecordWriter(output) as out:
        for rec in add_candidates(read_records(input, policy=policy), rules, stats):
            out.write(rec)
    msg = f"{stats.records} record(s), {stats.candidates} candidate(s)"
    if max_tokens is not None:
        msg += f"; {stats.capped} record(s) over {max_tokens} tokens got no candidates"
    log(msg, prog="ner-spans")
    policy.report("ner-spans")
    sys.stdout.flush()
