"""ner-tag: apply a trained tagger to a stream of records."""

from __future__ import annotations

import click

from nertools.core.jsonl import ErrorPolicy
from nertools.cli.common import (CONTEXT_SETTINGS, input_argument, nertools_command,
                                 on_error_option, output_option)
from nertools.cli.options import FiniteFloat, model_option, model_runtime_options, quiet_option
from nertools.core.jsonl import RecordWriter, read_records

EXAMPLE = """\b
Examples:
  ner-tag --model tagger corpus.jsonl -o tagged.jsonl
  echo '{"text": "Masaki Yoshida visited Singapore."}' | ner-tag --model tagger
  ner-tag --model tagger --threshold 0.8 dev.jsonl | ner-eval --gold dev.jsonl --pred -
  # a bi-encoder (ner-biencoder train) tags any labels, zero-shot
  ner-tag --model bienc --labels "person,location,organization" corpus.jsonl
  ner-tag --model bienc --labels "PER=person,LOC=location" dev.jsonl | ner-eval --gold dev.jsonl --pred -
  ner-tag --model bienc --labels-file labels.tsv --decoding multi --threshold 0.6 corpus.jsonl

\b
Bi-encoder labels: --labels L1,L2 (the label encoder reads each label as written; LABEL=TEXT
outputs LABEL and reads TEXT) or --labels-file: TSV label<TAB>description[<TAB>name, ...] or
JSONL {"label", "description", "names"} (the description is read, else the names). Label
vectors are computed once per run. Decoding: argmax = each word takes its best label if that
label beats "outside" (models trained with --objective labels) and its score >= --threshold
(default 0 for those, 0.5 for --objective concepts models), else it is outside; multi = every
label with score >= --threshold (default 0.5), spans may overlap. Consecutive words with the
same label merge into one span (IO); a span's score is the mean of its words' scores.
"""


@click.command("ner-tag", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@input_argument()
@output_option()
@model_option(type=click.Path(file_okay=False),
              help="Model directory written by ner-selftrain, or by ner-biencoder train (then give "
                   "--labels or --labels-file).")
@click.option("--threshold", default=None, type=FiniteFloat(0, 1),
              help="Tagger: drop predicted spans whose score (mean probability of their tags) is lower "
                   "[default: 0]. Bi-encoder: the least score of a word's label (see below) "
                   "[default: 0 for argmax with a labels-objective model, else 0.5].")
@click.option("--labels", "labels", default=None, metavar="L1,L2,...",
              help="Bi-encoder: the labels to tag, comma-separated (LABEL or LABEL=TEXT).")
@click.option("--labels-file", type=click.Path(exists=True, dir_okay=False),
              help="Bi-encoder: the labels with descriptions (TSV or JSONL, see below).")
@click.option("--decoding", type=click.Choice(["argmax", "multi"]), default="argmax", show_default=True,
              help="Bi-encoder: one label per word (argmax) or every label over the threshold (multi).")
@click.option("--max-tokens", default=8192, show_default=True, type=click.IntRange(16),
              help="Token budget of a batch (batch size x padded length).")
@click.option("--chunk", default=512, show_default=True, type=click.IntRange(1),
              help="Records read ahead and batched together (output keeps input order).")
@model_runtime_options
@quiet_option(expose_value=False)
@on_error_option()
@nertools_command("ner-tag")
def main(input, output, model, threshold, labels, labels_file, decoding, max_tokens, chunk, device, dtype,
         threads, on_error):
    """Tag records with a trained tagger: each record's `spans` is replaced by the predicted
    entities, {"start","end","token_start","token_end","label","score","source":"ner-tag"}.

    Records are streamed, batched by --max-tokens, and written in input order with every
    other field kept. Sentences longer than the model window are split into overlapping
    windows and merged back (each word is taken from the window where it has most context).
    A progress bar counts the records on stderr (--quiet: none).
    """
    from nertools.runtime.models import set_threads
    from nertools.runtime.progress import progress
    from nertools.tagging.tagger import Tagger

    set_threads(threads)
    policy = ErrorPolicy(on_error)
    records = _biencoder_records(input, policy, model, threshold, labels, labels_file, decoding, max_tokens,
                                 chunk, device, dtype)
    if records is None:
        tagger = Tagger.load(model, device=device, dtype=dtype)
        records = tagger.tag(read_records(input, policy=policy), threshold=threshold or 0.0,
                             max_tokens=max_tokens, chunk=chunk)
    with RecordWriter(output) as out, progress(desc="ner-tag", unit="rec") as bar:
        for rec in records:
            out.write(rec)
            bar.update()
    policy.report("ner-tag")


def _biencoder_records(input, policy, model, threshold, labels, labels_file, decoding, max_tokens, chunk,
                       device, dtype):
    """The tagged records of a bi-encoder ``model`` (``None``: ``model`` is a tagger directory)."""
    from nertools.biencoder import BiEncoder, is_biencoder_dir, labels_from_option, read_label_file
    from nertools.core.labels import parse_list
    from nertools.errors import UsageError

    if not is_biencoder_dir(model):
        if labels is None and not labels_file and decoding == "argmax":
            return None
        from nertools.tagging.tagger import is_model_dir

        if not is_model_dir(model):  # neither kind: say why it cannot be loaded (exit 1)
            from nertools.biencoder.tagger import read_meta

            read_meta(model)
        raise UsageError(f"--labels, --labels-file and --decoding are for bi-encoder models; {model} "
                         "is not one (ner-biencoder train writes them)")
    if labels is not None and labels_file:
        raise UsageError("give --labels or --labels-file, not both")
    if labels_file:
        infos = read_label_file(labels_file)
    elif labels is not None:
        infos = labels_from_option(parse_list(labels) or [])
    else:
        raise UsageError(f"{model} is a bi-encoder: give the labels to tag with --labels or --labels-file")
    encoder = BiEncoder.load(model, device=device, dtype=dtype)
    return encoder.tag_records(read_records(input, policy=policy), infos, threshold=threshold,
                               decoding=decoding, max_tokens=max_tokens, chunk=chunk)
