"""The bi-encoder with the real MiniLM (all-minilm-l6-v2, installed by `make models`): a few
training steps with the labels objective on CoNLL-2003 train sentences, then zero-shot tagging
of examples/demo_news.jsonl with plain-word labels, scored by nertools.evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.realmodel
def test_minilm_biencoder_trains_a_few_steps_and_tags_the_demo(shared_data, tmp_path):
    from nertools.biencoder import BiEncoder, BiEncoderArgs, labels_from_option, read_label_file, train_biencoder
    from nertools.core.jsonl import read_records
    from nertools.evaluation import evaluate

    train = []
    for r in read_records(shared_data / "conll2003" / "train.jsonl"):
        if r["spans"]:
            train.append(r)
        if len(train) == 32:
            break
    meta = train_biencoder(BiEncoderArgs(objective="labels", model="all-minilm-l6-v2", max_steps=3, batch_size=16,
                                         lr=1e-4, max_length=64, device="cpu"), train, train[:8], tmp_path / "bienc",
                           label_desc=read_label_file(ROOT / "examples" / "conll_label_desc.tsv"), log=lambda m: None)
    assert meta["steps_run"] == 3 and meta["objective"] == "labels"
    assert json.loads((tmp_path / "bienc" / "text_encoder" / "config.json").read_text())["hidden_size"] == 384
    gold = list(read_records(ROOT / "examples" / "demo_news.jsonl"))
    enc = BiEncoder.load(tmp_path / "bienc", device="cpu")
    labels = labels_from_option(["PER=person", "LOC=location", "ORG=organization", "MISC=nationality or event"])
    pred = list(enc.tag_records([dict(r, spans=[]) for r in gold], labels))
    assert len(pred) == len(gold)
    for r in pred:
        for s in r["spans"]:
            assert s["label"] in {"PER", "LOC", "ORG", "MISC"} and 0 <= s["score"] <= 1
            assert r["text"][s["start"]:s["end"]] == " ".join(
                t["text"] for t in r["tokens"][s["token_start"]:s["token_end"] + 1])
    report = evaluate(gold, pred)
    assert 0.0 <= report["micro"]["f1"] <= 1.0
