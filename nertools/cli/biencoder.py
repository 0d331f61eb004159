"""ner-biencoder: train a bi-encoder NER model (NuNER concepts, LITSET label interpretation)."""

from __future__ import annotations

import click

from nertools.biencoder.train import OBJECTIVES, BiEncoderArgs  # the knobs; torch loads inside training
from nertools.cli.common import CONTEXT_SETTINGS, nertools_command, on_error_option
from nertools.cli.options import dataclass_options, device_option, model_option, quiet_option, threads_option
from nertools.core.jsonl import ErrorPolicy, read_records

TRAIN_EXAMPLE = """\b
Examples:
  # LITSET: label interpretation on gold types with plain-word descriptions, then zero-shot tags
  ner-biencoder train --objective labels --train train.jsonl --dev dev.jsonl \\
      --model all-minilm-l6-v2 --label-desc examples/conll_label_desc.tsv --out bienc
  ner-tag --model bienc --labels "person,location,organization" corpus.jsonl
  # NuNER: concept pre-training on ner-annotate --prompt nuner output; keep the text encoder
  ner-annotate --prompt nuner --model M corpus.jsonl > concepts.jsonl
  ner-biencoder train --objective concepts --train concepts.jsonl --model all-minilm-l6-v2 --out nuner
  ner-selftrain --train gold.jsonl --dev dev.jsonl --model nuner/text_encoder --out tagger
  # two processes (DistributedDataParallel; gloo on CPU, nccl on GPUs); --batch-size is global
  torchrun --nproc_per_node 2 -m nertools.cli.biencoder train --objective concepts ...

\b
Label-description file (--label-desc): TSV label<TAB>description[<TAB>name, name, ...] or
JSONL {"label": "PER", "description": "a person's name", "names": ["person", "human"]}.
Output directory: text_encoder/ (a plain Hugging Face AutoModel folder with its tokenizer),
label_encoder/ (absent with --shared-encoder) and nertools.json.
"""


@click.group("ner-biencoder", context_settings=CONTEXT_SETTINGS)
def main():
    """Bi-encoder NER: a text encoder scores each token against label vectors from a label
    encoder. `train` fits it; `ner-tag --model DIR --labels ...` tags with any labels."""


@main.command("train", context_settings=CONTEXT_SETTINGS, epilog=TRAIN_EXAMPLE)
@click.option("--objective", required=True, type=click.Choice(OBJECTIVES),
              help="concepts: NuNER's sigmoid BCE over the batch's distinct (normalised) concepts, "
                   "multi-label; labels: LITSET's softmax CE over outside + the batch's verbalised labels.")
@click.option("--train", "train_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Training records (JSONL): span labels, or ner-annotate output (its placed annotation "
                   "items with their descriptions, overlapping ones included).")
@click.option("--dev", "dev_path", type=click.Path(exists=True, dir_okay=False),
              help="Dev records. labels: model selection by the entity F1 of zero-shot tagging with the "
                   "dev set's labels (needs gold spans); concepts: by the validation BCE. Without it the "
                   "last model is kept.")
@model_option(required=False, help="Text encoder (and label encoder unless --label-model): Hugging Face "
                                   "name or folder, or an alias (all-minilm-l6-v2).")
@click.option("--label-model", default=None, help="Label encoder [default: same as --model]; its vectors "
                                                  "must have the text encoder's size.")
@click.option("--label-desc", type=click.Path(exists=True, dir_okay=False),
              help="Label descriptions and names (TSV or JSONL, see below); they win over descriptions "
                   "in the data, and name dev labels for the dev F1.")
@click.option("--init", "init", type=click.Path(exists=True, file_okay=False),
              help="Start from the encoders of a bi-encoder directory (instead of --model).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Model directory to write; replaced atomically at the end. An existing directory "
                   "holding files nertools did not write is refused.")
@dataclass_options(BiEncoderArgs)
@device_option()
@threads_option()
@click.option("--resume", is_flag=True,
              help="Continue from OUT.checkpoint (written at every evaluation) if it exists, else start "
                   "fresh. Without --resume an existing checkpoint is an error.")
@quiet_option(expose_value=False)
@on_error_option()
@nertools_command("ner-biencoder train")
def train_cmd(objective, train_path, dev_path, model, label_model, label_desc, init, out, device, threads,
              resume, on_error, **knobs):
    """Train a bi-encoder and write a model directory (text encoder, label encoder, nertools.json).

    Every sub-token of a word inherits the word's labels; long sentences are windowed with
    overlap, never truncated. The bottom half of the text encoder (and its embeddings) is
    frozen by default (--freeze-layers). Ctrl-C and SIGTERM stop a run cleanly (exit 130/143);
    the checkpoint written at the last evaluation is complete and --resume continues from it.
    Under torchrun each rank takes a shard of every global batch and only rank 0 writes.
    """
    from nertools.biencoder.labels import read_label_file
    from nertools.biencoder.train import check_output_paths, dist_info, train_biencoder
    from nertools.errors import UsageError
    from nertools.runtime.models import set_threads

    if not model and not init:
        raise UsageError("give --model ENCODER (or --init BIENCODER_DIR)")
    args = BiEncoderArgs(objective=objective, model=model, label_model=label_model, init=init, device=device,
                         **knobs)
    args.check()
    import os

    if int(os.environ.get("RANK", "0") or 0) == 0:
        check_output_paths(out, resume)
    given = read_label_file(label_desc) if label_desc else []
    policy = ErrorPolicy(on_error)
    train_records = list(read_records(train_path, policy=policy))
    dev_records = list(read_records(dev_path, policy=policy)) if dev_path else []
    set_threads(threads)
    meta = train_biencoder(args, train_records, dev_records, out, label_desc=given, train_path=train_path,
                           dev_path=dev_path, resume=resume)
    policy.report("ner-biencoder train")
    if dist_info()[0] == 0 and int(os.environ.get("RANK", "0") or 0) == 0:
        m = meta.get("dev_metrics") or {}
        shown = (f"dev F1 {m['f1']:.2f}" if objective == "labels" and dev_path and "f1" in m else
                 f"dev BCE {m['loss']:.4f}" if "loss" in m else "no dev")
        click.echo(f"ner-biencoder: wrote {out}: {shown} at step {meta['best_step']} "
                   f"({meta['steps_run']} steps)", err=True)


if __name__ == "__main__":  # torchrun --nproc_per_node N -m nertools.cli.biencoder train ...
    main()
