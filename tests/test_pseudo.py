"""ner-pseudo: selection rules (nertools.xner.pseudo) and the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import pytest

from nertools.errors import DataError, NertoolsError
from nertools.core.jsonl import read_jsonl
from nertools.xner.pseudo import LabelNormalizer, Selection, demote_partial_names, parse_thresholds, pseudo_label, resolve_overlaps, sentence_picks
from nertools.core.record import normalize_record


def scored(text: str, cands: dict[tuple[int, int], dict[str, float]], rid: str, gold=None) -> dict:
    """A record with candidates over token ranges (inclusive) and given scores."""
    rec = normalize_record({"id": rid, "text": text, "spans": gold or []})
    toks = rec["tokens"]
    rec["candidates"] = [{"start": toks[a]["start"], "end": toks[b]["end"], "token_start": a, "token_end": b,
                          "text": text[toks[a]["start"]:toks[b]["end"]], "scores": s}
                         for (a, b), s in cands.items()]
    return rec


def corpus() -> list[dict]:
    return [
        scored("Alexandra Fusai beat Mary Pierce", {
            (0, 1): {"PER": 0.20, "LOC": 0.9},   # full name
            (1, 1): {"PER": 0.10, "LOC": 0.9},   # surname only: better raw score
            (0, 0): {"PER": 0.30, "LOC": 0.9},
            (3, 4): {"PER": 0.25, "LOC": 0.8},
            (2, 2): {"PER": 0.95, "LOC": 0.99},
        }, "a"),
        scored("Rain fell in Singapore", {
            (3, 3): {"PER": 0.7, "LOC": 0.05},
            (0, 0): {"PER": 0.6, "LOC": 0.5},
        }, "b"),
        scored("nothing here", {(0, 0): {"PER": 0.99, "LOC": 0.98}}, "c"),
        scored("Paris is nice", {(0, 0): {"PER": 0.5, "LOC": 0.12}}, "d", gold=[{"start": 0, "end": 5, "label": "LOC"}]),
    ]


def write(tmp_path, recs, name="in.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return p


def spans_by_id(out):
    return {r["id"]: [(r["text"][s["start"]:s["end"]], s["label"]) for s in r["spans"]] for r in out}


def test_threshold_best_label_and_overlap(tmp_path):
    p = write(tmp_path, corpus())
    out = list(pseudo_label(str(p), Selection(thresholds={"*": 0.35}, boundary_labels=(), normalize="none")))
    got = spans_by_id(out)
    # the surname beats the full name (no boundary rule); what does not overlap it stays
    assert got == {"a": [("Alexandra", "PER"), ("Fusai", "PER"), ("Mary Pierce", "PER")], "b": [("Singapore", "LOC")],
                   "d": [("Paris", "LOC")]}
    assert all(s["source"] == "xner" and "score" in s for r in out for s in r["spans"])
    assert "candidates" not in out[0]
    # gold spans of the input are replaced by pseudo spans
    assert out[2]["spans"][0]["score"] == 0.12


def test_boundary_rule_prefers_full_name(tmp_path):
    p = write(tmp_path, corpus())
    got = spans_by_id(pseudo_label(str(p), Selection(thresholds={"*": 0.35}, boundary_labels=("PER",), normalize="none")))
    assert got["a"] == [("Alexandra Fusai", "PER"), ("Mary Pierce", "PER")]
    rec = corpus()[0]
    demoted = demote_partial_names(rec, [c["scores"] for c in rec["candidates"]], ["PER"])
    assert demoted[1]["PER"] > demoted[0]["PER"] == 0.20  # "Fusai" now after "Alexandra Fusai"
    assert demoted[1]["LOC"] == 0.9  # other labels untouched


def test_boundary_rule_for_every_label(tmp_path):
    rec = scored("the White Sox won", {(1, 2): {"ORG": 0.3, "LOC": 0.9}, (2, 2): {"ORG": 0.1, "LOC": 0.9}}, "s")
    only_per = demote_partial_names(rec, [c["scores"] for c in rec["candidates"]], ["PER"])
    assert only_per[1]["ORG"] == 0.1
    every = demote_partial_names(rec, [c["scores"] for c in rec["candidates"]], ["*"])
    assert every[1]["ORG"] > every[0]["ORG"] == 0.3
    assert every[1]["LOC"] == pytest.approx(0.9 + 1e-6)  # a tie with the extension is demoted too
    p = write(tmp_path, [rec])
    res = run_cli(["--top-k", "1", str(p)])  # default: --boundary-fix all
    assert res.returncode == 0, res.stderr
    assert [s["token_start"] for s in json.loads(res.stdout)["spans"]] == [1]
    res = run_cli(["--top-k", "1", "--boundary-fix", "PER", str(p)])
    assert [s["token_start"] for s in json.loads(res.stdout)["spans"]] == [2]


def test_per_label_threshold():
    sel = Selection(thresholds=parse_thresholds(["0.35", "LOC=0.1"]))
    assert sel.threshold("LOC") == 0.1 and sel.threshold("PER") == 0.35
    picks = [sentence_picks(r, sel) for r in corpus()]
    assert picks[3] == []       # Paris LOC 0.12 >= 0.1
    assert picks[1] == [(0, "LOC", 0.05)]


def test_top_k_and_top_percent(tmp_path):
    p = write(tmp_path, corpus())
    got = spans_by_id(pseudo_label(str(p), Selection(top_k=1, boundary_labels=(), normalize="none")))
    assert got == {"a": [("Fusai", "PER")], "b": [("Singapore", "LOC")]}
    # 9 candidates, 25% -> 2 per label (best label only, after overlaps)
    got = spans_by_id(pseudo_label(str(p), Selection(top_percent=25, boundary_labels=(), normalize="none")))
    assert sorted(x for v in got.values() for x in v) == [("Fusai", "PER"), ("Mary Pierce", "PER"),
                                                         ("Paris", "LOC"), ("Singapore", "LOC")]
    # criteria combine: top-2 and threshold 0.2
    got = spans_by_id(pseudo_label(str(p), Selection(top_k=2, thresholds={"*": 0.2}, boundary_labels=(), normalize="none")))
    assert got == {"a": [("Fusai", "PER")], "b": [("Singapore", "LOC")], "d": [("Paris", "LOC")]}


def test_emit_all_and_keep_candidates(tmp_path):
    p = write(tmp_path, corpus())
    out = list(pseudo_label(str(p), Selection(top_k=1), emit_all=True, keep_candidates=True))
    assert [r["id"] for r in out] == ["a", "b", "c", "d"]
    assert out[2]["spans"] == [] and "scores" in out[0]["candidates"][0]


def test_overlap_keep_and_tie_rule():
    cands = [{"token_start": 0, "token_end": 1}, {"token_start": 1, "token_end": 1}, {"token_start": 1, "token_end": 2}]
    picks = [(0, "PER", 0.5), (1, "PER", 0.5), (2, "LOC", 0.4)]
    assert resolve_overlaps(cands, picks) == [(2, "LOC", 0.4)]
    assert resolve_overlaps(cands, picks[:2]) == [(0, "PER", 0.5)]  # tie: longer wins
    sel = Selection(top_k=5, overlap="keep", boundary_labels=())
    assert len(sentence_picks(corpus()[0], sel)) == 5


def scaled_corpus() -> list[dict]:
    """LOC divergences are ten times smaller than PER's all over: raw best-label gives all to LOC."""
    recs = []
    for i, (per, loc) in enumerate([(0.10, 0.050), (0.20, 0.010), (0.30, 0.040), (0.90, 0.015),
                                    (0.80, 0.060), (0.70, 0.020)]):
        recs.append(scored(f"Word{i} here", {(0, 0): {"PER": per, "LOC": loc}}, f"r{i}"))
    return recs


def test_label_normalizer_rank():
    values = {"PER": [0.1, 0.2, 0.2, 0.4], "LOC": [0.01, 0.02]}
    rank = LabelNormalizer("rank", values)
    assert rank("PER", 0.1) == pytest.approx(0.125) and rank("PER", 0.2) == pytest.approx(0.5)
    assert rank("LOC", 0.01) == pytest.approx(0.25) and rank("LOC", 0.5) == 1.0
    assert LabelNormalizer("none", values)("PER", 0.3) == 0.3
    with pytest.raises(NertoolsError, match="normalisation"):
        LabelNormalizer("zscore", values)
    with pytest.raises(NertoolsError, match="normalisation"):
        Selection(top_k=1, normalize="minmax")


def test_normalized_best_label(tmp_path):
    normalize = "rank"
    p = write(tmp_path, scaled_corpus())
    raw = spans_by_id(pseudo_label(str(p), Selection(top_k=6, boundary_labels=(), normalize="none")))
    assert {lab for v in raw.values() for _, lab in v} == {"LOC"}
    got = spans_by_id(pseudo_label(str(p), Selection(top_k=6, boundary_labels=(), normalize=normalize)))
    # a candidate goes to the label for which it ranks better among the corpus's candidates
    assert {rid for rid, v in got.items() if v[0][1] == "PER"} == {"r0", "r2", "r4"}
    assert got["r1"] == [("Word1", "LOC")] and got["r3"] == [("Word3", "LOC")]
    # emitted scores stay raw; thresholds apply to raw scores
    out = list(pseudo_label(str(p), Selection(thresholds={"PER": 0.15, "LOC": 0.001}, boundary_labels=(),
                                              normalize=normalize)))
    assert [(r["id"], r["spans"][0]["label"], r["spans"][0]["score"]) for r in out] == [("r0", "PER", 0.10)]


def test_normalized_from_stdin_spool(tmp_path):
    """The extra pass works on a pipe: stdin is spooled once and read twice more."""
    data = "".join(json.dumps(r) + "\n" for r in scaled_corpus())
    res = run_cli(["--top-k", "6", "--boundary-fix", "", "-"], data)
    assert res.returncode == 0, res.stderr
    labels = [json.loads(line)["spans"][0]["label"] for line in res.stdout.splitlines()]
    assert "PER" in labels and "LOC" in labels
    res = run_cli(["--top-k", "6", "--normalize", "none", "--boundary-fix", "", "-"], data)
    assert {json.loads(line)["spans"][0]["label"] for line in res.stdout.splitlines()} == {"LOC"}


def test_missing_scores_and_bad_selection():
    rec = corpus()[0]
    del rec["candidates"][2]["scores"]
    with pytest.raises(DataError, match="no 'scores'"):
        sentence_picks(rec, Selection(top_k=1))
    with pytest.raises(NertoolsError):
        Selection()
    with pytest.raises(NertoolsError):
        Selection(top_percent=0)


# ---------------------------------------------------------------- the real console script
def run_cli(args, stdin=None):
    return subprocess.run(["ner-pseudo", *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_cli_stdin_two_pass_spool_removed(tmp_path):
    data = "".join(json.dumps(r) + "\n" for r in corpus())
    before = set(os.listdir(tempfile.gettempdir()))
    res = run_cli(["--top-k", "2"], stdin=data)
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert spans_by_id(out) == {"a": [("Alexandra Fusai", "PER"), ("Mary Pierce", "PER")],
                                "b": [("Singapore", "LOC")], "d": [("Paris", "LOC")]}
    assert "4 records" in res.stderr and "4 pseudo spans" in res.stderr
    leftover = {f for f in set(os.listdir(tempfile.gettempdir())) - before if f.startswith("ner-pseudo-")}
    assert not leftover


def test_cli_file_equals_stdin_and_output_file(tmp_path):
    p = write(tmp_path, corpus())
    out_file = tmp_path / "out.jsonl"
    res = run_cli([str(p), "--threshold", "0.3", "--all", "-o", str(out_file)])
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""  # with -o the records go to the file only
    from_file = [o for _, o in read_jsonl(out_file)]
    res2 = run_cli(["-", "--threshold", "0.3", "--all"], stdin=p.read_text())
    assert [json.loads(x) for x in res2.stdout.splitlines()] == from_file
    assert len(from_file) == 4


def test_cli_errors(tmp_path):
    res = run_cli([], stdin="")
    assert res.returncode == 2 and "--top-k" in res.stderr
    bad = corpus()
    del bad[1]["candidates"][0]["scores"]
    p = write(tmp_path, bad)
    res = run_cli([str(p), "--top-k", "3"])
    assert res.returncode == 65
    assert res.stderr.strip().count("\n") == 0 and "ner-pseudo: error:" in res.stderr and "scores" in res.stderr
    p2 = tmp_path / "broken.jsonl"
    p2.write_text('{"text": "a"}\n{broken\n')
    res = run_cli([str(p2), "--top-k", "3"])
    assert res.returncode == 65 and ":2:" in res.stderr
    target = tmp_path / "keep.jsonl"
    target.write_text("old\n")
    res = run_cli([str(p2), "--top-k", "3", "-o", str(target)])
    assert res.returncode == 65 and target.read_text() == "old\n"
    res = run_cli(["--top-percent", "0"], stdin="{}")
    assert res.returncode == 2
