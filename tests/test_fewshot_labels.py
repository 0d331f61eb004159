"""benchmarks/label_descriptions/: one description and a few names for every label of every shared dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DESC = Path(__file__).resolve().parents[1] / "benchmarks" / "label_descriptions"


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def test_every_dataset_has_a_file(shared_data):
    datasets = sorted(p.name for p in shared_data.iterdir() if (p / "train.jsonl").is_file())
    assert len(datasets) == 13
    assert sorted(p.stem for p in DESC.glob("*.tsv")) == datasets
    assert sorted(p.stem for p in (DESC / "names").glob("*.tsv")) == datasets


@pytest.mark.parametrize("path", sorted(DESC.glob("*.tsv")), ids=lambda p: p.stem)
def test_descriptions_cover_the_labels(path, shared_data):
    labels = set()
    for split in shared_data.joinpath(path.stem).glob("*.jsonl"):
        for line in split.open(encoding="utf-8"):
            labels.update(s["label"] for s in json.loads(line)["spans"])
    rows = _rows(path)
    assert all(len(r) == 3 for r in rows), path
    assert sorted(r[0] for r in rows) == sorted(labels)        # each label exactly once
    for label, description, names in rows:
        assert len(description.split()) >= 3, (path.stem, label)
        assert all(n.strip() for n in names.split(",")), (path.stem, label)
    bare = _rows(DESC / "names" / path.name)
    assert [(r[0], r[1], r[2]) for r in bare] == [(r[0], "", r[2]) for r in rows]
