"""ner-convert: convert NER corpora between formats (conll, jsonl, prodigy, doccano, gliner, hf)."""

from __future__ import annotations

import click

from nertools.cli.common import (CONTEXT_SETTINGS, input_argument, nertools_command, on_error_option,
                                 output_option)
from nertools.cli.options import MAX_COLUMNS, count_type, labels_option, quiet_option
from nertools.core.jsonl import ErrorPolicy
from nertools.formats.common import DETECT_WINDOW
from nertools.formats.convert import FORMATS, convert
from nertools.formats.conll import SEPARATORS
from nertools.core.tags import SCHEMES

EXAMPLE = """\b
Examples:
  ner-convert --from conll --to jsonl train.conll -o train.jsonl
  ner-convert --from jsonl --to conll train.jsonl > train.conll
  ner-convert --from conll --to jsonl --tag-col 3 eng.train      # CoNLL-2003 four columns
  ner-convert --from conll --to conll --out-scheme IOBES train.conll
  ner-convert --from doccano --to jsonl admin.jsonl | ner-validate --labels PER,LOC
  ner-convert --from hf --to gliner --labels O,B-PER,I-PER,B-LOC,I-LOC hf.jsonl
"""


@click.command("ner-convert", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@input_argument()
@output_option(help="Output file (.gz compresses); - is stdout. A file is replaced only when "
                    "the run succeeds.")
@click.option("-f", "--from", "from_fmt", required=True, type=click.Choice(FORMATS),
              help="Input format.")
@click.option("-t", "--to", "to_fmt", required=True, type=click.Choice(FORMATS),
              help="Output format.")
@click.option("--scheme", default="auto", show_default=True,
              type=click.Choice(("auto",) + SCHEMES, case_sensitive=False),
              help=f"Tagging scheme of conll/hf input; auto detects it from the first "
                   f"{DETECT_WINDOW} sentences.")
@click.option("--out-scheme", default=None, type=click.Choice(SCHEMES, case_sensitive=False),
              help="Tagging scheme of conll/hf output [default: the input's, else BIO2].")
@click.option("--token-col", default=0, show_default=True, type=count_type(-MAX_COLUMNS, MAX_COLUMNS),
              help="conll input: the token column (0-based; negative counts from the end).")
@click.option("--tag-col", default=-1, show_default=True, type=count_type(-MAX_COLUMNS, MAX_COLUMNS),
              help="conll input: the tag column (-1 = the last, as in CoNLL-2003 files).")
@click.option("--sep", default=None, type=click.Choice(tuple(SEPARATORS)),
              help="conll output: column separator [default: the input's, else tab].")
@labels_option(metavar="T1,T2,...",
               help="hf: the id -> tag list for integer ner_tags (read), and writes integer "
                    "tags (write).")
@click.option("--id-prefix", default="", metavar="TEXT",
              help="Ids for records without one: prefix + 0-based sentence number (conll) or "
                   "+ line number (JSON formats).")
@on_error_option()
@quiet_option(expose_value=False)
@nertools_command("ner-convert")
def main(input, output, from_fmt, to_fmt, scheme, out_scheme, token_col, tag_col, sep, labels,
         id_prefix, on_error):
    """Convert an NER corpus from one format to another, streaming.

    Formats: jsonl (canonical nertools records, nertools-format(5)); prodigy (the same,
    Prodigy-compatible); conll (token and tag columns, tab or space separated, a blank
    line after each sentence; tags in BIO2, IOB1, IOBES or BILOU; -DOCSTART- lines kept in
    meta); doccano ({"text", "label": [[start, end, label]]}, or "labels"); gliner
    ({"tokenized_text", "ner": [[first, last, label]]}, token end inclusive); hf
    ({"tokens", "ner_tags"}, tags as strings or integers with --labels).

    conll -> jsonl -> conll gives back the same bytes. Bad input (wrong column count, a
    tag not of the scheme, broken JSON, spans out of range) is reported with file and
    line (exit 65).
    """
    policy = ErrorPolicy(on_error)
    if from_fmt != "hf" and to_fmt != "hf" and labels:
        raise click.UsageError("--labels applies to the hf format only")
    convert(input, output, from_fmt, to_fmt, policy=policy, scheme=scheme, out_scheme=out_scheme,
            token_col=token_col, tag_col=tag_col, sep=SEPARATORS[sep] if sep else None,
            labels=labels, id_prefix=id_prefix)
    policy.report("ner-convert")
