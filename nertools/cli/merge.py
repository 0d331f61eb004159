"""ner-merge: join the outputs of --shard runs into the bytes of the unsharded run."""

from __future__ import annotations

import click

from nertools.cli.common import CONTEXT_SETTINGS, nertools_command, output_option
from nertools.cli.options import quiet_option
from nertools.core.jsonl import RecordWriter
from nertools.core.shard import merge_shards

EXAMPLE = """\b
Examples:
  ner-divscore --seeds seeds.tsv cands.jsonl --shard 0/3 -o part0.jsonl   # three processes,
  ner-divscore --seeds seeds.tsv cands.jsonl --shard 1/3 -o part1.jsonl   # machines or GPUs
  ner-divscore --seeds seeds.tsv cands.jsonl --shard 2/3 -o part2.jsonl
  ner-merge part*.jsonl -o scored.jsonl          # = ner-divscore ... cands.jsonl -o scored.jsonl
  ner-merge part0.jsonl part1.jsonl part2.jsonl | ner-pseudo --top-percent 1
"""


@click.command("ner-merge", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@click.argument("shards", nargs=-1, required=True, metavar="SHARD_FILE...",
                type=click.Path(dir_okay=False))
@output_option()
@quiet_option(expose_value=False)
@nertools_command("ner-merge")
def main(shards, output):
    """Merge the outputs of `--shard I/N` runs (ner-divscore, ner-tag, ner-annotate) back into
    input order: the same bytes as the run without --shard.

    Each SHARD_FILE needs its progress journal SHARD_FILE.progress (written by the shard
    run when it finished). The files may be given in any order; all N shards of one run
    must be there exactly once, from the same command, input (size and SHA-256) and options.
    A missing, doubled, unfinished or foreign shard is a usage error (exit 2) naming it.
    """
    from nertools.core.shard import check_shards, read_shard

    check_shards([read_shard(p) for p in shards])  # refuse before an -o file is opened
    with RecordWriter(output) as out:
        merge_shards(list(shards), write=out.write_raw)
