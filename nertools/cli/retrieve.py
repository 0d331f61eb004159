"""ner-retrieve: GeNER's "ask a question, get entities" step over a local corpus or an LLM."""

from __future__ import annotations

import click

from nertools.cli.common import CONTEXT_SETTINGS, nertools_command, on_error_option, output_option
from nertools.cli.options import (FiniteFloat, count_type, llm_client_options,
                                   model_option, model_runtime_options, quiet_option)
from nertools.core.jsonl import ErrorPolicy, RecordWriter
from nertools.core.labels import parse_key_values
from nertools.errors import NertoolsError
from nertools.gener.dictionary import write_dictionary
from nertools.gener.phrase_rules import rules_without
from nertools.runtime.progress import is_quiet, log, quiet_transformers

INDEX_EXAMPLE = """\b
Examples:
  ner-retrieve index --corpus corpus.jsonl --model all-minilm-l6-v2 --out idx
  ner-retrieve index --corpus corpus.jsonl --out idx          # again after appending lines: incremental
  ner-retrieve index --corpus edited.jsonl --out idx --rebuild
"""

QUERY_EXAMPLE = """\b
Examples:
  ner-retrieve query --index idx --question "Which city?" --label LOC --top-k 100 > evidence.jsonl
  ner-retrieve query --index idx --label LOC --label PER --dict-out dict.tsv > /dev/null
  ner-retrieve query --index idx --questions questions.tsv --dict-out dict.tsv -o evidence.jsonl
  ner-retrieve query --backend openai --base-url http://127.0.0.1:8000/v1 --model llama \\
      --label LOC --top-k 200 --dict-out dict.tsv > dict.jsonl
  ner-dictmatch --dict dict.tsv corpus.jsonl > silver.jsonl

\b
Questions file: LABEL<TAB>QUESTION per line (LABEL alone: "Which [TYPE]?"), or JSONL
{"label": "LOC", "question": "Which city?"}; several questions per label are fine.
"""


@click.group("ner-retrieve", context_settings=CONTEXT_SETTINGS)
def main():
    """Retrieve entity phrases for "Which [TYPE]?" questions (GeNER): build a dense phrase
    index over a JSONL corpus, query it, and write a pseudo-dictionary for ner-dictmatch."""


@main.command("index", context_settings=CONTEXT_SETTINGS, epilog=INDEX_EXAMPLE)
@click.option("--corpus", required=True, type=click.Path(dir_okay=False),
              help="JSONL corpus (records in any nertools input form).")
@model_option(required=False, default="all-minilm-l6-v2", show_default=True,
              help="Hugging Face encoder: name, local folder or alias.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Index directory.")
@click.option("--span-repr", type=click.Choice(["mean", "start-end"]), default="mean", show_default=True,
              help="Phrase vector: mean of its sub-token states, or first and last state side by side.")
@click.option("--context-weight", type=FiniteFloat(0, 1), default=0.0, show_default=True,
              help="Mix this much of the sentence's mean state into each phrase vector.")
@click.option("--max-span-len", type=count_type(), default=3, show_default=True,
              help="Longest candidate phrase in words.")
@click.option("--max-length", type=count_type(8), default=128, show_default=True,
              help="Encoder window in sub-tokens (longer sentences are cut; the phrases past the "
                   "cut are left out, counted in a warning and in the manifest).")
@click.option("--batch-size", type=count_type(), default=32, show_default=True)
@click.option("--rebuild", is_flag=True, help="Rebuild from scratch (needed when the corpus changed "
                                              "other than by appending, or the settings changed).")
@model_runtime_options
@on_error_option()
@quiet_option(expose_value=False)
@nertools_command("ner-retrieve index")
def index_cmd(corpus, model, out, span_repr, context_weight, max_span_len, max_length, batch_size,
              rebuild, device, dtype, threads, on_error):
    """Build a dense phrase index over the candidate phrases of a corpus.

    Candidates are word n-grams (up to --max-span-len words; no stop words, punctuation or
    digits), embedded in context by the encoder. The index is a directory of memory-mapped
    .npy shards plus a manifest with the corpus fingerprint: running the command again after
    lines were appended to the corpus indexes only the new lines; any other change is refused
    unless --rebuild.
    """
    from nertools.runtime.models import set_threads
    from nertools.gener.phrase_index import IndexSettings, build_index

    set_threads(threads)
    quiet_transformers()  # transformers' load bars and reports are not this command's output
    policy = ErrorPolicy(on_error)
    settings = IndexSettings(model=model, span_repr=span_repr, context_weight=context_weight,
                             max_span_len=max_span_len, max_length=max_length)
    rep = build_index(corpus, out, settings, device=device, dtype=dtype, batch_size=batch_size,
                      rebuild=rebuild, policy=policy, progress=not is_quiet())
    policy.report("ner-retrieve index")
    if rep.status == "up-to-date":
        log(f"{out} is up to date ({rep.total_phrases} phrases)", prog="ner-retrieve index")
    else:
        log(f"{rep.status} {out}: {rep.sentences} sentences, {rep.phrases} phrase vectors in "
            f"{rep.seconds:.1f}s ({rep.total_phrases} phrases in all)", prog="ner-retrieve index")
    if rep.truncated_sentences:
        # not silent even with --quiet: a cut is a loss of data
        click.echo(f"ner-retrieve index: warning: {rep.truncated_sentences} sentence(s) longer than "
                   f"--max-length {max_length} sub-tokens were cut; {rep.dropped_phrases} candidate "
                   f"phrase(s) past the cut were left out of the index (raise --max-length to keep "
                   f"them)", err=True)


@main.command("query", context_settings=CONTEXT_SETTINGS, epilog=QUERY_EXAMPLE)
@click.option("--index", "index_path", type=click.Path(file_okay=False),
              help="Index directory (dense backend).")
@click.option("--question", "questions", multiple=True, help="A question, e.g. \"Which city?\" (repeatable).")
@click.option("--label", "labels", multiple=True, help="Label of the question(s); alone: \"Which [TYPE]?\".")
@click.option("--questions", "question_file", type=click.Path(dir_okay=False), default=None,
              help="File of LABEL<TAB>QUESTION lines or JSONL questions.")
@click.option("--type-word", "type_words", multiple=True, metavar="LABEL=WORD",
              help="Type word for a label's template question and rule 7 (default: LOC -> location).")
@click.option("--top-k", type=count_type(), default=100, show_default=True,
              help="Phrases per question (dense), or entities to ask for (openai).")
@click.option("--dict-out", type=click.Path(dir_okay=False), default=None,
              help="Write the normalised pseudo-dictionary (phrase<TAB>label<TAB>count) here.")
@click.option("--no-rule", "no_rules", type=click.IntRange(1, 7), multiple=True, metavar="N",
              help="Turn normalisation rule N (1-7) off for the pseudo-dictionary; repeatable.")
@click.option("--backend", type=click.Choice(["dense", "openai"]), default="dense", show_default=True)
@model_option(required=False, default=None, help="openai: model name. dense: encoder (default: the index's).")
@click.option("--api-key", default=None, envvar="OPENAI_API_KEY", help="API key (env OPENAI_API_KEY).")
@llm_client_options
@output_option()
@model_runtime_options
@quiet_option(expose_value=False)
@nertools_command("ner-retrieve query")
def query_cmd(index_path, questions, labels, question_file, type_words, top_k, dict_out, no_rules,
              backend, base_url, model, api_key, timeout, retries, retry_wait, cache_dir, no_cache,
              output, device, dtype, threads):
    """Ask "Which [TYPE]?" questions and emit the evidence, or ask an LLM.

    dense: stdout gets one record per evidence sentence with the retrieved phrases as spans
    ({"label", "score" (cosine, higher is better), "source": "retrieve", "question"}).
    openai: stdout gets the pseudo-dictionary as JSONL {"phrase", "label", "count"}, which
    ner-dictmatch --dict reads too. --dict-out writes the same dictionary as TSV.
    """
    from nertools.runtime.models import set_threads
    from nertools.gener.query import query_dense, query_llm
    from nertools.gener.questions import collect_questions

    def note(message: str) -> None:
        log(message, prog="ner-retrieve query")

    set_threads(threads)
    quiet_transformers()
    tw = parse_key_values(type_words, option="--type-word", form="LABEL=WORD")
    qs = collect_questions(labels, questions, question_file, tw)
    rules = rules_without(no_rules)
    if backend == "openai":
        from nertools.llm.client import LLMConfig, default_cache_dir

        if not base_url or not model:
            raise click.UsageError("--backend openai needs --base-url and --model")
        cfg = LLMConfig(base_url=base_url, model=model, api_key=api_key, timeout=timeout,
                        retries=retries, retry_wait=retry_wait,
                        cache_dir=None if no_cache else (cache_dir or default_cache_dir()))
        records, entries = query_llm(cfg, qs, top_k, rules=rules, log=note)
    else:
        if not index_path:
            raise click.UsageError("the dense backend needs --index")
        records, entries = query_dense(index_path, qs, top_k, model=model, device=device, dtype=dtype,
                                       rules=rules, log=note)
    if dict_out and entries:
        # before the evidence stream: a reader of stdout that stops early (| head) must not
        # cost the dictionary
        n = write_dictionary(dict_out, entries)
        note(f"wrote {n} dictionary entries to {dict_out}")
    with RecordWriter(output) as out:
        for rec in records:
            out.write(rec)
    if dict_out and not entries:
        raise NertoolsError("the pseudo-dictionary is empty after normalisation; nothing written")
