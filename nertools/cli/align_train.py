"""``ner-align train`` and ``ner-align predict``: LAR's reassignment training and prediction.

:func:`register` adds both commands to the ``ner-align`` click group (nertools.cli.align).
"""

from __future__ import annotations

import click

from nertools.cli.common import (CONTEXT_SETTINGS, input_argument, nertools_command, on_error_option,
                                 output_option)
from nertools.cli.options import (FiniteFloat, count_type, device_option, dtype_option, quiet_option,
                                  threads_option)
from nertools.align.linearize import OFF_CANDIDATE
from nertools.core.jsonl import ErrorPolicy, RecordWriter, read_records

TRAIN_EXAMPLE = """\b
Examples:
  # source stage of the generative model (M_s): CoNLL types directly
  ner-align train --mode generative --train conll.jsonl --dev conll_dev.jsonl \\
      --model smollm2-135m --out gen_src
  # reassignment from M_s: outputs "source : span -> target"; --ori: target types directly
  ner-align train --mode generative --table table.json --train politics.jsonl \\
      --dev politics_dev.jsonl --model gen_src --out gen_politics
  # token classifier: target head initialised from the source tagger's aligned rows
  ner-selftrain --train conll.jsonl --dev conll_dev.jsonl --model all-minilm-l6-v2 --out src_tagger
  ner-align train --mode classifier --source-model src_tagger --table table.json \\
      --train politics.jsonl --dev politics_dev.jsonl --out tagger_politics
  ner-tag --model tagger_politics politics_dev.jsonl | ner-eval --gold politics_dev.jsonl --pred -
"""

PREDICT_EXAMPLE = """\b
Examples:
  ner-align predict --model gen_politics politics_dev.jsonl -o pred.jsonl
  ner-align predict --model tagger_politics dev.jsonl | ner-eval --gold dev.jsonl --pred -
"""


OFF_CANDIDATE_HELP = ("a generated 'source : span -> target' whose target is not a "
                      "candidate of its source type: 'target' keeps the target and takes its aligned source "
                      "type; 'default' keeps the source type and takes its default target (the table's most "
                      "voted candidate); 'drop' drops the item. Repairs and drops are counted.")


def _read_table(path):
    """The parsed table of ``ner-align table`` (validated by :func:`nertools.align.table.load_table`)."""
    if path is None:
        return None
    from nertools.align.table import load_table

    return load_table(path).to_json()


@click.command("train", context_settings=CONTEXT_SETTINGS, epilog=TRAIN_EXAMPLE)
@click.option("--mode", type=click.Choice(["generative", "classifier"]), required=True,
              help="generative: a causal or encoder-decoder (T5) LM writes 'source : span -> target' (LAR); "
                   "classifier: a "
                   "token classifier whose target head starts from the source tagger's aligned rows.")
@click.option("--table", "table_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Alignment table (JSON of ner-align table). Generative without --table and "
                   "without --ori: the direct (source-stage) format on the data's own types.")
@click.option("--ori", is_flag=True,
              help="The baseline of the ablation: target types directly (generative: 'target : span'; "
                   "classifier: the source backbone with a fresh head).")
@click.option("--identity-target", type=click.Choice(["name", "none"]), default="name", show_default=True,
              help="generative with --table: write a target type named like its own source type "
                   "(person under PER) as its name, or as 'none' like the paper's Figure 4.")
@click.option("--off-candidate", type=click.Choice(OFF_CANDIDATE), default=OFF_CANDIDATE[0],
              show_default=True, help="generative with --table: " + OFF_CANDIDATE_HELP + " Kept in the model directory.")
@click.option("--train", "train_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Target training records with gold spans.")
@click.option("--dev", "dev_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Dev records with gold spans (model selection; never test data).")
@click.option("--model", default=None,
              help="generative: the LM to fine-tune, causal or encoder-decoder (T5, Flan-T5) by its "
                   "config (name, folder, GGUF, alias, or a generative directory of an earlier stage).")
@click.option("--source-model", type=click.Path(file_okay=False, exists=True), default=None,
              help="classifier: the source tagger directory (ner-selftrain).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Model directory to write.")
@click.option("--epochs", type=FiniteFloat(0, min_open=True), default=3.0, show_default=True)
@click.option("--max-steps", type=count_type(1), default=None, help="Optimiser steps (overrides --epochs).")
@click.option("--lr", type=FiniteFloat(0, min_open=True), default=5e-5, show_default=True)
@click.option("--batch-size", type=count_type(1), default=None,
              help="[default: 8 generative (LAR), 16 classifier]")
@click.option("--grad-accum", type=count_type(1), default=1, show_default=True)
@click.option("--warmup-ratio", type=FiniteFloat(0, 1), default=0.1, show_default=True)
@click.option("--eval-every", type=count_type(1), default=None, help="Evaluate every N steps [once per epoch].")
@click.option("--patience", type=count_type(0), default=5, show_default=True,
              help="Evaluations without a better dev F1 before stopping (0: never).")
@click.option("--seed", type=count_type(0, 2**32 - 1), default=42, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto",
              show_default=True)
@click.option("--max-prompt", type=count_type(8), default=256, show_default=True, help="generative: prompt tokens kept.")
@click.option("--max-answer", type=count_type(1), default=128, show_default=True,
              help="generative: answer tokens trained on.")
@click.option("--max-new-tokens", type=count_type(1), default=128, show_default=True,
              help="generative: most tokens generated per sentence (dev evaluation).")
@click.option("--eval-sentences", type=count_type(1), default=None,
              help="generative: score only the first N dev sentences per evaluation.")
@click.option("--max-length", type=count_type(4), default=256, show_default=True,
              help="classifier: model window in sub-tokens.")
@click.option("--init-noise", type=FiniteFloat(0), default=1.0, show_default=True,
              help="classifier: noise added to copied head rows, in units of the source head's weight std.")
@device_option()
@threads_option()
@click.option("--resume", is_flag=True, help="Continue from OUT.checkpoint if it exists.")
@quiet_option(expose_value=False)
@on_error_option()
@nertools_command("ner-align train")
def train(mode, table_path, ori, identity_target, off_candidate, train_path, dev_path, model, source_model, out, epochs, max_steps, lr,
          batch_size, grad_accum, warmup_ratio, eval_every, patience, seed, precision, max_prompt, max_answer,
          max_new_tokens, eval_sentences, max_length, init_noise, device, threads, resume, on_error):
    """Reassignment training (LAR step 3): fine-tune on target data so that each entity is
    produced with its aligned source type and its target type.

    generative: items 'source : span -> target' (with --table), 'type : span' (--ori, or the
    source stage without --table); loss on the answer tokens only; greedy decoding; dev F1 of
    the parsed answers selects the checkpoint. classifier: a normal tagger directory (ner-tag
    reads it) whose head rows start as copies of the source tagger's aligned rows.
    A gold type that the table does not know is refused (exit 65), naming it.
    """
    from nertools.errors import UsageError
    from nertools.runtime.models import set_threads

    if mode == "classifier" and source_model is None:
        raise UsageError("--mode classifier needs --source-model (a ner-selftrain tagger directory)")
    if mode == "generative" and model is None:
        raise UsageError("--mode generative needs --model (the causal or encoder-decoder LM to fine-tune)")
    if mode == "classifier" and table_path is None and not ori:
        raise UsageError("--mode classifier needs --table (or --ori for the baseline)")
    if identity_target != "name" and (mode != "generative" or table_path is None or ori):
        raise UsageError("--identity-target applies to the generative reassignment format only "
                         "(--mode generative --table T, without --ori)")
    if off_candidate != OFF_CANDIDATE[0] and (mode != "generative" or table_path is None or ori):
        raise UsageError("--off-candidate applies to the generative reassignment format only "
                         "(--mode generative --table T, without --ori)")
    table = _read_table(table_path)
    policy = ErrorPolicy(on_error)
    train_records = list(read_records(train_path, policy=policy))
    dev_records = list(read_records(dev_path, policy=policy))
    set_threads(threads)
    if mode == "classifier":
        from nertools.align.reassign import train_classifier
        from nertools.tagging.train import TrainArgs

        args = TrainArgs(model=str(source_model), seed=seed, lr=lr, batch_size=batch_size or 16,
                         grad_accum=grad_accum, epochs=epochs, max_steps=max_steps, warmup_ratio=warmup_ratio,
                         eval_every=eval_every, patience=patience, max_length=max_length, precision=precision,
                         device=device)
        meta = train_classifier(args, source_model, train_records, dev_records, out, table=table, ori=ori,
                                noise=init_noise, train_path=train_path, dev_path=dev_path, resume=resume)
    else:
        from nertools.align.generative import GenArgs, train_generative

        lin = generative_linearizer(model, table, ori, train_records, identity_target=identity_target,
                                    off_candidate=off_candidate)
        args = GenArgs(model=model, seed=seed, lr=lr, batch_size=batch_size or 8, grad_accum=grad_accum,
                       epochs=epochs, max_steps=max_steps, warmup_ratio=warmup_ratio, eval_every=eval_every,
                       patience=patience, max_prompt=max_prompt, max_answer=max_answer,
                       max_new_tokens=max_new_tokens, eval_sentences=eval_sentences, precision=precision,
                       device=device)
        meta = train_generative(args, lin, train_records, dev_records, out, train_path=train_path,
                                dev_path=dev_path, resume=resume)
    policy.report("ner-align train")
    m = meta["dev_metrics"]
    extra = ""
    if "parse" in m:
        from nertools.align.linearize import ParseStats

        extra = "; " + ParseStats(**m["parse"]).summary()
    click.echo(f"ner-align train: wrote {out}: dev F1 {m['f1']:.2f} (P {m['precision']:.2f} "
               f"R {m['recall']:.2f}) at step {meta['best_step']}{extra}", err=True)


def generative_linearizer(model: str, table: dict | None, ori: bool, train_records, *,
                          identity_target: str = "name", off_candidate: str = OFF_CANDIDATE[0]):
    """The format of a generative run: reassign (table, no --ori), else direct on the data's
    types; the source types listed in the prompt come from the table, else from ``model``
    when it is a generative directory of an earlier stage."""
    from nertools.align.generative import read_meta
    from nertools.align.linearize import Linearizer, table_fields

    data_labels = sorted({s["label"] for r in train_records for s in r.get("spans", [])})
    if table is not None:
        sources, targets, assign, candidates = table_fields(table)
        if not ori:
            return Linearizer("reassign", targets, sources, assign, candidates,
                              identity_target=identity_target, default=dict(table.get("default") or {}),
                              off_candidate=off_candidate)
        return Linearizer("direct", targets, sources)
    import os

    earlier = read_meta(model) if model and os.path.isdir(model) else None
    sources = []
    if earlier and earlier.get("format") == "nertools-align-generative":
        sources = earlier["linearizer"].get("source_labels") or earlier["linearizer"]["labels"]
    if not data_labels:
        from nertools.errors import DataError

        raise DataError("no spans in the training data: nothing to learn")
    return Linearizer("direct", data_labels, sources if ori else (sources or data_labels))


@click.command("predict", context_settings=CONTEXT_SETTINGS, epilog=PREDICT_EXAMPLE)
@input_argument()
@output_option()
@click.option("--model", required=True, type=click.Path(file_okay=False, exists=True),
              help="A directory written by ner-align train (generative or classifier).")
@click.option("--max-new-tokens", type=count_type(1), default=128, show_default=True,
              help="generative: most tokens generated per sentence.")
@click.option("--batch-tokens", type=count_type(16), default=4096, show_default=True,
              help="Token budget of a batch.")
@click.option("--keep-text", is_flag=True, help="generative: keep each raw generation in meta.generated.")
@click.option("--off-candidate", type=click.Choice(OFF_CANDIDATE), default=None,
              help="generative directories (reassign format): " + OFF_CANDIDATE_HELP
                   + " [default: the policy the model was trained with]")
@device_option()
@dtype_option()
@threads_option()
@quiet_option(expose_value=False)
@on_error_option()
@nertools_command("ner-align predict")
def predict(input, output, model, max_new_tokens, batch_tokens, keep_text, off_candidate, device, dtype, threads,
            on_error):
    """Predict target-typed spans: each record's `spans` is replaced by spans with "label"
    (the target type) and "source_label" (its source type; the table's for a classifier).

    Generated items that cannot be mapped back (not in the text, malformed, an unknown type)
    are dropped and counted on stderr; a target type outside its source type's candidates
    follows --off-candidate (dropped or repaired, counted either way).
    """
    from nertools.align.generative import Generator, is_generative_dir
    from nertools.runtime.models import set_threads
    from nertools.runtime.progress import log, progress

    set_threads(threads)
    policy = ErrorPolicy(on_error)
    records = read_records(input, policy=policy)
    gen = None
    if is_generative_dir(model):
        gen = Generator.load(model, device=device, dtype=dtype, off_candidate=off_candidate)
        stream = gen.tag(records, max_new_tokens=max_new_tokens, batch_tokens=batch_tokens, keep_text=keep_text)
    else:
        if off_candidate is not None:
            from nertools.errors import UsageError

            raise UsageError("--off-candidate applies to generative model directories only")
        from nertools.tagging.tagger import Tagger

        tagger = Tagger.load(model, device=device, dtype=dtype)
        assign = (tagger.meta.get("align") or {}).get("assign") or {}

        def stream_of(recs):
            for r in tagger.tag(recs, max_tokens=batch_tokens):
                for s in r["spans"]:
                    s["source"] = "ner-align"
                    if s["label"] in assign:
                        s["source_label"] = assign[s["label"]]
                yield r

        stream = stream_of(records)
    with RecordWriter(output) as out, progress(desc="ner-align predict", unit="rec") as bar:
        for rec in stream:
            out.write(rec)
            bar.update()
    policy.report("ner-align predict")
    if gen is not None:
        log(f"ner-align predict: {gen.stats.summary()}")


def register(group: click.Group) -> None:
    """Add ``train`` and ``predict`` to the ``ner-align`` group."""
    group.add_command(train)
    group.add_command(predict)
