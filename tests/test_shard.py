"""--shard I/N and ner-merge: N shards merged are the bytes of the unsharded run; a missing,
doubled, unfinished or foreign shard is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corpus_fixtures import invoke, tiny_bert, tiny_tagger, write_candidates, write_records

CPU = ["--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("shard")
    model = tiny_bert(d / "bert")
    return {"model": model, "tagger": tiny_tagger(model, d / "tagger"),
            "cands": write_candidates(d / "cands.jsonl", 50), "records": write_records(d / "records.jsonl", 100)}


def divscore(data, *extra):
    return invoke("ner-divscore", "--model", str(data["model"]), "--seed", "PER=Ann", "--seed", "LOC=Paris",
                  "--no-progress", "--block-records", "4", *CPU, str(data["cands"]), *extra)


def test_three_divscore_shards_merged_equal_the_single_run(data, tmp_path):
    full = tmp_path / "full.jsonl"
    assert divscore(data, "-o", str(full)).exit_code == 0
    parts = [tmp_path / f"part{i}.jsonl" for i in range(3)]
    for i, p in enumerate(parts):
        r = divscore(data, "--shard", f"{i}/3", "-o", str(p))
        assert r.exit_code == 0, r.stderr
    # block b (4 records) is in shard b mod 3: 50 records = 13 blocks -> 5, 4, 4 blocks
    assert [len(p.read_text().splitlines()) for p in parts] == [18, 16, 16]
    merged = tmp_path / "merged.jsonl"
    r = invoke("ner-merge", str(parts[2]), str(parts[0]), str(parts[1]), "-o", str(merged))  # any order
    assert r.exit_code == 0, r.stderr
    assert merged.read_bytes() == full.read_bytes()
    r = invoke("ner-merge", *map(str, parts))  # to stdout
    assert r.exit_code == 0 and r.stdout_bytes == full.read_bytes()


def test_tag_shards_with_resume_merge_exactly(data, tmp_path):
    args = ["--model", str(data["tagger"]), "--block-records", "7", "-q", *CPU, str(data["records"])]
    full = tmp_path / "full.jsonl"
    assert invoke("ner-tag", *args, "-o", str(full)).exit_code == 0
    parts = [tmp_path / f"p{i}.jsonl" for i in range(2)]
    for i, p in enumerate(parts):
        assert invoke("ner-tag", *args, "--shard", f"{i}/2", "--resume", "-o", str(p)).exit_code == 0
        assert Path(f"{p}.progress").exists()  # a shard keeps its journal for ner-merge
    merged = tmp_path / "merged.jsonl"
    assert invoke("ner-merge", *map(str, parts), "-o", str(merged)).exit_code == 0
    assert merged.read_bytes() == full.read_bytes()


def test_annotate_shards_with_dropped_records_merge_exactly(tmp_path):
    """ner-annotate writes no line for some records (NuNER's "concept" filter): the journal counts
    each block's lines, so the merge stays exact."""
    recs = []
    for i in range(23):
        concept = "concept" if i % 4 == 1 else "city"
        recs.append({"id": f"a{i}", "text": f"Paris is nice {i}",
                     "annotation": {"completion": f"Paris <> {concept} <> a place", "prompt":
                                    {"name": "nuner", "parser": "nuner", "sha256": "x", "labels": None}}})
    inp = tmp_path / "ann.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in recs))
    full = tmp_path / "full.jsonl"
    r = invoke("ner-annotate", "--reparse", "--block-records", "3", "-q", str(inp), "-o", str(full))
    assert r.exit_code == 0, r.stderr
    assert len(full.read_text().splitlines()) == 23 - 6
    parts = [tmp_path / f"p{i}.jsonl" for i in range(3)]
    for i, p in enumerate(parts):
        r = invoke("ner-annotate", "--reparse", "--block-records", "3", "-q", str(inp), "--shard", f"{i}/3",
                   "-o", str(p))
        assert r.exit_code == 0, r.stderr
    merged = tmp_path / "merged.jsonl"
    assert invoke("ner-merge", *map(str, parts), "-o", str(merged)).exit_code == 0
    assert merged.read_bytes() == full.read_bytes()


def test_merge_refuses_missing_doubled_unfinished_and_foreign_shards(data, tmp_path):
    parts = [tmp_path / f"p{i}.jsonl" for i in range(3)]
    args = ["--model", str(data["tagger"]), "--block-records", "9", "-q", *CPU, str(data["records"])]
    for i, p in enumerate(parts):
        assert invoke("ner-tag", *args, "--shard", f"{i}/3", "-o", str(p)).exit_code == 0
    out = tmp_path / "out.jsonl"
    out.write_text("sentinel\n")

    def refused(*paths, code=2):
        r = invoke("ner-merge", *map(str, paths), "-o", str(out))
        assert r.exit_code == code and "Traceback" not in r.stderr, (r.exit_code, r.stderr)
        assert out.read_text() == "sentinel\n"
        return r.stderr.strip()

    assert "missing shard(s) 1/3 of 3" in refused(parts[0], parts[2])
    assert "shard 0/3 is given twice" in refused(parts[0], parts[0], parts[1], parts[2])
    other = tmp_path / "other.jsonl"  # a shard of a run with other options
    assert invoke("ner-tag", *args, "--threshold", "0.9", "--shard", "1/3", "-o", str(other)).exit_code == 0
    assert "not a shard of the same run" in refused(parts[0], other, parts[2])
    assert "--threshold (default) -> 0.9" in refused(parts[0], other, parts[2])
    four = tmp_path / "four.jsonl"
    assert invoke("ner-tag", *args, "--shard", "3/4", "-o", str(four)).exit_code == 0
    assert "3 shards -> 4 shards" in refused(parts[0], parts[1], parts[2], four)
    # an unfinished shard: its journal has no "complete" line
    journal = Path(f"{parts[1]}.progress")
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:-1]) + "\n")
    assert "did not finish" in refused(*parts)
    journal.unlink()
    assert "no progress journal" in refused(*parts, code=65)
    # a shard file that lost lines
    journal.write_text("\n".join(lines) + "\n")
    parts[1].write_text("".join(parts[1].read_text().splitlines(keepends=True)[:-1]))
    assert "ends before its journal's block" in refused(*parts, code=65)


@pytest.mark.parametrize("spec", ["3/3", "1", "a/b", "-1/2", "0/0"])
def test_bad_shard_spec_is_a_usage_error(spec, data):
    r = invoke("ner-tag", "--model", str(data["tagger"]), "--shard", spec, "-o", "x.jsonl", str(data["records"]))
    assert r.exit_code == 2 and "--shard" in r.stderr


def test_shard_needs_an_output_file(data):
    r = invoke("ner-tag", "--model", str(data["tagger"]), "--shard", "0/2", *CPU, str(data["records"]))
    assert r.exit_code == 2 and "--shard needs -o FILE" in r.stderr


def test_blocks_and_parse_shard():
    from nertools.core.shard import blocks, parse_shard

    assert list(blocks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert parse_shard(" 2 / 5 ") == (2, 5) and parse_shard(None) == (0, 1)
