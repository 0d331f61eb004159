"""ner-retrieve: GeNER's "ask a question, get entities" step over a local corpus or an LLM."""

from __future__ import annotations

import click

from nertools.cli.common import CONTEXT_SETTINGS, make_policy, nertools_command, on_error_option, output_option
from nertools.gener.dictionary import write_dictionary
from nertools.errors import NertoolsError
from nertools.core.jsonl import RecordWriter
from nertools.gener.phrase_rules import rules_without

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


def _device_options(fn):
    fn = click.option("--threads", type=click.IntRange(1), default=None,
                      help="CPU threads for torch (default: torch's choice).")(fn)
    fn = click.option("--dtype", default="auto", show_default=True,
                      type=click.Choice(["auto", "float32", "bfloat16", "float16"]))(fn)
    fn = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")(fn)
    return fn


@main.command("index", context_settings=CONTEXT_SETTINGS, epilog=INDEX_EXAMPLE)
@click.option("--corpus", required=True, type=click.Path(dir_okay=False),
              help="JSONL corpus (records in any nertools input form).")
@click.option("--model", default="all-minilm-l6-v2", show_default=True,
              help="Hugging Face encoder: name, local folder or alias.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Index directory.")
@click.option("--span-repr", type=click.Choice(["mean", "start-end"]), default="mean", show_default=True,
              help="Phrase vector: mean of its sub-token states, or first and last state side by side.")
@click.option("--context-weight", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Mix this much of the sentence's mean state into each phrase vector.")
@click.option("--max-span-len", type=click.IntRange(1), default=3, show_default=True,
              help="Longest candidate phrase in words.")
@click.option("--max-length", type=click.IntRange(8), default=128, show_default=True,
              help="Encoder window in sub-tokens (longer sentences are truncated).")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--rebuild", is_flag=True, help="Rebuild from scratch (needed when the corpus changed "
                                              "other than by appending, or the settings changed).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@_device_options
@on_error_option()
@nertools_command("ner-retrieve index")
def index_cmd(corpus, model, out, span_repr, context_weight, max_span_len, max_length, batch_size,
              rebuild, quiet, device, dtype, threads, on_error):
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
    policy = make_policy(on_error)
    settings = IndexSettings(model=model, span_repr=span_repr, context_weight=context_weight,
                             max_span_len=max_span_len, max_length=max_length)
    rep = build_index(corpus, out, settings, device=device, dtype=dtype, batch_size=batch_size,
                      rebuild=rebuild, policy=policy, progress=not quiet)
    policy.report("ner-retrieve index")
    if rep.status == "up-to-date":
        click.echo(f"ner-retrieve index: {out} is up to date ({rep.total_phrases} phrases)", err=True)
    else:
        click.echo(f"ner-retrieve index: {rep.status} {out}: {rep.sentences} sentences, "
                   f"{rep.phrases} phrase vectors in {rep.seconds:.1f}s "
                   f"({rep.total_phrases} phrases in all)", err=True)


def _collect_questions(questions, labels, question_file, type_words):
    from nertools.gener.questions import make_question, read_questions

    tw = {}
    for spec in type_words:
        if "=" not in spec:
            raise click.BadParameter(f"{spec!r} is not LABEL=WORD", param_hint="--type-word")
        k, v = spec.split("=", 1)
        tw[k.strip()] = v.strip()
    out = []
    if questions:
        if len(labels) != 1:
            raise click.UsageError("--question needs exactly one --label")
        out.extend(make_question(labels[0], q, tw.get(labels[0])) for q in questions)
    else:
        out.extend(make_question(lab, None, tw.get(lab)) for lab in labels)
    if question_file:
        out.extend(read_questions(question_file))
    if not out:
        raise click.UsageError("give --label (with or without --question) or --questions FILE")
    return out


@main.command("query", context_settings=CONTEXT_SETTINGS, epilog=QUERY_EXAMPLE)
@click.option("--index", "index_path", type=click.Path(file_okay=False),
              help="Index directory (dense backend).")
@click.option("--question", "questions", multiple=True, help="A question, e.g. \"Which city?\" (repeatable).")
@click.option("--label", "labels", multiple=True, help="Label of the question(s); alone: \"Which [TYPE]?\".")
@click.option("--questions", "question_file", type=click.Path(dir_okay=False), default=None,
              help="File of LABEL<TAB>QUESTION lines or JSONL questions.")
@click.option("--type-word", "type_words", multiple=True, metavar="LABEL=WORD",
              help="Type word for a label's template question and rule 7 (default: LOC -> location).")
@click.option("--top-k", type=click.IntRange(1), default=100, show_default=True,
              help="Phrases per question (dense), or entities to ask for (openai).")
@click.option("--dict-out", type=click.Path(dir_okay=False), default=None,
              help="Write the normalised pseudo-dictionary (phrase<TAB>label<TAB>count) here.")
@click.option("--no-rule", "no_rules", type=click.IntRange(1, 7), multiple=True, metavar="N",
              help="Turn normalisation rule N (1-7) off for the pseudo-dictionary; repeatable.")
@click.option("--backend", type=click.Choice(["dense", "openai"]), default="dense", show_default=True)
@click.option("--base-url", default=None, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")
@click.option("--model", default=None, help="openai: model name. dense: encoder (default: the index's).")
@click.option("--api-key", default=None, envvar="OPENAI_API_KEY", help="API key (env OPENAI_API_KEY).")
@click.option("--timeout", type=click.FloatRange(0.01), default=60.0, show_default=True,
              help="openai: seconds per request.")
@click.option("--retries", type=click.IntRange(0), default=3, show_default=True,
              help="openai: retries after a timeout, connection error, HTTP 429 or 5xx.")
@click.option("--retry-wait", type=click.FloatRange(0), default=1.0, show_default=True,
              help="openai: seconds before the first retry (doubles each time).")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help="openai: response cache (default ~/.cache/nertools/llm).")
@click.option("--no-cache", is_flag=True, help="openai: neither read nor write the cache.")
@output_option()
@_device_options
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
    from nertools.gener import phrase_index as R
    from nertools.gener.pseudo_dict import pseudo_dictionary
    from nertools.gener.questions import ask_llm_entities
    from nertools.llm.client import LLMConfig, default_cache_dir

    set_threads(threads)
    qs = _collect_questions(questions, labels, question_file, type_words)
    rules = rules_without(no_rules)
    if backend == "openai":
        if not base_url or not model:
            raise click.UsageError("--backend openai needs --base-url and --model")
        cfg = LLMConfig(base_url=base_url, model=model, api_key=api_key, timeout=timeout,
                          retries=retries, retry_wait=retry_wait,
                          cache_dir=None if no_cache else (cache_dir or default_cache_dir()))
        answers = []
        for q in qs:
            names = ask_llm_entities(cfg, q, top_k, log=lambda m: click.echo(f"ner-retrieve query: {m}", err=True))
            click.echo(f"ner-retrieve query: {q.label} ({q.text!r}): {len(names)} entities", err=True)
            answers.extend((name, q) for name in names)
        entries = pseudo_dictionary(answers, rules)
        with RecordWriter(output) as out:
            for phrase, label, count in entries:
                out.write({"phrase": phrase, "label": label, "count": count, "source": "openai"})
    else:
        if not index_path:
            raise click.UsageError("the dense backend needs --index")
        index = R.PhraseIndex.open(index_path)
        encoder = None
        if model and model != index.settings.model:
            click.echo(f"ner-retrieve query: encoding questions with {model!r}; the index was built "
                       f"with {index.settings.model!r}", err=True)
            encoder = R.load_encoder(model, device=device, dtype=dtype, max_length=index.settings.max_length)
        results = R.query_index(index, qs, top_k, encoder=encoder, device=device, dtype=dtype)
        all_hits = [h for hits in results for h in hits]
        for q, hits in zip(qs, results):
            click.echo(f"ner-retrieve query: {q.label} ({q.text!r}): {len(hits)} phrases, best "
                       f"{hits[0].score:.3f} {hits[0].text!r}" if hits else
                       f"ner-retrieve query: {q.label} ({q.text!r}): nothing found", err=True)
        with RecordWriter(output) as out:
            for rec in R.evidence_records(index, sorted(all_hits, key=lambda h: -h.score)):
                out.write(rec)
        entries = pseudo_dictionary(((h.text, h.question) for h in all_hits), rules)
    if dict_out:
        if not entries:
            raise NertoolsError("the pseudo-dictionary is empty after normalisation; nothing written")
        n = write_dictionary(dict_out, entries)
        click.echo(f"ner-retrieve query: wrote {n} dictionary entries to {dict_out}", err=True)
