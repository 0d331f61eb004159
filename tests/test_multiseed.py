"""Several seeds per label (nertools.xner.multiseed): grouping, combination, and the real
scorer through the library and the console script."""

import json
import subprocess

import pytest

from nertools.errors import DataError, UsageError
from nertools.xner.multiseed import SeedGroups
from nertools.xner.seeds import Seed, collect_seeds
from tests.conftest import SHARED

FIX = SHARED / "fixtures" / "xner-official"
TINY = FIX / "roberta-tiny-random"


def _seeds(*pairs):
    return [Seed.make(lab, txt) for lab, txt in pairs]


def test_groups_rename_only_labels_with_several_seeds():
    g = SeedGroups(_seeds(("PER", "Masaki"), ("ORG", "Celtics"), ("ORG", "Microsoft"), ("ORG#1", "odd")))
    assert g.labels == ["PER", "ORG", "ORG#1"]
    assert [s.label for s in g.internal] == ["PER", "ORG#1#", "ORG#2", "ORG#1"]  # a user's ORG#1 keeps its name
    assert [s.text for s in g.internal] == ["Masaki", "Celtics", "Microsoft", "odd"]
    assert g.groups == {"ORG": ["ORG#1#", "ORG#2"]}
    one = SeedGroups(_seeds(("PER", "Masaki"), ("LOC", "Singapore")))
    assert one.trivial and [s.label for s in one.internal] == ["PER", "LOC"]
    rec = {"candidates": [{"scores": {"PER": 1.0, "LOC": 2.0}}]}
    assert one.fold(rec) is rec and rec["candidates"][0] == {"scores": {"PER": 1.0, "LOC": 2.0}}


@pytest.mark.parametrize("how,want", [("mean", 2.0), ("min", 1.0), (None, 1.0)])
def test_fold_combines_and_keeps_the_per_seed_scores(how, want):
    seeds = _seeds(("ORG", "a"), ("PER", "p"), ("ORG", "b"), ("ORG", "c"))
    g = SeedGroups(seeds, how) if how else SeedGroups(seeds)  # min is the default
    rec = {"candidates": [{"start": 0, "scores": {"ORG#1": 3.0, "PER": 7.0, "ORG#2": 1.0, "ORG#3": 2.0},
                           "divergence_rows": {"ORG#1": 0, "ORG#2": 0, "ORG#3": 0, "PER": 1}},
                          {"start": 1}]}
    out = g.fold(rec)["candidates"]
    assert out[0]["scores"] == {"ORG": want, "PER": 7.0}
    assert list(out[0]["scores"]) == ["ORG", "PER"]  # the user's label order
    assert out[0]["seed_scores"] == {"ORG": [3.0, 1.0, 2.0]}
    assert out[0]["divergence_rows"] == {"PER": 1}
    assert out[1] == {"start": 1}  # a candidate without scores is left alone


def test_unknown_combination():
    with pytest.raises(UsageError, match="choose from min, mean"):
        SeedGroups(_seeds(("ORG", "a")), "max")


def test_collect_seeds_several():
    with pytest.raises(DataError, match="more than one seed"):
        collect_seeds(["ORG=a", "ORG=b"])
    assert [s.text for s in collect_seeds(["ORG=a", "ORG=b"], several=True)] == ["a", "b"]
    with pytest.raises(DataError, match="given twice"):
        collect_seeds(["ORG=a", "ORG=a"], several=True)


def test_collect_seeds_label_word_conflict(tmp_path):
    f = tmp_path / "seeds.tsv"
    f.write_text("ORG\tBoston Celtics\tteam\nORG\tMicrosoft\tcompany\n")
    with pytest.raises(DataError, match="two label words"):
        collect_seeds(files=[str(f)], several=True)


def run(args, stdin=b""):
    return subprocess.run(args, input=stdin, capture_output=True, timeout=240)


@pytest.fixture(scope="module")
def candidates() -> bytes:
    sentences = "".join((FIX / "sentences.jsonl").read_text().splitlines(keepends=True)[:3])
    p = run(["ner-spans", "--max-tokens", "28"], sentences.encode())
    assert p.returncode == 0, p.stderr
    return p.stdout


def _scores(stdout: bytes, label: str):
    return [c["scores"][label] for line in stdout.splitlines() for c in json.loads(line)["candidates"]]


def test_console_script_equals_the_single_seed_runs_combined(candidates, tmp_path):
    """Two ORG seeds in one run = the mean (or min) of two one-seed runs, candidate by candidate;
    the other label is scored as without the extra seed."""
    base = ["ner-divscore", "--model", str(TINY), "--method", "2way", "--threads", "1", "--no-progress"]
    a = run(base + ["--seed", "ORG=Boston Celtics", "--seed", "PER=Masaki Yoshida"], candidates)
    b = run(base + ["--seed", "ORG=United Nations"], candidates)
    both = run(base + ["--seed-combine", "mean", "--seed", "ORG=Boston Celtics", "--seed", "PER=Masaki Yoshida",
                       "--seed", "ORG=United Nations"], candidates)
    low = run(base + ["--seed", "ORG=Boston Celtics", "--seed", "PER=Masaki Yoshida",
                      "--seed", "ORG=United Nations"], candidates)
    for p in (a, b, both, low):
        assert p.returncode == 0, p.stderr
    sa, sb = _scores(a.stdout, "ORG"), _scores(b.stdout, "ORG")
    assert len(sa) > 5 and sa != sb  # the seeds really differ
    assert _scores(both.stdout, "ORG") == pytest.approx([(x + y) / 2 for x, y in zip(sa, sb)], rel=1e-5, abs=1e-6)
    assert _scores(low.stdout, "ORG") == pytest.approx([min(x, y) for x, y in zip(sa, sb)], rel=1e-5, abs=1e-6)
    assert _scores(both.stdout, "PER") == pytest.approx(_scores(a.stdout, "PER"), rel=1e-5, abs=1e-6)
    cand = json.loads(both.stdout.splitlines()[0])["candidates"][0]
    assert set(cand["scores"]) == {"ORG", "PER"} and len(cand["seed_scores"]["ORG"]) == 2
    # one command line, one answer: the same library call
    from nertools.core.jsonl import read_records
    from nertools.xner.scoring import divscore

    path = tmp_path / "cands.jsonl"
    path.write_bytes(candidates)
    lib = list(divscore(read_records(path), collect_seeds(["ORG=Boston Celtics", "PER=Masaki Yoshida",
                                                           "ORG=United Nations"], several=True),
                        model=str(TINY), method="2way", block_records=256, seed_combine="mean"))
    cli = [json.loads(x) for x in both.stdout.splitlines()]
    assert [r["id"] for r in cli] == [r["id"] for r in lib]
    lib_scores = [c["scores"]["ORG"] for r in lib for c in r["candidates"]]
    assert lib_scores == pytest.approx(_scores(both.stdout, "ORG"), rel=1e-5, abs=1e-6)  # threads differ
    assert [c["seed_scores"]["ORG"][1] for r in lib for c in r["candidates"]] == pytest.approx(sb, rel=1e-5, abs=1e-6)


def test_console_script_rejects_a_repeated_seed(candidates):
    p = run(["ner-divscore", "--model", str(TINY), "--seed", "ORG=a", "--seed", "ORG=a"], candidates)
    assert p.returncode == 65 and b"given twice" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and p.stdout == b""
