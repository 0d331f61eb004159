"""ner-selftrain: fine-tune a token-classification tagger, optionally with BOND self-training."""

from __future__ import annotations

import click

from nertools.core.jsonl import ErrorPolicy
from nertools.cli.common import CONTEXT_SETTINGS, nertools_command, on_error_option
from nertools.cli.options import dataclass_options, device_option, model_option, quiet_option, threads_option
from nertools.core.jsonl import read_records
from nertools.tagging.train import TrainArgs  # the knobs (and their --help); torch loads inside training

EXAMPLE = """\b
Examples:
  # supervised tagger on gold data, MiniLM backbone
  ner-selftrain --train train.jsonl --dev dev.jsonl --model all-minilm-l6-v2 --out tagger
  # from X-NER pseudo labels, BOND self-training, O tokens of pseudo data down-weighted
  ner-spans corpus.jsonl | ner-divscore --seeds seeds.tsv --model gemma-3-270m \\
      | ner-pseudo --top-percent 3 > pseudo.jsonl
  ner-selftrain --train pseudo.jsonl --dev dev.jsonl --model all-minilm-l6-v2 --out tagger \\
      --self-train --o-weight 0.3
  # continue an interrupted run (safe to pass always)
  ner-selftrain --train pseudo.jsonl --dev dev.jsonl --model roberta-large --out tagger --resume
  ner-tag --model tagger corpus.jsonl
  # NuNER's frozen-encoder linear probe on a 4~8-shot support set (ner-sample)
  ner-sample --k 4 --seed 0 train.jsonl -o support.jsonl
  ner-selftrain --linear-probe --train support.jsonl --dev dev.jsonl --model all-minilm-l6-v2 --out probe
"""


@click.command("ner-selftrain", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@click.option("--train", "train_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Training records (JSONL) whose spans are the (gold or pseudo) labels.")
@click.option("--dev", "dev_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Dev records with gold spans: model selection and early stopping use their "
                   "F1 (never use test data here). A dev set without spans, or without any span of "
                   "a --train label, is refused (exit 65); dev labels missing from --train give a "
                   "warning (also kept in nertools.json).")
@model_option(help="Backbone: Hugging Face name or folder, a GGUF file, or an alias "
                   "(all-minilm-l6-v2, smollm2-135m, gemma-3-270m). Encoders and decoders both work.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Model directory to write (model + tokenizer + nertools.json); replaced "
                   "atomically at the end. An existing directory holding files that nertools did "
                   "not write is refused (they are never deleted).")
@dataclass_options(TrainArgs)
@device_option()
@threads_option()
@click.option("--resume", is_flag=True,
              help="Continue from OUT.checkpoint (written at every evaluation) if it exists, "
                   "else start fresh. Without --resume an existing checkpoint is an error; a "
                   "checkpoint of other arguments or data is refused, naming what differs.")
@quiet_option(expose_value=False)
@on_error_option()
@nertools_command("ner-selftrain")
def main(train_path, dev_path, out, threads, resume, on_error, **knobs):
    """Fine-tune a token-classification tagger (BIO on first sub-tokens) and write a model directory.

    The label set is the set of span labels in --train. Every epoch (or --eval-every steps)
    the model is scored on --dev (strict span F1); the best dev model is written to
    --out with nertools.json (labels, arguments, sha256 of the data, dev metrics).

    BOND self-training differs from the official BOND/GeNER code in two ways: the student's
    logits go through log_softmax before the KL loss (the official code feeds raw logits to
    KLDivLoss), and the checkpoint is chosen by dev F1 (the official code picks it by test F1).
    Soft labels: p ~ q^2/f with f the class frequency over the batch, renormalised per word.

    Ctrl-C and SIGTERM stop a run the same way (exit 130, one line); a checkpoint or model
    write in progress is finished first, so OUT.checkpoint is always complete and --resume
    continues from it. A full disk or running out of GPU memory is a one-line error (exit 1).
    """
    from nertools.runtime.models import set_threads
    from nertools.tagging.train import check_output_paths, train_tagger

    check_output_paths(out, resume)
    policy = ErrorPolicy(on_error)
    train_records = list(read_records(train_path, policy=policy))
    dev_records = list(read_records(dev_path, policy=policy))
    set_threads(threads)
    args = TrainArgs(**knobs)
    if args.linear_probe:
        from nertools.fewshot.probe import train_probe_tagger as train_tagger  # noqa: F811
    meta = train_tagger(args, train_records, dev_records, out, train_path=train_path,
                        dev_path=dev_path, resume=resume)
    policy.report("ner-selftrain")
    m = meta["dev_metrics"]
    click.echo(f"ner-selftrain: wrote {out}: dev F1 {m['f1']:.2f} (P {m['precision']:.2f} "
               f"R {m['recall']:.2f}) at step {meta['best_step']}"
               + (f", token macro F1 {m['token_macro_f1']:.2f}" if "token_macro_f1" in m else ""), err=True)
