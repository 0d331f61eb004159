"""Reassignment for token classifiers: the target head starts from the source tagger's aligned
rows (unit), and ner-align train --mode classifier end to end with a tiny BERT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nertools.align.reassign import aligned_rows, find_head, reinit_head
from nertools.tagging.tagger import LabelScheme
from tests.conftest import tiny_bert

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SOURCE = LabelScheme(("LOC", "MISC", "ORG", "PER"))
TARGET = LabelScheme(("country", "election", "person", "politicalparty", "politician", "spaceship"))
ASSIGN = {"country": "LOC", "election": "MISC", "person": "PER", "politicalparty": "ORG", "politician": "PER",
          "spaceship": "ROBOT"}   # ROBOT: a source type the tagger does not have -> fresh rows


def test_aligned_rows_map_each_target_tag_to_its_source_tag():
    rows = aligned_rows(SOURCE, TARGET, ASSIGN)
    src = SOURCE.tags
    got = {t: (src[r] if r is not None else None) for t, r in zip(TARGET.tags, rows)}
    assert got["O"] == "O"
    assert got["B-politician"] == "B-PER" and got["I-politician"] == "I-PER"
    assert got["B-person"] == "B-PER" and got["I-country"] == "I-LOC"
    assert got["B-politicalparty"] == "B-ORG" and got["I-election"] == "I-MISC"
    assert got["B-spaceship"] is None and got["I-spaceship"] is None


def test_head_initialisation_copies_the_right_rows_plus_small_noise():
    import torch

    model = tiny_bert(SOURCE.num_tags)
    _, old = find_head(model, SOURCE.num_tags)
    w, b = old.weight.detach().clone(), old.bias.detach().clone()
    with torch.no_grad():
        old.bias.copy_(torch.arange(SOURCE.num_tags, dtype=torch.float))
    b = old.bias.detach().clone()
    info = reinit_head(model, SOURCE, TARGET, ASSIGN, noise=0.1, seed=3)
    _, new = find_head(model, TARGET.num_tags)
    new = new.requires_grad_(False)
    assert new.out_features == TARGET.num_tags == model.config.num_labels
    assert model.config.id2label[1] == "B-country"
    std = float(w.std())
    for i, tag in enumerate(TARGET.tags):
        if tag in info["copied"]:
            j = SOURCE.tags.index(info["copied"][tag])
            diff = (new.weight[i] - w[j]).detach()
            assert 0 < float(diff.abs().max()) < std  # copied, with noise of std 0.1 x std
            assert float(diff.std()) == pytest.approx(0.1 * std, rel=0.5)
            assert float(new.bias[i].detach()) == float(b[j])
            # the copy is much closer to its own source row than to any other source row
            others = [float((new.weight[i] - w[k]).norm()) for k in range(SOURCE.num_tags) if k != j]
            assert float(diff.norm()) < 0.5 * min(others)
    assert info["copied"]["B-politician"] == "B-PER" and info["copied"]["O"] == "O"
    assert info["fresh"] == ["B-spaceship", "I-spaceship"]
    # two targets sharing one source type start close but not identical
    bp, bpol = TARGET.tags.index("B-person"), TARGET.tags.index("B-politician")
    assert not torch.equal(new.weight[bp], new.weight[bpol])
    logits = model(input_ids=torch.tensor([[101, 2000, 102]])).logits
    assert logits.shape[-1] == TARGET.num_tags


def test_ori_gets_a_fresh_head():
    model = tiny_bert(SOURCE.num_tags)
    _, old = find_head(model, SOURCE.num_tags)
    w = old.weight.detach().clone()
    info = reinit_head(model, SOURCE, TARGET, None)
    _, new = find_head(model, TARGET.num_tags)
    assert info["copied"] == {} and len(info["fresh"]) == TARGET.num_tags
    assert float((new.weight[0] - w[0]).abs().max()) > 1e-3
    assert float(new.bias.abs().max()) == 0.0


# --------------------------------------------------------------------------- end to end


def read(path, n):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(next(fh)) for _ in range(n)]


def write_jsonl(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def run(exe, *args, check=True):
    """The command in-process (click's runner: no interpreter start-up per call)."""
    import torch
    from click.testing import CliRunner

    from nertools.cli import align, tag

    torch.set_num_threads(1)
    main, argv = (align.main, list(args)) if exe == "ner-align" else (tag.main, list(args))
    p = CliRunner().invoke(main, [str(a) for a in argv], prog_name=exe)
    p.returncode = p.exit_code
    if check and p.exit_code != 0:
        raise AssertionError(f"{exe} exit {p.exit_code}: {p.stderr[-2000:]} {p.exception!r}")
    return p


def test_classifier_mode_end_to_end(tiny_source_tagger, tmp_path):
    import torch
    from transformers import AutoModelForTokenClassification

    recs = [r for r in read(DATA / "crossner_politics" / "train.jsonl", 30)][:16]
    labels = sorted({s["label"] for r in recs for s in r["spans"]})
    data = write_jsonl(tmp_path / "politics.jsonl", recs)
    assign = {lab: {"politician": "PER", "person": "PER", "country": "LOC", "location": "LOC",
                    "politicalparty": "ORG", "organisation": "ORG"}.get(lab, "MISC") for lab in labels}
    cand = {}
    for t, s in assign.items():
        cand.setdefault(s, []).append(t)
    table = {"format": "nertools-align-table", "version": 1, "method": "manual", "source_labels": list(SOURCE.labels),
             "target_labels": labels, "misc": "MISC", "assign": assign, "candidates": cand, "votes": {},
             "overrides": {}}
    tpath = tmp_path / "table.json"
    tpath.write_text(json.dumps(table))
    out = tmp_path / "target"
    p = run("ner-align", "train", "--mode", "classifier", "--source-model", tiny_source_tagger, "--table", tpath,
            "--train", data, "--dev", data, "--out", out, "--max-steps", 2, "--threads", "1", "--batch-size", 8,
            "--init-noise", 0.1)
    assert "rows copied from the source head" in p.stderr
    meta = json.loads((out / "nertools.json").read_text())
    assert meta["format"] == "nertools-tagger" and meta["labels"] == labels
    align = meta["align"]
    assert align["assign"] == assign and align["ori"] is False
    assert align["head_init"]["copied"]["B-politician"] == "B-PER"
    assert align["head_init"]["fresh"] == []
    # the copied rows really come from the source head (2 small steps of fine-tuning later)
    src = AutoModelForTokenClassification.from_pretrained(tiny_source_tagger).requires_grad_(False)
    tgt = AutoModelForTokenClassification.from_pretrained(out).requires_grad_(False)
    i, j = meta["tags"].index("B-politician"), SOURCE.tags.index("B-PER")
    k = SOURCE.tags.index("B-LOC")
    d_same = float((tgt.classifier.weight[i] - src.classifier.weight[j]).norm())
    d_other = float((tgt.classifier.weight[i] - src.classifier.weight[k]).norm())
    assert d_same < 0.5 * d_other
    # a normal tagger directory: ner-tag reads it; ner-align predict adds source_label
    tagged = run("ner-tag", "--model", out, data, "--threads", "1")
    assert len(tagged.stdout.splitlines()) == len(recs)
    pred = run("ner-align", "predict", "--model", out, data, "--threads", "1")
    rows = [json.loads(line) for line in pred.stdout.splitlines()]
    assert len(rows) == len(recs)
    assert all(s["source_label"] == assign[s["label"]] for r in rows for s in r["spans"])
    # the generative parser's off-candidate policy has no meaning for a tagger: refused
    p = run("ner-align", "predict", "--model", out, data, "--off-candidate", "default", check=False)
    assert p.returncode == 2 and "--off-candidate" in p.stderr and p.stdout == ""
    # --ori: the same backbone, a fresh head
    ori = tmp_path / "ori"
    p = run("ner-align", "train", "--mode", "classifier", "--ori", "--source-model", tiny_source_tagger,
            "--train", data, "--dev", data, "--out", ori, "--max-steps", 1, "--threads", "1")
    m2 = json.loads((ori / "nertools.json").read_text())
    assert m2["align"]["ori"] is True and m2["align"]["head_init"]["copied"] == {}
    assert "head: fresh" in p.stderr
    # a gold type the table does not know: exit 65, named
    bad = dict(table, assign={k: v for k, v in assign.items() if k != "politician"})
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    p = run("ner-align", "train", "--mode", "classifier", "--source-model", tiny_source_tagger, "--table",
            tmp_path / "bad.json", "--train", data, "--dev", data, "--out", tmp_path / "z", check=False)
    assert p.returncode == 65 and "politician" in p.stderr
    shutil.rmtree(tmp_path / "z", ignore_errors=True)
