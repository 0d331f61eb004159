"""Speed of the X-NER official-mode divergence test: released execution strategy vs nertools.

Workload (shared/fixtures/xner-official/README.md): fast mode, label PER, seed "Masaki Yoshida",
description "The person name: X", temperature 2, the 100 timing sentences (1,635 candidate
spans), a roberta-base-shaped RobertaForMaskedLM with random weights (12 layers, hidden 768,
12 heads, FFN 3072; ``torch.manual_seed(0)``) built here, the tiny fixture model's genuine
RoBERTa tokenizer, 2 CPU threads.

Side by side in one run:

(a) baseline -- :func:`tests/reference/xner_reference.reference_record_scores`, a literal
    re-implementation of the released ``fastndd_search`` execution strategy (rows right-padded
    with id 0, 128 rows per forward, vocabulary projection at every position, duplicate rows
    recomputed, the seed side recomputed per span). It is slow (~1 span/s), so by default it
    runs only the first sentences until ``--baseline-spans`` spans are done; its per-span rate
    is extrapolated to the workload (stated in the output);
(b) nertools -- :class:`nertools.xner.masked.MaskedDivergenceScorer` in official mode on the
    whole workload.

The scores of (a) and (b) are compared on the spans (a) did. Usage::

    python benchmarks/xner_speed.py                      # ~3-5 minutes on 2 cores
    python benchmarks/xner_speed.py --baseline-spans 0   # engine only
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the reference scorer lives with the tests
FIXTURES = ROOT.parent / "shared" / "fixtures" / "xner-official"


def build_model(layers: int, hidden: int, seed: int = 0):
    import torch
    from transformers import RobertaConfig, RobertaForMaskedLM

    cfg = RobertaConfig(vocab_size=50265, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                        max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                        bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    torch.manual_seed(seed)
    model = RobertaForMaskedLM(cfg)
    model.eval()
    return model


def baseline_token_count(tok, records, seed) -> tuple[int, int]:
    """Rows and padded tokens the released strategy runs (no model call): per sentence, every
    candidate's 12 rows, padded to the sentence's longest row."""
    from nertools.xner.masked import fill_template, wordpiece_detokenize
    from reference.xner_reference import _create_query

    template = "The [LABEL] name: [SEED]"
    rows_total = tokens = 0
    for rec in records:
        words = [t["text"] for t in rec["tokens"]]
        rows = []
        for c in rec["candidates"]:
            a, b = c["token_start"], c["token_end"] + 1
            p, q = _create_query(tok, wordpiece_detokenize(words),
                                 wordpiece_detokenize(words[:a] + [seed.text] + words[b:]),
                                 wordpiece_detokenize(words[:a] + ["X"] + words[b:]), False)
            p2, q2 = _create_query(tok, fill_template(template, seed.label_word, seed.text),
                                   fill_template(template, seed.label_word, wordpiece_detokenize(words[a:b])),
                                   fill_template(template, seed.label_word, "X"), True)
            rows += p + p2 + q + q2
        if rows:
            rows_total += len(rows)
            tokens += len(rows) * max(len(r) for r in rows)
    return rows_total, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sentences", type=Path, default=FIXTURES / "timing_sentences_100.jsonl")
    ap.add_argument("--tokenizer", type=Path, default=FIXTURES / "roberta-tiny-random")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--baseline-spans", type=int, default=40,
                    help="run the baseline on the first sentences until this many spans (0: skip)")
    ap.add_argument("--limit-sentences", type=int, default=None,
                    help="use only the first N sentences (a quicker, smaller workload)")
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--compare-padding", action="store_true",
                    help="also run the engine with batches cut by the token budget only (no padding rule)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "out" / "xner_speed.json")
    args = ap.parse_args()

    import torch
    from transformers import AutoTokenizer

    from nertools.xner.masked import MaskedDivergenceScorer
    from reference.xner_reference import reference_record_scores
    from nertools.core.jsonl import read_records
    from nertools.runtime.models import LoadedLM, MASKED
    from nertools.xner.seeds import Seed
    from nertools.xner.candidates import SpanRules, add_candidates

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(str(args.tokenizer))
    model = build_model(args.layers, args.hidden)
    lm = LoadedLM(model=model, tokenizer=tok, kind=MASKED, device=torch.device("cpu"),
                  dtype=torch.float32, name=f"random roberta {args.layers}x{args.hidden}")
    records = list(add_candidates(read_records(str(args.sentences)), SpanRules()))[:args.limit_sentences]
    n_spans = sum(len(r["candidates"]) for r in records)
    seed = Seed.make("PER", "Masaki Yoshida")
    print(f"workload: {len(records)} sentences, {n_spans} candidate spans, PER, fast mode, "
          f"{args.layers} layers x {args.hidden}, {args.threads} threads")

    # (b) nertools engine, whole workload
    scorer = MaskedDivergenceScorer(lm, [seed], method="official", batch_tokens=args.batch_tokens)
    t0, c0 = time.perf_counter(), time.process_time()
    scored = list(scorer.score_records(copy.deepcopy(records)))
    t_engine, cpu_engine = time.perf_counter() - t0, time.process_time() - c0
    engine_rate = n_spans / t_engine
    print(f"nertools: {n_spans} spans in {t_engine:.1f} s = {engine_rate:.2f} spans/s "
          f"(CPU time {cpu_engine:.1f} s; {scorer.runner.rows_run} rows, "
          f"{scorer.runner.tokens_run} padded tokens run)")

    if args.compare_padding:
        loose = MaskedDivergenceScorer(lm, [seed], method="official", batch_tokens=args.batch_tokens)
        loose.runner.max_padding = float("inf")
        t0 = time.perf_counter()
        list(loose.score_records(copy.deepcopy(records)))
        t_loose = time.perf_counter() - t0
        print(f"nertools without the padding rule: {n_spans / t_loose:.2f} spans/s "
              f"({loose.runner.tokens_run} padded tokens); with it {engine_rate:.2f} spans/s "
              f"({scorer.runner.tokens_run}): {t_loose / t_engine:.2f}x")

    # the work each strategy must do, counted without a model: an upper bound on the speed-up
    b_rows, b_tokens = baseline_token_count(tok, records, seed)
    head = args.hidden * 50265  # vocabulary projection per position (multiply-adds)
    layer = 12 * args.hidden * args.hidden  # q, k, v, o + 2 x 4h FFN per token and layer
    per_token = args.layers * layer
    work_base = b_tokens * (per_token + head)
    work_exact = scorer.runner.real_tokens_run * per_token + scorer.runner.rows_run * head
    work_engine = scorer.runner.tokens_run * per_token + scorer.runner.rows_run * head
    print(f"work per span (tokens through the encoder): released strategy {b_tokens / n_spans:.0f} padded "
          f"(+ vocabulary projection at each), nertools {scorer.runner.tokens_run / n_spans:.0f} padded / "
          f"{scorer.runner.real_tokens_run / n_spans:.0f} real (+ projection only at masks)")
    print(f"speed-up bound from matrix-multiply work (attention ignored): {work_base / work_engine:.2f}x "
          f"for the rows nertools runs, {work_base / work_exact:.2f}x with zero padding")

    # (a) baseline on the first sentences
    base = {"spans": 0, "seconds": 0.0, "cpu": 0.0}
    max_abs = max_rel = 0.0
    if args.baseline_spans > 0:
        t0, c0 = time.perf_counter(), time.process_time()
        for rec, mine in zip(records, scored):
            if base["spans"] >= args.baseline_spans:
                break
            ref = reference_record_scores(model, tok, rec, seed.text, seed.label_word)
            base["spans"] += len(ref)
            for r, c in zip(ref, mine["candidates"]):
                got = c["scores"]["PER"]
                max_abs = max(max_abs, abs(got - r))
                max_rel = max(max_rel, abs(got - r) / max(abs(r), 1e-30))
        base["seconds"], base["cpu"] = time.perf_counter() - t0, time.process_time() - c0
        base_rate = base["spans"] / base["seconds"]
        print(f"baseline: {base['spans']} spans in {base['seconds']:.1f} s = {base_rate:.3f} spans/s "
              f"(extrapolated to the workload: {n_spans / base_rate:.0f} s)")
        print(f"scores on the {base['spans']} common spans: max |diff| {max_abs:.3g}, "
              f"max relative diff {max_rel:.3g}")
        ratio = engine_rate / base_rate
        cpu_ratio = (n_spans / cpu_engine) / (base["spans"] / base["cpu"])
        print(f"CPU-time per span: baseline {base['cpu'] / base['spans']:.2f} s, nertools "
              f"{cpu_engine / n_spans:.2f} s -> {cpu_ratio:.1f}x (less sensitive to other load)")
        print()
        print("| implementation | spans | seconds | spans/s | speed-up |")
        print("|---|---|---|---|---|")
        print(f"| released strategy (baseline, first {base['spans']} spans) | {base['spans']} | "
              f"{base['seconds']:.1f} | {base_rate:.2f} | 1.0x |")
        print(f"| nertools official mode | {n_spans} | {t_engine:.1f} | {engine_rate:.2f} | {ratio:.1f}x |")
    else:
        base_rate = ratio = cpu_ratio = math.nan
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "sentences": len(records), "spans": n_spans, "threads": args.threads,
        "engine_seconds": t_engine, "engine_spans_per_s": engine_rate,
        "baseline_spans": base["spans"], "baseline_seconds": base["seconds"],
        "baseline_spans_per_s": base_rate, "speedup": ratio, "cpu_speedup": cpu_ratio, "engine_cpu_seconds": cpu_engine,
        "baseline_cpu_seconds": base["cpu"],
        "max_abs_diff": max_abs, "max_rel_diff": max_rel,
        "engine_rows": scorer.runner.rows_run, "engine_tokens": scorer.runner.tokens_run,
        "engine_real_tokens": scorer.runner.real_tokens_run, "baseline_rows": b_rows,
        "baseline_padded_tokens": b_tokens, "work_bound": work_base / work_engine,
        "work_bound_no_padding": work_base / work_exact}, indent=1))


if __name__ == "__main__":
    main()
