"""ner-validate: check records and write them in canonical form."""

from __future__ import annotations

import click

from nertools.cli.common import (CONTEXT_SETTINGS, input_argument, nertools_command, on_error_option,
                                 output_option)
from nertools.cli.options import labels_option, quiet_option
from nertools.core.jsonl import ErrorPolicy, RecordWriter, read_records

EXAMPLE = """\b
Examples:
  ner-validate corpus.jsonl -o clean.jsonl
  echo '{"text": "Masaki Yoshida visited Singapore."}' | ner-validate
  ner-validate --labels PER,LOC,ORG,MISC gold.jsonl > /dev/null && echo valid
"""


@click.command("ner-validate", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@input_argument()
@output_option()
@labels_option(help="Comma-separated allowed labels; any other label is an error.")
@on_error_option()
@quiet_option(expose_value=False)
@nertools_command("ner-validate")
def main(input, output, labels, on_error):
    """Validate JSONL records and write them in the canonical nertools form.

    Accepts every input form of nertools-format(5): canonical records, {"text"} alone
    (tokenised by the default tokenizer), {"tokens": [...strings]}, spans by character or
    token offsets. Reports the first violation with file and line (exit 65).
    """
    policy = ErrorPolicy(on_error)
    with RecordWriter(output) as out:
        for rec in read_records(input, policy=policy, labels=labels):
            out.write(rec)
    policy.report("ner-validate")
