"""ner-eval and nertools.evaluation: strict scores (agreement with seqeval), id matching, ranked mode."""

import random
import subprocess

import orjson
import pytest

from nertools.errors import DataError
from nertools.evaluation.strict import evaluate
from nertools.evaluation.ranked import evaluate_ranked
from nertools.core.jsonl import read_records, write_jsonl
from nertools.core.record import make_span, tokens_from_words
from nertools.core.tags import encode


def rec(rid, words, spans, **extra):
    """A canonical record; spans as (token_start, token_end, label)."""
    text, tokens = tokens_from_words(words)
    return {"id": rid, "text": text, "tokens": tokens,
            "spans": [make_span(tokens, s, e, lab) for s, e, lab in spans], "meta": {}, **extra}


def perturb(record, rng, labels):
    """Randomly drop, shift, relabel and add spans; keep them non-overlapping."""
    n = len(record["tokens"])
    out = []
    for s in record["spans"]:
        ts, te, label = s["token_start"], s["token_end"], s["label"]
        r = rng.random()
        if r < 0.15:
            continue                                   # drop
        if r < 0.30:
            ts = max(0, min(n - 1, ts + rng.choice((-1, 1))))   # shift the start
        elif r < 0.40:
            te = max(0, min(n - 1, te + rng.choice((-1, 1))))   # shift the end
        elif r < 0.55:
            label = rng.choice(labels)                 # relabel (maybe to the same)
        if ts <= te:
            out.append((ts, te, label))
    if n and rng.random() < 0.2:                       # a spurious span
        i = rng.randrange(n)
        out.append((i, min(n - 1, i + rng.randrange(2)), rng.choice(labels)))
    kept, last = [], -1
    for ts, te, label in sorted(out):
        if ts > last:
            kept.append((ts, te, label))
            last = te
    return {**record, "spans": [make_span(record["tokens"], s, e, lab) for s, e, lab in kept]}


def seqeval_report(gold, pred):
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    by_id = {r["id"]: r for r in pred}
    y_true = [encode(r["spans"], len(r["tokens"])) for r in gold]
    y_pred = [encode(by_id[r["id"]]["spans"], len(r["tokens"])) for r in gold]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return classification_report(y_true, y_pred, mode="strict", scheme=IOB2, output_dict=True)


@pytest.mark.parametrize("dataset, seed", [("conll2003/dev", 1), ("wnut17/dev", 2),
                                           ("ncbi_disease/dev", 3)])
def test_agrees_with_seqeval_on_perturbed_predictions(shared_data, dataset, seed):
    gold = list(read_records(shared_data / f"{dataset}.jsonl"))
    labels = sorted({s["label"] for r in gold for s in r["spans"]})
    rng = random.Random(seed)
    pred = [perturb(r, rng, labels) for r in gold]
    rng.shuffle(pred)                                  # order must not matter
    ours = evaluate(gold, pred)
    theirs = seqeval_report(gold, pred)
    assert ours["micro"]["f1"] < 0.95                  # the perturbation did something
    for label, m in ours["labels"].items():
        for key, their_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert round(m[key], 4) == round(float(theirs[label][their_key]), 4), (label, key)
        assert m["support"] == theirs[label]["support"]
    assert set(ours["labels"]) == {k for k in theirs if not k.endswith("avg")}
    for ours_key, their_key in (("micro", "micro avg"), ("macro", "macro avg"),
                                ("weighted", "weighted avg")):
        for key, tk in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert round(ours[ours_key][key], 4) == round(float(theirs[their_key][tk]), 4)


def test_gold_vs_gold_is_perfect(shared_data):
    path = shared_data / "conll2003" / "dev.jsonl"
    report = evaluate(path, path)
    assert report["micro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 5942,
                               "predicted": 5942, "correct": 5942}
    assert report["records"]["matched"] == 3250


GOLD = [rec("a", ["Ann", "met", "Bo"], [(0, 0, "PER"), (2, 2, "PER")]),
        rec("b", ["in", "Rome"], [(1, 1, "LOC")]),
        rec("c", ["Cy"], [(0, 0, "PER")])]
PRED = [rec("b", ["in", "Rome"], [(1, 1, "LOC"), (0, 0, "LOC")]),
        rec("a", ["Ann", "met", "Bo"], [(0, 0, "PER"), (0, 0, "PER")]),
        rec("x", ["Zed"], [(0, 0, "ORG")])]


def test_missing_and_extra_ids():
    with pytest.raises(DataError, match=r"1 gold record\(s\) have no prediction \(ids 'c'\); "
                                        r"1 prediction\(s\) have no gold record \(ids 'x'\)"):
        evaluate(GOLD, PRED)
    ignore = evaluate(GOLD, PRED, missing="ignore")
    # a and b only: gold PER 2, LOC 1; pred PER 1 (duplicate counts once), LOC 2
    assert ignore["labels"]["PER"] == {"precision": 1.0, "recall": 0.5, "f1": 2 / 3,
                                       "support": 2, "predicted": 1, "correct": 1}
    assert ignore["labels"]["LOC"]["precision"] == 0.5 and ignore["labels"]["LOC"]["recall"] == 1.0
    assert "ORG" not in ignore["labels"]
    r = ignore["records"]
    assert (r["gold"], r["pred"], r["matched"], r["missing"], r["extra"]) == (3, 3, 2, 1, 1)
    assert r["missing_ids"] == ["c"] and r["extra_ids"] == ["x"]
    empty = evaluate(GOLD, PRED, missing="empty")
    # c's PER is a false negative, x's ORG a false positive
    assert empty["labels"]["PER"]["support"] == 3 and empty["labels"]["PER"]["recall"] == 1 / 3
    assert empty["labels"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0,
                                      "predicted": 1, "correct": 0}
    assert empty["micro"]["correct"] == 2 and empty["micro"]["predicted"] == 4
    assert empty["macro"]["precision"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)


def test_duplicate_ids_and_text_mismatch(tmp_path):
    gold = tmp_path / "g.jsonl"
    write_jsonl(gold, GOLD + [GOLD[0]])
    with pytest.raises(DataError, match=r"g.jsonl:4: duplicate id 'a' in gold"):
        evaluate(gold, PRED)
    write_jsonl(gold, GOLD)
    pred = tmp_path / "p.jsonl"
    write_jsonl(pred, [GOLD[1], rec("a", ["Ann", "met", "Cy"], [])])
    with pytest.raises(DataError, match=r"p.jsonl:2: record 'a': text differs"):
        evaluate(gold, pred, missing="ignore")
    write_jsonl(pred, [GOLD[1], GOLD[1]])
    with pytest.raises(DataError, match=r"p.jsonl:2: duplicate id 'b' in predictions"):
        evaluate(gold, pred, missing="ignore")


def cand(record, ts, te, **scores):
    return {"start": record["tokens"][ts]["start"], "end": record["tokens"][te]["end"],
            "token_start": ts, "token_end": te, "scores": scores}


def test_ranked_precision_at_k_and_candidate_recall():
    g = [rec("a", ["Ann", "met", "Bo", "Li"], [(0, 0, "PER"), (2, 3, "PER")]),
         rec("b", ["in", "Rome"], [(1, 1, "LOC")])]
    a, b = g
    pa = {**a, "spans": [], "candidates": [cand(a, 0, 0, PER=0.1, LOC=0.9),   # PER correct
                                           cand(a, 1, 1, PER=0.2, LOC=0.3),   # wrong
                                           cand(a, 2, 2, PER=0.3, LOC=0.8)]}  # wrong (part of Bo Li)
    pb = {**b, "spans": [], "candidates": [{"token_start": 1, "token_end": 1,  # token offsets only
                                            "scores": {"PER": 0.05, "LOC": 0.1}},
                                           cand(b, 0, 1, PER=0.3, LOC=0.2)]}
    report = evaluate_ranked(g, [pb, pa], ks=[1, 2, 10], k_fracs=[0.5])
    per, loc = report["labels"]["PER"], report["labels"]["LOC"]
    # PER ranking: Rome(0.05, wrong) Ann(0.1, ok) met(0.2) Bo(0.3) / "in Rome"(0.3): ties keep order
    assert [p["precision"] for p in per["precision_at"]] == [0.0, 0.5, 1 / 5, 1 / 3]
    assert per["precision_at"][2]["k_used"] == 5          # K=10 > 5 candidates: all of them
    assert per["precision_at"][3]["k"] == 3 and per["precision_at"][3]["k_frac"] == 0.5
    # LOC ranking: Rome(0.1, ok) in Rome(0.2) met(0.3) Bo(0.8) Ann(0.9)
    assert [p["precision"] for p in loc["precision_at"]] == [1.0, 0.5, 0.2, 1 / 3]
    # candidate recall: Ann and Rome found, "Bo Li" not
    assert per["candidate_recall"] == 0.5 and loc["candidate_recall"] == 1.0
    assert report["overall"] == {"candidates": 5, "gold": 3, "gold_covered": 2,
                                 "candidate_recall": 2 / 3}
    assert report["macro"]["precision_at"][0]["precision"] == 0.5


def test_ranked_rejects_bad_scores(tmp_path):
    g = [rec("a", ["Ann"], [(0, 0, "PER")])]
    p = tmp_path / "p.jsonl"
    write_jsonl(p, [{**g[0], "candidates": [cand(g[0], 0, 0, PER="low")]}])
    with pytest.raises(DataError, match=r"p.jsonl:1: record 'a': candidate 0: score for 'PER'"):
        evaluate_ranked(g, p, ks=[1])


# ---------------------------------------------------------------- command line

def test_cli_eval(tmp_path, shared_data):
    gold = tmp_path / "g.jsonl"
    pred = tmp_path / "p.jsonl"
    write_jsonl(gold, GOLD)
    write_jsonl(pred, PRED)
    run = subprocess.run(["ner-eval", "--gold", gold, "--pred", pred], capture_output=True, text=True)
    assert run.returncode == 65 and run.stdout == "" and run.stderr.count("\n") == 1
    assert run.stderr.startswith(f"ner-eval: error: {pred}: 1 gold record(s) have no prediction")
    run = subprocess.run(["ner-eval", "-g", gold, "-p", pred, "--missing", "empty"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and "micro avg" in run.stdout and "PER" in run.stdout
    assert "1 gold record(s) without prediction" in run.stderr
    run = subprocess.run(["ner-eval", "-g", gold, "-p", "-", "--missing", "ignore", "--json"],
                         input=pred.read_text(), capture_output=True, text=True)
    report = orjson.loads(run.stdout)
    assert run.returncode == 0 and report["labels"]["PER"]["recall"] == 0.5
    for args in (["--ranked"], ["--k", "5"], ["-p", "-", "-g", "-"]):
        run = subprocess.run(["ner-eval", "-g", gold, "-p", pred, *args], capture_output=True)
        assert run.returncode == 2, args
    dev = shared_data / "wnut17" / "dev.jsonl"
    run = subprocess.run(["ner-eval", "-g", dev, "-p", dev, "--json"], capture_output=True)
    assert orjson.loads(run.stdout)["micro"]["f1"] == 1.0
