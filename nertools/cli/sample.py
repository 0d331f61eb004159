"""ner-sample: a k~2k few-shot support set (every type gets between k and 2k mentions)."""

from __future__ import annotations

import click

from nertools.cli.common import (CONTEXT_SETTINGS, input_argument, nertools_command, on_error_option,
                                 output_option)
from nertools.cli.options import count_type, labels_option, quiet_option
from nertools.core.jsonl import ErrorPolicy, RecordWriter, read_records
from nertools.errors import DataError
from nertools.fewshot.sampler import UNITS, sample_support
from nertools.runtime.progress import log

EXAMPLE = """\b
Examples:
  # a 5~10-shot support set of WNUT-17 train, seed 0
  ner-sample --k 5 --seed 0 ../shared/data/wnut17/train.jsonl -o support.jsonl
  # support from the first 80% of a train file, never overlapping an evaluation set
  ner-sample --k 4 --seed 1 --exclude-ids eval.jsonl train.jsonl -o support.jsonl \\
      --rest-out rest.jsonl --summary support.json
  # two types only (spans of other types are removed from the support records)
  ner-sample --k 8 --labels Dish,Cuisine --allow-shortfall train.jsonl > support.jsonl
  ner-selftrain --linear-probe --train support.jsonl --dev dev.jsonl --model all-minilm-l6-v2 --out probe
"""


def read_ids(path: str) -> list[str]:
    """Ids to exclude: a JSONL file of records (their ``id``; a record without one has its line
    number, as every reader numbers it) or a text file with one id per line."""
    from nertools.core.specfile import read_text_lines

    lines = [line.strip() for line in read_text_lines(path)]
    first = next((line for line in lines if line), "")
    if first.startswith("{"):
        return [r["id"] for r in read_records(path, allow_empty=True)]
    return [line for line in lines if line and not line.startswith("#")]


@click.command("ner-sample", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@input_argument()
@output_option(help="The support records (JSONL, input order); - is stdout.")
@click.option("--k", "k", type=count_type(), required=True, help="Each type gets between K and 2K mentions.")
@click.option("--seed", type=count_type(0, 2**32 - 1), default=0, show_default=True,
              help="Shuffling seed; the same seed and input give the same set everywhere.")
@labels_option(help="Target types (default: every label of the input's spans). Spans of other "
                    "labels are removed from the support records.")
@click.option("--unit", type=click.Choice(UNITS), default="mentions", show_default=True,
              help="What K counts: mentions (Ding et al., NuNER Table 3) or words inside "
                   "mentions (NuNER §6's k_w).")
@click.option("--exclude-ids", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="Never sample these records: a JSONL file of records (e.g. the evaluation set) "
                   "or a text file of ids, one per line.")
@click.option("--rest-out", type=click.Path(dir_okay=False, allow_dash=False), default=None, metavar="FILE",
              help="Also write the records neither sampled nor excluded (input order): an "
                   "evaluation pool that cannot overlap the support set.")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write a JSON summary: counts and availability per type, shortfall, sizes.")
@click.option("--allow-shortfall", is_flag=True,
              help="Keep a set in which some type has fewer than K (the data allows no more); "
                   "the shortfall is still reported. Without it a shortfall exits 65.")
@on_error_option()
@quiet_option(expose_value=False)
@nertools_command("ner-sample")
def main(input, output, k, seed, labels, unit, exclude_ids, rest_out, summary_path, allow_shortfall, on_error):
    """Sample a few-shot support set with the greedy k~2k rule (Ding et al. 2021).

    The records are shuffled with --seed; a sentence is taken when one of its types still has
    fewer than K and none would go over 2K; sentences without entities are never taken.
    Sampling stops when every type has K. Every type therefore ends with between K and 2K
    mentions, unless the data runs out first: that shortfall is named on stderr (and in
    --summary) and exits 65, unless --allow-shortfall keeps the smaller set.

    One summary line goes to stderr (types, counts, shortfall); the support records go to
    stdout or -o in input order, unchanged except for spans of labels outside --labels.
    """
    from nertools.core.atomic import write_json_atomic

    policy = ErrorPolicy(on_error)
    records = list(read_records(input, policy=policy))
    excluded = read_ids(exclude_ids) if exclude_ids else None
    result = sample_support(records, k, seed, labels=labels, unit=unit, exclude_ids=excluded)
    log(result.describe(), prog="ner-sample")
    if summary_path:
        write_json_atomic(summary_path, result.summary())
    if result.shortfall and not allow_shortfall:
        raise DataError(f"k={k} is more than the data allows: {result.shortfall_message()} "
                        "(--allow-shortfall keeps the smaller set)")
    if result.shortfall:
        click.echo(f"ner-sample: warning: shortfall: {result.shortfall_message()}", err=True)
    if rest_out:
        with RecordWriter(rest_out) as rest:
            for i in result.rest:
                rest.write(records[i])
    with RecordWriter(output) as out:
        for rec in result.records:
            out.write(rec)
    policy.report("ner-sample")
