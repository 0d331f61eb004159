"""ner-annotate: annotate records with an LLM (NuNER open concepts, InstructMine, label lists)."""

from __future__ import annotations

import click

from nertools.cli.common import CONTEXT_SETTINGS, input_argument, nertools_command, on_error_option, output_option
from nertools.cli.options import (FiniteFloat, corpus_options, llm_client_options, model_runtime_options,
                                  quiet_option, run_options)
from nertools.core.jsonl import ErrorPolicy
from nertools.errors import DataError, NertoolsError

PROG = "ner-annotate"

EXAMPLE = """\b
Examples:
  ner-annotate --prompt nuner --model smollm2-135m corpus.jsonl -o concepts.jsonl
  ner-annotate --prompt instructmine --paper-seeds conll2003 --model smollm2-135m dev.jsonl > mined.jsonl
  ner-annotate --prompt labels --labels labels.tsv --examples train.jsonl --n-examples 3 \\
      --backend openai --base-url http://127.0.0.1:8000/v1 --model llama --concurrency 8 \\
      dev.jsonl -o labelled.jsonl --resume
  ner-eval --gold dev.jsonl --pred labelled.jsonl
  ner-annotate --reparse labelled.jsonl > reparsed.jsonl          # no model needed
  ner-annotate --prompt labels --label PER --label LOC --backend batch --model gpt-4o-mini \\
      --batch-requests requests.jsonl dev.jsonl                   # upload to the Batch API
  ner-annotate --prompt labels --label PER --label LOC --backend batch --model gpt-4o-mini \\
      --batch-results results.jsonl dev.jsonl > labelled.jsonl

\b
Labels file: LABEL<TAB>DEFINITION lines (definition optional) or JSONL
{"label": "PER", "definition": "a person's name"}.
Prompt file (--prompt-file): the user turn, or turns each begun by a line "### system",
"### user" or "### assistant"; placeholders {sentence} {labels} {definitions} {examples}
{seeds}, {{ and }} for braces. --parse says how its answers are read.
"""


def _labels(label_specs, labels_file):
    from nertools.annotate.prompts import read_label_file

    pairs = []
    for spec in label_specs:
        lab, _, definition = spec.partition("=")
        if not lab.strip():
            raise click.BadParameter(f"{spec!r} has no label", param_hint="--label")
        pairs.append((lab.strip(), definition.strip()))
    if labels_file:
        pairs.extend(read_label_file(labels_file))
    labels, defs = [], {}
    for lab, d in pairs:
        if lab in defs:
            raise DataError(f"label {lab!r} is given twice")
        labels.append(lab)
        defs[lab] = d
    return labels, defs


def _seeds(seed_specs, seed_files, paper_seeds):
    from nertools.xner.seeds import PAPER_SEEDS, Seed, collect_seeds

    seeds = []
    if paper_seeds:
        seeds = [Seed.make(lab, text) for lab, text in PAPER_SEEDS[paper_seeds].items()]
    if seed_specs or seed_files:
        seeds += collect_seeds(seed_specs, seed_files)
    return seeds


def build_prompt(prompt, prompt_file, parse, labels, definitions, examples, seeds, demonstration):
    from nertools.annotate import prompts as P

    if prompt_file:
        try:
            with open(prompt_file, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as e:
            raise DataError(f"cannot read: {e.strerror or e}", path=prompt_file) from None
        return P.file_prompt(prompt_file, text, parser=parse or "auto", labels=labels or None,
                             definitions=definitions, examples=examples, seeds=seeds)
    if prompt == "nuner":
        return P.nuner_prompt(demonstration)
    if prompt == "instructmine":
        return P.instructmine_prompt(seeds)
    return P.labels_prompt(labels, definitions, examples)


@click.command(PROG, context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@input_argument()
@output_option(help="Output JSONL file (.gz compresses); - is stdout. A file appears when the run ends, "
                    "with every completed record also when the endpoint went down; with --resume, "
                    "lines are appended as they are done.")
@click.option("--prompt", type=click.Choice(["nuner", "instructmine", "labels"]), default=None,
              help="nuner: open concepts (entity <> concept <> description, with the paper's Figure 3 "
                   "demonstration); instructmine: X-NER's bracket prompt with one seed per type; "
                   "labels: the label names (and definitions, examples) you give.")
@click.option("--prompt-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Your own template (see below) instead of --prompt.")
@click.option("--parse", type=click.Choice(["nuner", "brackets", "labels", "auto"]), default=None,
              help="How --prompt-file answers are read (default auto).")
@click.option("--label", "label_specs", multiple=True, metavar="LABEL[=DEFINITION]",
              help="A label for the labels prompt (repeatable).")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False), default=None,
              help="Labels file: LABEL<TAB>DEFINITION lines or JSONL.")
@click.option("--examples", "examples_file", type=click.Path(dir_okay=False), default=None,
              help="Gold records; the first --n-examples with spans become few-shot examples.")
@click.option("--n-examples", type=click.IntRange(0), default=3, show_default=True)
@click.option("--seed", "seed_specs", multiple=True, metavar="LABEL=TEXT", help="A seed (instructmine).")
@click.option("--seeds", "seed_files", multiple=True, type=click.Path(dir_okay=False),
              help="Seeds file (as ner-divscore's).")
@click.option("--paper-seeds", type=click.Choice(["conll2003", "wnut17", "mit_restaurant"]), default=None,
              help="The X-NER paper's seeds for this data set.")
@click.option("--demonstration/--no-demonstration", default=True, show_default=True,
              help="nuner: include the paper's Figure 3 example as a demonstration turn.")
@click.option("--keep-concept-concept", is_flag=True,
              help="nuner: keep sentences with an item of concept \"concept\" (the paper drops them).")
@click.option("--max-items", type=click.IntRange(1), default=30, show_default=True,
              help="Items read per answer (small models loop).")
@click.option("--case-fallback", is_flag=True,
              help="Look an item up again ignoring case when its exact words are not in the text "
                   "(lower-cased corpora); such items are marked match=ignore_case and counted.")
@click.option("--reparse", is_flag=True,
              help="Parse the stored answers of annotated records again; no model is called.")
@click.option("--backend", type=click.Choice(["local", "openai", "batch"]), default="local", show_default=True)
@click.option("--model", default=None,
              help="local: Hugging Face name, folder, GGUF file or alias (smollm2-135m); "
                   "openai/batch: the endpoint's model name.")
@click.option("--max-new-tokens", type=click.IntRange(1), default=128, show_default=True,
              help="Answer length limit (local: new tokens; openai: max_tokens).")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True,
              help="local: prompts per generation batch.")
@click.option("--batch-tokens", type=click.IntRange(16), default=4096, show_default=True,
              help="local: padded tokens per batch (prompt + new tokens, per row).")
@click.option("--repetition-penalty", type=FiniteFloat(min=1.0), default=1.0, show_default=True,
              help="local: >1 discourages loops in small models (1.0 = plain greedy).")
@click.option("--prefix-cache/--no-prefix-cache", default=True, show_default=True,
              help="local: run the prompts' shared beginning (instruction, demonstration, examples) "
                   "once and reuse its key-value cache; the same greedy answers.")
@llm_client_options
@click.option("--api-key-file", type=click.Path(dir_okay=False), default=None,
              help="openai: file whose first line is the API key (else env OPENAI_API_KEY).")
@click.option("--concurrency", type=click.IntRange(1), default=4, show_default=True,
              help="openai: requests in flight.")
@click.option("--structured/--no-structured", default=False, show_default=True,
              help="openai/batch: ask for JSON-schema structured output (falls back to text when refused).")
@click.option("--price-prompt", type=FiniteFloat(0), default=None,
              help="Price per 1,000 prompt tokens (a cost line at the end).")
@click.option("--price-completion", type=FiniteFloat(0), default=None,
              help="Price per 1,000 completion tokens.")
@click.option("--batch-requests", type=click.Path(dir_okay=False), default=None,
              help="batch: write the Batch-API request JSONL here and stop.")
@click.option("--batch-results", type=click.Path(dir_okay=False, exists=True), default=None,
              help="batch: read this Batch-API output file and annotate with it.")
@model_runtime_options
@corpus_options(64, block_help="Records per block, the unit of --resume and --shard (each block is "
                               "generated on its own). --resume onto an output without a journal (a "
                               "run whose endpoint went down) skips the ids already in it instead.")
@on_error_option()
@quiet_option()
@nertools_command(PROG)
def main(input, output, prompt, prompt_file, parse, label_specs, labels_file, examples_file, n_examples,
         seed_specs, seed_files, paper_seeds, demonstration, keep_concept_concept, max_items, case_fallback,
         reparse, backend, model, max_new_tokens, batch_size, batch_tokens, repetition_penalty, prefix_cache,
         base_url, api_key_file, concurrency, timeout, retries, retry_wait, cache_dir, no_cache, structured,
         price_prompt, price_completion, batch_requests, batch_results, device, dtype, threads, resume, shard,
         block_records, on_error, quiet):
    """Annotate JSONL records with an LLM and write them with spans.

    Each output record keeps every parsed item (with its status: placed, overlap, not_found,
    unknown_label, input_markup), the raw answer and the prompt's identity in its
    "annotation" field; "spans" (replacing the input's) holds a non-overlapping selection:
    longest occurrence first, then the answer's order, then left to right. Items are placed
    only where their words occur in the text exactly (every occurrence); the rest are counted
    as not found (the hallucination rate, on stderr and in meta.annotate).
    """
    from nertools.annotate.run import AppendWriter, RunStats, annotate_stream, done_ids
    from nertools.core.jsonl import read_records
    from nertools.core.resume import PartialBlock, run_blocks
    from nertools.runtime.progress import log, progress

    def info(msg: str) -> None:
        log(msg, prog=PROG)

    if prompt and prompt_file:
        raise click.UsageError("give --prompt or --prompt-file, not both")
    if not reparse and not prompt and not prompt_file:
        raise click.UsageError("give --prompt nuner|instructmine|labels or --prompt-file (or --reparse)")
    if resume and output == "-":
        raise click.UsageError("--resume needs -o FILE")
    import os
    import time

    from nertools.core.resume import Journal, check_run, journal_path

    # an output without a journal (a plain run whose endpoint went down): continue by ids
    by_ids = resume and Journal.read(journal_path(output), cut=False) is None and os.path.exists(output) \
        and os.path.getsize(output) > 0
    if by_ids and shard != (0, 1):
        raise click.UsageError(f"--shard with --resume needs the progress journal {journal_path(output)}; "
                               f"{output} was written without one")
    header = None if by_ids else check_run(output, command=PROG, input_path=input, block=block_records,
                                          shard=shard, resume=resume,
                                          options=run_options(neutral=("concurrency", "retries", "retry_wait",
                                                                       "timeout", "cache_dir", "no_cache",
                                                                       "price_prompt", "price_completion")))
    policy = ErrorPolicy(on_error)
    prompt_t = None
    engine = None
    if not reparse:
        labels, definitions = _labels(label_specs, labels_file)
        seeds = _seeds(seed_specs, seed_files, paper_seeds)
        examples = []
        if examples_file and n_examples:
            from nertools.annotate.prompts import examples_from_records

            examples = examples_from_records(read_records(examples_file), labels or None, n_examples)
            if not examples:
                raise DataError("no record with spans to use as an example", path=examples_file)
        prompt_t = build_prompt(prompt, prompt_file, parse, labels, definitions, examples, seeds, demonstration)
        if not model:
            raise click.UsageError("--model is required (except with --reparse)")
        engine = _backend(backend, prompt_t, model=model, max_new_tokens=max_new_tokens, batch_size=batch_size,
                          batch_tokens=batch_tokens, repetition_penalty=repetition_penalty,
                          prefix_cache=prefix_cache, base_url=base_url,
                          api_key_file=api_key_file, concurrency=concurrency, timeout=timeout, retries=retries,
                          retry_wait=retry_wait, cache_dir=cache_dir, no_cache=no_cache, structured=structured,
                          batch_requests=batch_requests, batch_results=batch_results, device=device,
                          dtype=dtype, threads=threads, info=info)
        if backend == "batch" and batch_requests:
            _write_batch_requests(read_records(input, policy=policy), prompt_t, engine, batch_requests, info)
            policy.report(PROG)
            return

    bar = progress(unit="sent", desc=PROG)
    stats = RunStats()
    t0 = time.perf_counter()
    try:
        if by_ids:
            skip = done_ids(output)
            info(f"resuming: {len(skip)} records already in {output} (no progress journal: by ids)")
            with AppendWriter(output) as writer:
                annotate_stream(_records(input, policy, reparse), prompt_t, engine, writer.write, reparse=reparse,
                                skip_ids=skip, drop_concept=not keep_concept_concept, max_items=max_items,
                                case_fallback=case_fallback, bar=bar, stats=stats)
        else:
            def process(block, emit):
                annotate_stream(block, prompt_t, engine, emit, reparse=reparse,
                                drop_concept=not keep_concept_concept, max_items=max_items,
                                case_fallback=case_fallback, bar=bar, stats=stats)
                if stats.fatal:
                    raise PartialBlock([], NertoolsError(_fatal_message(stats, output)))

            try:
                run_blocks(_records(input, policy, reparse), process, output=output, command=PROG,
                           input_path=input, options=header and header["options"], block=block_records,
                           shard=shard, resume=resume, header=header, info=info, push=True)
            except NertoolsError:
                if not stats.fatal:
                    raise  # else: the summary first, then the error (below)
    finally:
        bar.close()
        stats.seconds = time.perf_counter() - t0
    policy.report(PROG)
    click.echo(f"{PROG}: {stats.summary()}", err=True)
    if engine is not None:
        m = engine.meter
        if m.prompt_tokens or m.completion_tokens:
            line = f"{PROG}: tokens: {m.prompt_tokens} prompt, {m.completion_tokens} completion"
            cost = m.cost(price_prompt, price_completion)
            if cost is not None:
                line += f"; cost {cost:.4f} at the given prices per 1k tokens"
            reused = getattr(engine, "prefix_tokens_reused", 0)
            if reused:
                line += (f"; {reused} prompt tokens from the shared-prefix cache "
                         f"({engine.prefix_tokens_run} run to make it)")
            click.echo(line, err=True)
    if stats.fatal:
        raise NertoolsError(_fatal_message(stats, output))


def _fatal_message(stats, output) -> str:
    where = "" if output == "-" else f" in {output}"
    return f"{stats.fatal} ({stats.records} records kept{where}; rerun with --resume to continue)"


def _records(path, policy, reparse):
    """Input records; with --reparse each must carry a stored answer (checked with file:line)."""
    from nertools.annotate.run import check_stored
    from nertools.core.jsonl import read_converted, read_records
    from nertools.core.record import normalize_record

    if not reparse:
        return read_records(path, policy=policy)
    return read_converted(path, lambda obj, ln: check_stored(normalize_record(obj, default_id=str(ln))),
                          policy=policy)


def _backend(kind, prompt_t, *, model, max_new_tokens, batch_size, batch_tokens, repetition_penalty, prefix_cache,
             base_url, api_key_file, concurrency, timeout, retries, retry_wait, cache_dir, no_cache, structured,
             batch_requests, batch_results, device, dtype, threads, info):
    from nertools.annotate import backends as B
    from nertools.llm.client import LLMConfig, default_cache_dir, read_api_key

    rf = B.response_format_for(prompt_t.parser, prompt_t.labels) if structured else None
    if kind == "local":
        from nertools.runtime.models import CAUSAL, load_lm, set_threads
        from nertools.runtime.progress import quiet_transformers

        set_threads(threads)
        quiet_transformers()
        lm = load_lm(model, device=device, dtype=dtype)
        if lm.kind != CAUSAL:
            raise NertoolsError(f"model {model!r} is a masked LM; ner-annotate needs a causal (generative) LM")
        eng = B.LocalBackend(lm, max_new_tokens=max_new_tokens, batch_size=batch_size, batch_tokens=batch_tokens,
                             repetition_penalty=repetition_penalty, prefix_cache=prefix_cache)
        info(f"{model}: {'chat template' if eng.use_chat else 'plain completion prompt'}, "
             f"context {eng.context or 'unknown'}")
        return eng
    if kind == "openai":
        if not base_url:
            raise click.UsageError("--backend openai needs --base-url")
        cfg = LLMConfig(base_url=base_url, model=model, api_key=read_api_key(None, api_key_file), timeout=timeout,
                        retries=retries, retry_wait=retry_wait, max_tokens=max_new_tokens,
                        cache_dir=None if no_cache else (cache_dir or default_cache_dir()))
        return B.OpenAIBackend(cfg, concurrency=concurrency, response_format=rf, log=info)
    if bool(batch_requests) == bool(batch_results):
        raise click.UsageError("--backend batch needs one of --batch-requests FILE or --batch-results FILE")
    if batch_requests:
        cfg = LLMConfig(base_url=base_url or "https://api.openai.com/v1", model=model, max_tokens=max_new_tokens)
        return (cfg, rf)
    return B.BatchResultsBackend(B.read_batch_results(batch_results), model)


def _write_batch_requests(records, prompt_t, engine, path, info):
    from nertools.annotate.backends import batch_request_line, check_unique_ids
    from nertools.core.jsonl import RecordWriter

    cfg, rf = engine
    recs = list(records)
    check_unique_ids(r.get("id") for r in recs)
    with RecordWriter(path, form="canonical") as w:  # Batch-API requests, not records
        for r in recs:
            w.write(batch_request_line(str(r.get("id")), cfg, prompt_t.render(r["text"]), rf))
    info(f"wrote {len(recs)} Batch-API requests to {path}; run again with --batch-results FILE")


if __name__ == "__main__":
    main(prog_name=PROG)
