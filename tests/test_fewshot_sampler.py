"""The k~2k support-set sampler (nertools.fewshot.sampler) and ner-sample, on real shared data."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest

from nertools.core.jsonl import read_records
from nertools.errors import DataError, UsageError
from nertools.fewshot.sampler import sample_support

KS = (1, 2, 4, 8, 16)
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def restaurant(shared_data):
    return list(read_records(shared_data / "mit_restaurant" / "train.jsonl"))


@pytest.fixture(scope="module")
def wnut(shared_data):
    return list(read_records(shared_data / "wnut17" / "train.jsonl"))


def _counts(records, unit="mentions"):
    c = Counter()
    for r in records:
        for s in r["spans"]:
            c[s["label"]] += 1 if unit == "mentions" else s["token_end"] - s["token_start"] + 1
    return c


@pytest.mark.parametrize("name", ["restaurant", "wnut"])
def test_every_type_gets_k_to_2k_mentions(name, request):
    records = request.getfixturevalue(name)
    labels = sorted(_counts(records))
    for k in KS:
        for seed in SEEDS:
            res = sample_support(records, k, seed)
            got = _counts(res.records)   # counted again from the records themselves
            assert sorted(got) == labels
            assert all(k <= got[lab] <= 2 * k for lab in labels), (k, seed, got)
            assert got == Counter(res.counts)
            assert res.shortfall == {}
            assert all(r["spans"] for r in res.records)      # never a sentence without entities
            assert [r["id"] for r in res.records] == [records[i]["id"] for i in res.selected]
            assert res.selected == sorted(res.selected)      # input order
            assert set(res.selected).isdisjoint(res.rest)
            assert len(res.selected) + len(res.rest) == len(records)


def test_each_sentence_taken_was_needed(wnut):
    """Greedy rule: when a sentence is taken, one of its types is still below k (replayed in the
    sampler's own shuffled order)."""
    import random

    k, seed = 4, 3
    res = sample_support(wnut, k, seed)
    order = list(range(len(wnut)))
    random.Random(seed).shuffle(order)
    taken = set(res.selected)
    counts = Counter()
    for i in order:
        if i not in taken:
            continue
        c = _counts([wnut[i]])
        assert any(counts[lab] < k for lab in c)
        assert all(counts[lab] + n <= 2 * k for lab, n in c.items())
        counts.update(c)


def test_words_unit(restaurant):
    for k in (2, 8):
        res = sample_support(restaurant, k, 0, unit="words")
        got = _counts(res.records, "words")
        assert all(k <= n <= 2 * k for n in got.values()), got


def test_deterministic_per_seed(wnut):
    a = [r["id"] for r in sample_support(wnut, 4, 7).records]
    b = [r["id"] for r in sample_support(list(wnut), 4, 7).records]
    assert a == b
    others = {tuple(r["id"] for r in sample_support(wnut, 4, s).records) for s in range(5)}
    assert len(others) == 5


def test_2k_bound_skips_crowded_sentences():
    def rec(i, labels):
        toks = [f"w{j}" for j in range(len(labels))]
        return {"id": str(i), "text": " ".join(toks), "tokens": toks,
                "spans": [{"token_start": j, "token_end": j, "label": lab} for j, lab in enumerate(labels)]}

    records = [rec(0, ["A", "A", "A"]), rec(1, ["A", "B"]), rec(2, []), rec(3, ["B"])]
    for seed in range(10):
        res = sample_support(records, 1, seed)
        assert "0" not in [r["id"] for r in res.records]      # 3 A's > 2k = 2
        assert "2" not in [r["id"] for r in res.records]      # no entity
        assert all(1 <= n <= 2 for n in res.counts.values())


def test_labels_restrict_types_and_drop_other_spans(restaurant):
    res = sample_support(restaurant, 4, 0, labels=["Dish", "Cuisine"])
    got = _counts(res.records)
    assert set(got) == {"Dish", "Cuisine"} and all(4 <= n <= 8 for n in got.values())
    assert res.dropped_spans > 0


def test_shortfall_is_reported(shared_data):
    records = list(read_records(shared_data / "crossner_ai" / "train.jsonl"))
    res = sample_support(records, 10, 0)
    have = _counts(records)
    assert {lab for lab, n in have.items() if n < 10} <= set(res.shortfall)
    assert "person" in res.shortfall and res.available["person"] == have["person"] < 10
    assert "person got" in res.shortfall_message() and "in the data" in res.shortfall_message()
    assert res.summary()["shortfall"]["person"]["available"] == have["person"]
    absent = sample_support(records, 1, 0, labels=["algorithm", "no-such-type"])
    assert absent.shortfall == {"no-such-type": 0}


def test_exclude_ids(wnut):
    excluded = [r["id"] for r in wnut[:2000]]
    res = sample_support(wnut, 8, 0, exclude_ids=excluded)
    assert res.excluded == 2000 and res.pool == len(wnut) - 2000
    assert min(res.selected) >= 2000 and min(res.rest) >= 2000
    assert len(res.selected) + len(res.rest) == res.pool


def test_empty_and_bad_input():
    with pytest.raises(DataError, match="no records"):
        sample_support([], 1, 0)
    no_spans = [{"id": "1", "text": "a b", "tokens": ["a", "b"], "spans": []}]
    with pytest.raises(DataError, match="no entity spans"):
        sample_support(no_spans, 1, 0)
    with pytest.raises(UsageError):
        sample_support(no_spans, 0, 0)
    with pytest.raises(UsageError):
        sample_support(no_spans, 1, 0, unit="bytes")


# ----------------------------------------------------------------------------- ner-sample


def _run(*args, **kw):
    return subprocess.run(["ner-sample", *args], capture_output=True, text=True, timeout=120, **kw)


def test_cli_support_rest_and_summary(shared_data, tmp_path):
    train = shared_data / "wnut17" / "train.jsonl"
    evalset = tmp_path / "eval.jsonl"
    evalset.write_text("".join(open(train, encoding="utf-8").readlines()[-500:]))
    out, rest, summary = tmp_path / "support.jsonl", tmp_path / "rest.jsonl", tmp_path / "s.json"
    p = _run("--k", "2", "--seed", "1", "--exclude-ids", str(evalset), "--rest-out", str(rest),
             "--summary", str(summary), str(train), "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert "shortfall: none" in p.stderr and p.stdout == ""
    support = [json.loads(x) for x in out.read_text().splitlines()]
    rest_ids = {json.loads(x)["id"] for x in rest.read_text().splitlines()}
    eval_ids = {json.loads(x)["id"] for x in evalset.read_text().splitlines()}
    sup_ids = {r["id"] for r in support}
    assert not sup_ids & eval_ids and not rest_ids & eval_ids and not sup_ids & rest_ids
    assert len(sup_ids) + len(rest_ids) + len(eval_ids) == 3394
    s = json.loads(summary.read_text())
    assert s["k"] == 2 and s["excluded"] == 500 and s["shortfall"] == {} and s["sentences"] == len(support)
    assert all(2 <= n <= 4 for n in _counts(support).values())
    # the same with an id list, to stdout
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(sorted(eval_ids)) + "\n")
    p2 = _run("-q", "--k", "2", "--seed", "1", "--exclude-ids", str(ids), str(train))
    assert p2.returncode == 0 and p2.stderr == ""
    assert [json.loads(x)["id"] for x in p2.stdout.splitlines()] == [r["id"] for r in support]


def test_cli_shortfall_exit_65_unless_allowed(shared_data, tmp_path):
    train = shared_data / "crossner_ai" / "train.jsonl"
    p = _run("--k", "10", str(train), "-o", str(tmp_path / "o.jsonl"))
    assert p.returncode == 65
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("ner-sample: error: k=10 is more than the data allows: ") and "person got" in last
    assert "--allow-shortfall" in last and not (tmp_path / "o.jsonl").exists()
    p = _run("--k", "10", "--allow-shortfall", "--summary", str(tmp_path / "s.json"), str(train))
    assert p.returncode == 0 and "warning: shortfall" in p.stderr and p.stdout
    assert "person" in json.loads((tmp_path / "s.json").read_text())["shortfall"]


def test_cli_bad_input(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    p = _run("--k", "1", str(empty))
    assert p.returncode == 65 and "empty input" in p.stderr
    nospans = tmp_path / "n.jsonl"
    nospans.write_text('{"text": "a b"}\n')
    p = _run("--k", "1", str(nospans))
    assert p.returncode == 65 and "no entity spans" in p.stderr
    assert _run("--k", "0", str(nospans)).returncode == 2
    assert _run(str(nospans)).returncode == 2   # --k is required
    p = _run("--k", "1", "--labels", "X", "-", input='{"text": "a b", "spans": [{"start": 0, "end": 1, "label": "Y"}]}\n')
    assert p.returncode == 65 and "X got 0 of 1 mentions (only 0 in the data)" in p.stderr
