"""ner-selftrain: fine-tune a token-classification tagger, optionally with BOND self-training."""

from __future__ import annotations

import click

from nertools.tagging import bond  # noqa: F401  (constants for --help; imports torch)
from nertools.cli.common import CONTEXT_SETTINGS, make_policy, nertools_command, on_error_option
from nertools.errors import DataError
from nertools.core.jsonl import read_records

EXAMPLE = """\b
Examples:
  # supervised tagger on gold data, MiniLM backbone
  ner-selftrain --train train.jsonl --dev dev.jsonl --model all-minilm-l6-v2 --out tagger
  # from X-NER pseudo labels, BOND self-training, O tokens of pseudo data down-weighted
  ner-spans corpus.jsonl | ner-divscore --seeds seeds.tsv --model gemma-3-270m | ner-pseudo --top-percent 3 > pseudo.jsonl
  ner-selftrain --train pseudo.jsonl --dev dev.jsonl --model all-minilm-l6-v2 --out tagger \\
      --self-train --o-weight 0.3
  # continue an interrupted run (safe to pass always)
  ner-selftrain --train pseudo.jsonl --dev dev.jsonl --model roberta-large --out tagger --resume
  ner-tag --model tagger corpus.jsonl
"""


@click.command("ner-selftrain", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@click.option("--train", "train_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Training records (JSONL) whose spans are the (gold or pseudo) labels.")
@click.option("--dev", "dev_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Dev records with gold spans: model selection and early stopping use their "
                   "F1 (never use test data here).")
@click.option("--model", required=True,
              help="Backbone: Hugging Face name or folder, a GGUF file, or an alias "
                   "(all-minilm-l6-v2, smollm2-135m, gemma-3-270m). Encoders and decoders both work.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Model directory to write (model + tokenizer + nertools.json); replaced "
                   "atomically at the end.")
@click.option("--self-train", is_flag=True,
              help="BOND: stage I on the labels for T_early steps, then teacher/student "
                   "self-training on soft labels.")
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--lr", type=float, default=None,
              help="Peak learning rate [default: 1e-5 with --self-train (BOND), else 5e-5].")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1))
@click.option("--grad-accum", default=1, show_default=True, type=click.IntRange(1),
              help="Micro-batches per optimiser step.")
@click.option("--epochs", default=3.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--max-steps", default=None, type=click.IntRange(1), help="Optimiser steps (overrides --epochs).")
@click.option("--warmup-ratio", default=0.1, show_default=True, type=click.FloatRange(0, 1))
@click.option("--weight-decay", default=0.01, show_default=True, type=float)
@click.option("--max-grad-norm", default=1.0, show_default=True, type=float)
@click.option("--max-length", default=256, show_default=True, type=click.IntRange(4),
              help="Model window in sub-tokens (capped by the model). Longer sentences are split "
                   "into overlapping windows, never truncated.")
@click.option("--window-overlap", default=32, show_default=True, type=click.IntRange(0),
              help="Sub-tokens shared by consecutive windows of a long sentence.")
@click.option("--eval-every", default=None, type=click.IntRange(1),
              help="Evaluate on dev (and checkpoint) every N steps [default: once per epoch].")
@click.option("--patience", default=5, show_default=True, type=click.IntRange(0),
              help="Stop after N evaluations without a better dev F1 (0: never). With "
                   "--self-train it only counts in stage II.")
@click.option("--o-weight", default=1.0, show_default=True, type=click.FloatRange(0, 1),
              help="Loss weight of words labelled O (stage I / supervised). Pseudo-labelled "
                   "sentences are only partly labelled; < 1 learns less 'O' from unmined entities.")
@click.option("--t-early", default=None, type=click.IntRange(0),
              help=f"BOND stage-I steps [default: max(100, {bond.BOND_T_EARLY} x min(1, "
                   f"sentences/{bond.BOND_REFERENCE_SIZE}))].")
@click.option("--t-update", default=None, type=click.IntRange(1),
              help=f"BOND teacher refresh period in steps [default: max(25, {bond.BOND_T_UPDATE} x "
                   f"min(1, sentences/{bond.BOND_REFERENCE_SIZE}))].")
@click.option("--threshold", default=None, type=click.FloatRange(0, 1),
              help=f"BOND: ignore words whose top soft-label probability is below this "
                   f"[default: {bond.BOND_THRESHOLD}].")
@click.option("--precision", default="auto", show_default=True,
              type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
              help="Autocast dtype; auto = bf16 (else fp16) on CUDA, float32 on CPU. Weights "
                   "and optimiser stay float32.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--threads", default=None, type=click.IntRange(1), help="CPU threads for torch.")
@click.option("--resume", is_flag=True,
              help="Continue from OUT.checkpoint (written at every evaluation) if it exists, "
                   "else start fresh. Without --resume an existing checkpoint is an error.")
@on_error_option()
@nertools_command("ner-selftrain")
def main(train_path, dev_path, model, out, self_train, seed, lr, batch_size, grad_accum, epochs,
         max_steps, warmup_ratio, weight_decay, max_grad_norm, max_length, window_overlap,
         eval_every, patience, o_weight, t_early, t_update, threshold, precision, device, threads,
         resume, on_error):
    """Fine-tune a token-classification tagger (BIO on first sub-tokens) and write a model directory.

    The label set is the set of span labels in --train. Every epoch (or --eval-every steps)
    the model is scored on --dev (strict IOB2 span F1); the best dev model is written to
    --out with nertools.json (labels, arguments, sha256 of the data, dev metrics).

    BOND self-training differs from the official BOND/GeNER code in two ways: the student's
    logits go through log_softmax before the KL loss (the official code feeds raw logits to
    KLDivLoss), and the checkpoint is chosen by dev F1 (the official code picks it by test F1).
    Soft labels: p ~ q^2/f with f the class frequency over the batch, renormalised per word.
    """
    from nertools.tagging.train import TrainArgs, check_output_paths, train  # (torch loads inside train)

    check_output_paths(out, resume)
    policy = make_policy(on_error)
    train_records = list(read_records(train_path, policy=policy))
    dev_records = list(read_records(dev_path, policy=policy))
    if not any(r["spans"] for r in train_records):
        raise DataError("no spans in the training data: nothing to learn", path=train_path)

    from nertools.runtime.models import set_threads

    set_threads(threads)
    args = TrainArgs(model=model, seed=seed, lr=lr, batch_size=batch_size, grad_accum=grad_accum,
                     epochs=epochs, max_steps=max_steps, warmup_ratio=warmup_ratio,
                     weight_decay=weight_decay, max_grad_norm=max_grad_norm, max_length=max_length,
                     window_overlap=window_overlap, eval_every=eval_every, patience=patience,
                     o_weight=o_weight, self_train=self_train, t_early=t_early, t_update=t_update,
                     threshold=threshold, precision=precision, device=device)
    meta = train(args, train_records, dev_records, out, train_path=train_path, dev_path=dev_path,
                 resume=resume)
    policy.report("ner-selftrain")
    m = meta["dev_metrics"]
    click.echo(f"ner-selftrain: wrote {out}: dev F1 {m['f1']:.2f} (P {m['precision']:.2f} "
               f"R {m['recall']:.2f}) at step {meta['best_step']}", err=True)
