"""Benchmark: GeNER retrieval quality and dictionary-matching F1 (issue 5).

For each data set (``conll2003`` and ``ncbi_disease`` dev from ``../shared/data``):

1. index the first ``--sentences`` dev sentences with the encoder (MiniLM by default:
   ``all-minilm-l6-v2``), exactly as ``ner-retrieve index`` does;
2. ask each question (GeNER's "Which [TYPE]?" template plus sub-questions) for the top
   ``--top-k`` phrase occurrences and report
   * *dict P@100*: precision of the question's normalised pseudo-dictionary (rules 1-7;
     entries ranked by count, then by first retrieval) at 100 entries (or all, when fewer):
     an entry is right when it is, case-insensitively, a gold entity string of that type in
     the indexed sentences;
   * *raw P@100*: of the first 100 retrieved occurrences, the share that are exactly a gold
     span of that type (no normalisation);
3. build the normalised pseudo-dictionary from all answers and
   match it into the whole dev split (gold spans removed) with ``ner-dictmatch``'s matcher;
   strict entity F1 by :func:`nertools.evaluation.evaluate`, with rule 10 (boundary
   refinement) on and off;
4. the same matching with a gold dictionary from the train split (every train entity
   string), as the reference for what dictionary matching can reach, again rule 10 on/off.

Usage: ``python benchmarks/retrieval_quality.py [--sentences 1000] [--threads 2]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from nertools.gener.dictionary import Dictionary  # noqa: E402
from nertools.gener.dictmatch import DictionaryMatcher  # noqa: E402
from nertools.evaluation.strict import evaluate  # noqa: E402
from nertools.gener.phrase_rules import NormalizationRules, rules_without  # noqa: E402
from nertools.gener.phrase_index import IndexSettings, PhraseIndex, build_index, load_encoder, query_index  # noqa: E402
from nertools.gener.questions import make_question  # noqa: E402
from nertools.gener.pseudo_dict import pseudo_dictionary  # noqa: E402

QUESTIONS = {
    "conll2003": [("PER", None), ("PER", "Which politician?"), ("PER", "Which athlete?"),
                  ("LOC", None), ("LOC", "Which city?"), ("LOC", "Which country?"),
                  ("ORG", None), ("ORG", "Which company?"), ("ORG", "Which sports team?"),
                  ("MISC", None), ("MISC", "Which nationality?"), ("MISC", "Which event?")],
    "ncbi_disease": [("Disease", "Which disease?"), ("Disease", "Which cancer?"),
                     ("Disease", "Which syndrome?"), ("Disease", "Which deficiency?"),
                     ("Disease", "Which disorder?")],
}
#: Rules turned off per data set in the main setting (disease names are lower case, so
#: rules 3 and 9 would remove nearly all of them; GeNER also used per-domain settings).
DATASET_RULES_OFF = {"conll2003": (), "ncbi_disease": (3, 9)}


def load(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.open("rb")]


def gold_lexicon(records) -> dict[str, set[str]]:
    lex: dict[str, set[str]] = {}
    for r in records:
        for s in r["spans"]:
            lex.setdefault(s["label"], set()).add(r["text"][s["start"]:s["end"]].lower())
    return lex


def match_f1(dev: list[dict], entries, rules: NormalizationRules, labels: list[str]) -> dict:
    d = Dictionary(rules=rules)
    for phrase, label, count in entries:
        d.add(phrase, label, count)
    d.finish()
    m = DictionaryMatcher(d, drop_existing=True)
    preds = [m.annotate({**r, "spans": list(r["spans"])}) for r in dev]
    res = evaluate(dev, preds)
    return {"f1": res["micro"]["f1"], "p": res["micro"]["precision"], "r": res["micro"]["recall"],
            "per_label": {lab: res["labels"].get(lab, {}).get("f1", 0.0) for lab in labels},
            "phrases": len(d)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all-minilm-l6-v2")
    ap.add_argument("--sentences", type=int, default=1000, help="dev sentences to index")
    ap.add_argument("--top-k", type=int, default=500, help="phrases retrieved per question")
    ap.add_argument("--workdir", default=str(ROOT / "benchmarks" / "out" / "retrieval"),
                    help="corpus copies and indexes (reused when up to date)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--datasets", default="conll2003,ncbi_disease")
    ap.add_argument("--context-weight", type=float, default=0.0)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    encoder = load_encoder(args.model, device="cpu")
    tmp = Path(args.workdir)
    tmp.mkdir(parents=True, exist_ok=True)
    for ds in args.datasets.split(","):
        dev = load(SHARED / ds / "dev.jsonl")
        train = load(SHARED / ds / "train.jsonl")
        labels = sorted({s["label"] for r in dev for s in r["spans"]})
        corpus = tmp / f"{ds}.jsonl"
        corpus.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE)
                                    for r in dev[:args.sentences]))
        t = time.perf_counter()
        cw = f"-cw{args.context_weight}" if args.context_weight else ""
        rep = build_index(str(corpus), str(tmp / f"{ds}-{args.model.replace('/', '_')}{cw}-idx"),
                          IndexSettings(model=args.model, context_weight=args.context_weight),
                          encoder=encoder, progress=False)
        idx_s = time.perf_counter() - t
        index = PhraseIndex.open(str(tmp / f"{ds}-{args.model.replace('/', '_')}{cw}-idx"))
        print(f"\n## {ds}: {index.manifest['sentences']} dev sentences indexed, "
              f"{len(index)} phrases ({rep.status} in {idx_s:.0f}s; {args.model}, "
              f"{args.threads} threads)")
        questions = [make_question(lab, q) for lab, q in QUESTIONS[ds]]
        t = time.perf_counter()
        results = query_index(index, questions, args.top_k, encoder=encoder)
        q_s = time.perf_counter() - t
        indexed = dev[:args.sentences]
        lex = gold_lexicon(indexed)
        gold_spans = {}
        for k, r in enumerate(indexed):
            for s in r["spans"]:
                gold_spans[(k, s["token_start"], s["token_end"])] = s["label"]
        print(f"\n{len(questions)} questions answered in {q_s:.1f}s\n")
        off = DATASET_RULES_OFF[ds]
        rules = rules_without(off)
        print(f"| label | question | dict entries | dict P@100 | raw P@100 | top dictionary entries |")
        print("|---|---|---:|---:|---:|---|")
        answers = []
        for q, hits in zip(questions, results):
            qdict = pseudo_dictionary(((h.text, q) for h in hits), rules)
            top = qdict[:100]
            dictp = sum(p.lower() in lex.get(q.label, ()) for p, _, _ in top) / max(len(top), 1)
            raw = hits[:100]
            rawp = sum(gold_spans.get((h.sentence, h.token_start, h.token_end)) == q.label
                       for h in raw) / max(len(raw), 1)
            shown = ", ".join(p for p, _, _ in top[:6])
            print(f"| {q.label} | {q.text} | {len(qdict)} | {dictp:.2f} | {rawp:.2f} | {shown} |")
            answers.extend((h.text, q) for h in hits)
        entries = pseudo_dictionary(answers, rules)
        gold_entries = {}
        for r in train:
            for s in r["spans"]:
                key = (r["text"][s["start"]:s["end"]], s["label"])
                gold_entries[key] = gold_entries.get(key, 0) + 1
        gold_entries = [(p, lab, c) for (p, lab), c in gold_entries.items()]
        print(f"\nDictionary matching on all {len(dev)} {ds} dev sentences (gold spans removed), "
              f"strict micro F1 (nertools.evaluation); rules off: {list(off) or 'none'}\n")
        print("| dictionary | rule 10 | phrases | P | R | F1 | per-label F1 |")
        print("|---|---|---:|---:|---:|---:|---|")
        for name, ents in ((f"retrieved pseudo-dict (top {args.top_k}/question)", entries),
                           ("gold dictionary from train", gold_entries)):
            for r10 in (True, False):
                rr = rules_without(off + (() if r10 else (10,)))
                res = match_f1(dev, ents, rr, labels)
                per = ", ".join(f"{k} {v:.3f}" for k, v in res["per_label"].items())
                print(f"| {name} | {'on' if r10 else 'off'} | {res['phrases']} | {res['p']:.3f} | "
                      f"{res['r']:.3f} | {res['f1']:.3f} | {per} |")
        if off:
            res = match_f1(dev, entries, NormalizationRules(), labels)
            print(f"| retrieved pseudo-dict, all GeNER default rules (3 and 9 on) | on | "
                  f"{res['phrases']} | {res['p']:.3f} | {res['r']:.3f} | {res['f1']:.3f} | |")


if __name__ == "__main__":
    main()
