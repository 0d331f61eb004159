"""Bi-encoder NER (issue 12): the losses against hand-computed values, merged duplicate
verbalisations, label files, decoding, training through the real console scripts on a
synthetic two-label task, zero-shot tagging with unseen labels, long-sentence windows,
resume after SIGTERM, and DistributedDataParallel on gloo (2 CPU processes = 1 process).

The tiny encoders are random BertModels (hidden 32, 2 layers, no dropout) with the MiniLM
tokenizer."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nertools.biencoder.labels import (LabelInfo, labels_from_option, read_label_file, record_mentions,
                                       verbalize)
from nertools.biencoder.losses import (concept_bce_loss, label_ce_loss, merge_duplicates, normalize_concept,
                                       similarity_logits)
from nertools.biencoder.tagger import decode
from nertools.errors import DataError, UsageError

PER = ["john", "mary", "peter", "anna", "paul", "susan"]
LOC = ["paris", "london", "berlin", "rome", "madrid", "vienna"]
BIN = Path(sys.executable).parent


def _script(name: str) -> str:
    return str(BIN / name)


def _env() -> dict:
    root = str(Path(__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from nertools.runtime.models import resolve_model_path

    d = tmp_path_factory.mktemp("bienc") / "tiny"
    tok = AutoTokenizer.from_pretrained(resolve_model_path("all-minilm-l6-v2"))
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    BertModel(cfg).save_pretrained(d)
    return d


def _record(rng: random.Random, i: int) -> dict:
    p, loc = rng.choice(PER), rng.choice(LOC)
    if rng.random() < 0.5:
        words, spans = [p, "visited", loc, "."], [(0, 0, "PER"), (2, 2, "LOC")]
    else:
        words, spans = ["in", loc, "we", "met", p, "today", "."], [(1, 1, "LOC"), (4, 4, "PER")]
    return {"id": f"r{i}", "tokens": words,
            "spans": [{"token_start": a, "token_end": b, "label": x} for a, b, x in spans]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("bienc-data")
    rng = random.Random(0)
    for name, n in (("train", 64), ("dev", 16)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(_record(rng, i)) + "\n" for i in range(n)))
    (d / "desc.tsv").write_text("# label<TAB>description\nPER\tperson\nLOC\tlocation\n")
    return {"train": d / "train.jsonl", "dev": d / "dev.jsonl", "desc": d / "desc.tsv", "dir": d}


TRAIN_KNOBS = ["--batch-size", "8", "--lr", "3e-3", "--freeze-layers", "0", "--threads", "1", "--device", "cpu"]


def _invoke(script: str, args: list[str]):
    """The console script's own click command (its pyproject entry point), run in-process."""
    import importlib
    import tomllib

    spec = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    module, _, attr = spec["project"]["scripts"][script].partition(":")
    return CliRunner().invoke(getattr(importlib.import_module(module), attr), args, prog_name=script)


@pytest.fixture(scope="module")
def trained(tiny, data) -> Path:
    """A bi-encoder trained with the labels objective through ner-biencoder train."""
    out = data["dir"] / "model"
    r = _invoke("ner-biencoder", ["train", "--objective", "labels", "--train", str(data["train"]),
                                  "--dev", str(data["dev"]), "--model", str(tiny), "--label-desc", str(data["desc"]),
                                  "--out", str(out), "--max-steps", "24", "--eval-every", "12", *TRAIN_KNOBS])
    assert r.exit_code == 0, r.stderr
    assert "ner-biencoder: wrote" in r.stderr and r.stdout == ""
    return out


# ----------------------------------------------------------------------------- losses, by hand


def test_concept_bce_matches_hand_values_and_ignores_masked_tokens():
    logits = torch.tensor([[[0.0, math.log(3)], [5.0, -7.0]]])        # token 2 is padding
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    mask = torch.tensor([[True, False]])
    # sigmoid(0) = 1/2 against 1: ln 2; sigmoid(ln 3) = 3/4 against 0: -ln(1/4) = ln 4
    expected = (math.log(2) + math.log(4)) / 2
    assert concept_bce_loss(logits, targets, mask).item() == pytest.approx(expected, rel=1e-6)
    # a data-parallel shard divides by the global count instead
    assert concept_bce_loss(logits, targets, mask, total=8).item() == pytest.approx(expected * 2 / 8, rel=1e-6)
    # multi-label: both concepts positive on one token
    both = concept_bce_loss(torch.zeros(1, 1, 2), torch.ones(1, 1, 2), torch.ones(1, 1, dtype=torch.bool))
    assert both.item() == pytest.approx(math.log(2), rel=1e-6)


def test_concept_bce_without_concepts_is_zero_and_attached():
    logits = torch.zeros(1, 3, 0, requires_grad=True)
    loss = concept_bce_loss(logits, torch.zeros(1, 3, 0), torch.ones(1, 3, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad


def test_label_ce_matches_hand_values_and_ignores_minus_100():
    # outside, A, B with logits 0, ln 2, 0: p(A) = 2/4
    logits = torch.tensor([[[0.0, math.log(2), 0.0], [0.0, 0.0, 0.0], [9.0, 9.0, 9.0]]])
    targets = torch.tensor([[1, 0, -100]])
    expected = (math.log(2) + math.log(3)) / 2
    assert label_ce_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    assert label_ce_loss(logits, targets, total=4).item() == pytest.approx(expected / 2, rel=1e-6)


def test_similarity_dot_over_tau_and_scaled_cosine():
    h = torch.tensor([[1.0, 2.0]])
    e = torch.tensor([[3.0, 4.0], [-2.0, 1.0]])
    assert similarity_logits(h, e, tau=5)[0].tolist() == pytest.approx([11 / 5, 0.0])
    cos = 11 / (math.sqrt(5) * 5)
    assert similarity_logits(h, e, similarity="cosine", tau=5)[0].tolist() == pytest.approx([5 * cos, 0.0], abs=1e-6)


def test_concept_identity_and_duplicate_merging():
    assert normalize_concept("  NFL \t Team ") == "nfl team"
    assert merge_duplicates(["outside", "human", "city", "human"]) == (["outside", "human", "city"], [0, 1, 2, 1])


def _bare_task(tokenizer, objective: str, inventory: dict, negatives: int = 0):
    from nertools.biencoder.train import BiEncoderArgs, BiEncoderTask

    task = BiEncoderTask.__new__(BiEncoderTask)
    task.args = BiEncoderArgs(objective=objective, model="x", verbalize="description", negatives=negatives)
    task.concepts = objective == "concepts"
    task.inventory, task.inventory_keys = inventory, list(inventory)
    task.label_tokenizer, task.pad_id = tokenizer, 0
    return task


def test_labels_batch_merges_identical_verbalisations(tiny):
    from transformers import AutoTokenizer

    from nertools.biencoder.train import Example, batch_rng

    tok = AutoTokenizer.from_pretrained(tiny)
    inv = {"PER": LabelInfo("PER", "human"), "PERSON": LabelInfo("PERSON", "human"), "LOC": LabelInfo("LOC", "city")}
    task = _bare_task(tok, "labels", inv)
    ex = Example(0, [101, 7, 8, 9, 102], [(), ("PER",), ("PERSON",), ("LOC",), ()], [False, True, True, True, False])
    batch = task.make_batch([ex], [ex], batch_rng(1, [0]))
    # outside + "human" (PER and PERSON merged) + "city": three label rows
    assert batch["label_input_ids"].shape[0] == 3
    assert batch["targets"].tolist() == [[-100, 1, 1, 2, -100]]
    assert batch["total"] == 3.0
    # concepts: multi-label targets over the distinct concepts, total = tokens x concepts
    cinv = {"nfl team": LabelInfo("nfl team"), "team": LabelInfo("team")}
    ctask = _bare_task(tok, "concepts", cinv)
    cex = Example(0, [101, 7, 8, 102], [(), ("nfl team", "team"), (), ()], [False, True, True, False])
    cb = ctask.make_batch([cex], [cex], None)
    assert cb["targets"][0, 1].tolist() == [1.0, 1.0] and cb["targets"][0, 2].tolist() == [0.0, 0.0]
    assert cb["mask"].tolist() == [[False, True, True, False]] and cb["total"] == 4.0


def test_negatives_come_from_the_inventory_and_depend_on_the_batch_only(tiny):
    from transformers import AutoTokenizer

    from nertools.biencoder.train import Example, batch_rng

    tok = AutoTokenizer.from_pretrained(tiny)
    inv = {k: LabelInfo(k, k) for k in ["a", "b", "c", "d", "e"]}
    task = _bare_task(tok, "labels", inv, negatives=2)
    ex = Example(0, [101, 7, 102], [(), ("a",), ()], [False, True, False])
    texts, cols = task.batch_labels([ex], batch_rng(3, [5, 6]))
    again, _ = task.batch_labels([ex], batch_rng(3, [5, 6]))
    assert texts == again and len(texts) == 4 and texts[:2] == ["outside", "a"] and set(texts[2:]) <= set("bcde")


def test_verbalisation_modes():
    info = LabelInfo("Restaurant_Name", "the name of a restaurant", ["restaurant", "eatery", "diner"])
    assert verbalize(info, "description") == "the name of a restaurant"
    assert verbalize(info, "names") == "restaurant, eatery, diner"
    assert verbalize(LabelInfo("Restaurant_Name"), "description") == "restaurant name"   # falls back to a name
    rng = random.Random(0)
    seen = {verbalize(info, "mixed", rng) for _ in range(200)}
    assert "the name of a restaurant" in seen and any("," in s for s in seen)
    assert all(s == "the name of a restaurant" or set(s.split(", ")) <= set(info.names) for s in seen)


def test_mentions_of_annotated_records_keep_every_placed_and_overlapping_item():
    rec = {"tokens": [{"text": w} for w in "the New York Jets won".split()],
           "annotation": {"items": [
               {"text": "New York Jets", "label": "NFL team", "description": "a football team",
                "status": "placed", "occurrences": [[1, 3]]},
               {"text": "New York", "label": "city", "status": "overlap", "occurrences": [[1, 2]]},
               {"text": "Boston", "label": "city", "status": "not_found"}]},
           "spans": [{"token_start": 1, "token_end": 3, "label": "NFL team"}]}
    got = [(m.start, m.end, m.label, m.description) for m in record_mentions(rec)]
    assert got == [(1, 3, "NFL team", "a football team"), (1, 2, "city", None)]


def test_label_files(tmp_path):
    f = tmp_path / "l.tsv"
    f.write_text('PER\ta person\tperson, human\n{"label": "LOC", "names": ["place"]}\nORG\n')
    infos = read_label_file(f)
    assert [(i.label, i.description, i.names) for i in infos] == [
        ("PER", "a person", ["person", "human"]), ("LOC", None, ["place"]), ("ORG", None, [])]
    f.write_text("PER\tx\n\nPER\ty\n")
    with pytest.raises(DataError, match=r"l.tsv:3: label 'PER' given twice"):
        read_label_file(f)
    f.write_text("# only a comment\n")
    with pytest.raises(DataError, match="no labels in file"):
        read_label_file(f)
    assert [(i.label, i.names) for i in labels_from_option(["PER=person", "city"])] == [("PER", ["person"]),
                                                                                      ("city", ["city"])]
    with pytest.raises(UsageError):
        labels_from_option(["a", "a"])


def test_decoding_argmax_threshold_io_merging_and_multi():
    # columns: outside, A, B; words 0-1 A, word 2 B, word 3 outside, word 4 A but below threshold 0.5
    s = np.array([[0.1, 0.8, 0.1], [0.2, 0.6, 0.2], [0.1, 0.2, 0.7], [0.8, 0.1, 0.1], [0.3, 0.4, 0.3]])
    assert decode(s, ["A", "B"], scoring="softmax") == [(0, 1, "A", pytest.approx(0.7)), (2, 2, "B", 0.7),
                                                        (4, 4, "A", 0.4)]
    assert decode(s, ["A", "B"], scoring="softmax", threshold=0.5) == [(0, 1, "A", pytest.approx(0.7)),
                                                                       (2, 2, "B", 0.7)]
    sig = np.array([[0.9, 0.6], [0.2, 0.7], [0.1, 0.1]])
    assert decode(sig, ["A", "B"], scoring="sigmoid") == [(0, 0, "A", 0.9), (1, 1, "B", 0.7)]
    assert decode(sig, ["A", "B"], scoring="sigmoid", decoding="multi") == [(0, 0, "A", 0.9),
                                                                             (0, 1, "B", pytest.approx(0.65))]


# ----------------------------------------------------------------------------- console scripts


def test_trained_model_learns_the_two_label_task_and_tags_through_ner_tag(trained, data):
    meta = json.loads((trained / "nertools.json").read_text())
    assert meta["kind"] == "biencoder" and meta["scoring"] == "softmax" and meta["tau"] == 5.0
    assert set(meta["training_labels"]) == {"PER", "LOC"} and meta["training_labels"]["PER"]["verbalized"] == "person"
    assert sorted(meta["files"]) == ["label_encoder", "nertools.json", "text_encoder"]
    tag = _invoke("ner-tag", ["--model", str(trained), "--labels", "PER=person,LOC=location", "--threads", "1",
                              "--device", "cpu", "-q", str(data["dev"])])
    assert tag.exit_code == 0, tag.stderr
    pred = data["dir"] / "pred.jsonl"
    pred.write_text(tag.stdout)
    from nertools.core.jsonl import read_records
    from nertools.evaluation import evaluate

    gold = list(read_records(data["dev"]))
    got = list(read_records(pred))
    assert all(s["source"] == "ner-tag" and 0 <= s["score"] <= 1 for r in got for s in r["spans"])
    assert evaluate(gold, got)["micro"]["f1"] >= 0.9


def test_zero_shot_with_labels_never_seen_and_long_sentences_windowed(trained, tmp_path):
    from nertools.biencoder import BiEncoder
    from nertools.core.record import normalize_record

    enc = BiEncoder.load(trained, device="cpu")
    words = (" ".join(["paris", "is", "where", "john", "met", "anna", "."] * 20)).split()  # 140 words > 64
    recs = [normalize_record({"id": "long", "text": " ".join(words)}),
            normalize_record({"id": "empty", "text": ""}) if False else normalize_record({"id": "s", "text": "mary"})]
    labels = labels_from_option(["fruit", "vehicle=a car or a bus", "city"])
    out = list(enc.tag_records(recs, labels, decoding="multi", threshold=0.0))
    for r in out:
        n = len(r["tokens"])
        for s in r["spans"]:
            assert s["label"] in {"fruit", "vehicle", "city"} and 0 <= s["token_start"] <= s["token_end"] < n
            assert r["text"][s["start"]:s["end"]] == " ".join(w["text"] for w in r["tokens"][s["token_start"]:s["token_end"] + 1])
    # multi with threshold 0: every label covers every word -> one span per label over the whole record
    assert {(s["label"], s["token_start"], s["token_end"]) for s in out[0]["spans"]} == {
        (lab, 0, len(words) - 1) for lab in ("fruit", "vehicle", "city")}
    # word scores of the long record exist for every word (windowed, not truncated)
    scores = enc.scores([recs[0]], enc.vectors(labels))[0]
    assert scores.shape == (len(words), 4) and (scores.sum(1) > 0.99).all()


def test_text_encoder_is_a_plain_hf_folder_that_ner_selftrain_fine_tunes(trained, data, tmp_path):
    from transformers import AutoModel

    from nertools.tagging.train import TrainArgs, train_tagger
    from nertools.core.jsonl import read_records

    AutoModel.from_pretrained(trained / "text_encoder")
    recs = list(read_records(data["train"]))[:16]
    meta = train_tagger(TrainArgs(model=str(trained / "text_encoder"), max_steps=2, device="cpu"), recs, recs,
                        tmp_path / "tagger", log=lambda m: None)
    assert meta["steps_run"] == 2


def test_ner_tag_label_errors(trained, data, tmp_path):
    from nertools.cli.tag import main

    def run(*args):
        return CliRunner().invoke(main, ["--model", str(trained), "--device", "cpu", *args, str(data["dev"])])

    empty = tmp_path / "e.tsv"
    empty.write_text("")
    dup = tmp_path / "d.tsv"
    dup.write_text("a\tx\na\ty\n")
    cases = [((), 2, "give the labels to tag"), (("--labels", ""), 2, "no labels given"),
             (("--labels-file", str(empty)), 65, "no labels in file"),
             (("--labels-file", str(dup)), 65, "d.tsv:2: label 'a' given twice")]
    for args, code, text in cases:
        r = run(*args)
        assert r.exit_code == code and text in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


def test_concepts_objective_in_process_on_annotation_items(tiny, tmp_path):
    from nertools.biencoder import BiEncoder, BiEncoderArgs, train_biencoder
    from nertools.core.record import normalize_record

    rng = random.Random(1)
    recs = []
    for i in range(24):
        p, loc = rng.choice(PER), rng.choice(LOC)
        r = normalize_record({"id": f"a{i}", "text": f"{p} visited {loc} ."})
        r["annotation"] = {"items": [
            {"text": p, "label": "Person", "description": "a human", "status": "placed", "occurrences": [[0, 0]]},
            {"text": loc, "label": "city ", "status": "placed", "occurrences": [[2, 2]]},
            {"text": loc, "label": "place", "status": "overlap", "occurrences": [[2, 2]]}]}
        recs.append(r)
    out = tmp_path / "nuner"
    meta = train_biencoder(BiEncoderArgs(objective="concepts", model=str(tiny), max_steps=3, batch_size=8,
                                         device="cpu"), recs, recs[:8], out, log=lambda m: None)
    assert meta["scoring"] == "sigmoid" and set(meta["training_labels"]) == {"person", "city", "place"}
    assert meta["dev_metrics"]["loss"] > 0 and meta["training_args"]["freeze_layers"] is None
    # half of the 2 layers frozen: the text encoder's embeddings and layer 0 did not move
    from transformers import AutoModel

    before, after = AutoModel.from_pretrained(tiny), AutoModel.from_pretrained(out / "text_encoder")
    assert torch.equal(before.embeddings.word_embeddings.weight, after.embeddings.word_embeddings.weight)
    assert torch.equal(before.encoder.layer[0].output.dense.weight, after.encoder.layer[0].output.dense.weight)
    assert not torch.equal(before.encoder.layer[1].output.dense.weight, after.encoder.layer[1].output.dense.weight)
    tagged = list(BiEncoder.load(out, device="cpu").tag_records(recs[:2], labels_from_option(["person"])))
    assert all(isinstance(r["spans"], list) for r in tagged)


# ----------------------------------------------------------------------------- resume, DDP


def test_sigterm_after_a_checkpoint_then_resume_reproduces_the_uninterrupted_run(tiny, data, tmp_path):
    from nertools.training import checkpoint_path

    base = [_script("ner-biencoder"), "train", "--objective", "labels", "--train", str(data["train"]),
            "--dev", str(data["dev"]), "--model", str(tiny), "--label-desc", str(data["desc"]),
            "--max-steps", "6", "--eval-every", "2", "--patience", "0", "--negatives", "1", *TRAIN_KNOBS, "-q"]
    out = tmp_path / "run"
    proc = subprocess.Popen([*base, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(_env(), NERTOOLS_CHECKPOINT_PAUSE="60"))
    try:
        deadline = time.time() + 240
        while not (checkpoint_path(out) / "state.json").exists():
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and len(err.splitlines()) == 1, (proc.returncode, err)
    assert not out.exists() and checkpoint_path(out).exists()
    done = _invoke("ner-biencoder", [*base[1:], "--out", str(out), "--resume"])
    assert done.exit_code == 0, done.stderr
    assert not checkpoint_path(out).exists()
    # the same run without interruption, in-process
    from nertools.biencoder import BiEncoderArgs, read_label_file, train_biencoder
    from nertools.core.jsonl import read_records

    ref = train_biencoder(BiEncoderArgs(objective="labels", model=str(tiny), max_steps=6, eval_every=2, patience=0,
                                        negatives=1, batch_size=8, lr=3e-3, freeze_layers=0, device="cpu"),
                          list(read_records(data["train"])), list(read_records(data["dev"])), tmp_path / "ref",
                          label_desc=read_label_file(data["desc"]), log=lambda m: None)
    resumed = json.loads((out / "nertools.json").read_text())
    assert [h["step"] for h in resumed["history"]] == [2, 4, 6]
    assert [h["loss"] for h in resumed["history"]] == pytest.approx([h["loss"] for h in ref["history"]], abs=1e-4)


def test_ddp_two_gloo_processes_give_the_one_process_loss_curve(tiny, data, tmp_path, objective="concepts"):
    """Same global batch (8) in 1 process and in 2 torchrun processes (4 each): the per-step
    losses agree to 1e-4 (float32 sums in another order; no dropout in the tiny model). The
    concepts objective (NuNER's, the one that needs several GPUs at scale), with a random
    negative label per batch; the labels objective goes through the same sharding code."""
    from nertools.biencoder import BiEncoderArgs, read_label_file, train_biencoder
    from nertools.core.jsonl import read_records

    knobs = dict(max_steps=4, eval_every=1, patience=0, negatives=1, batch_size=8, lr=3e-3, device="cpu")
    train = list(read_records(data["train"]))[:40]   # 5 global batches of 8 per epoch
    src = tmp_path / "train.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in train))
    one = train_biencoder(BiEncoderArgs(objective=objective, model=str(tiny), **knobs), train,
                          list(read_records(data["dev"])), tmp_path / "one",
                          label_desc=read_label_file(data["desc"]), log=lambda m: None)
    out = tmp_path / "two"
    cmd = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 400),
           "-m", "nertools.cli.biencoder", "train", "--objective", objective, "--train", str(src),
           "--dev", str(data["dev"]), "--model", str(tiny), "--label-desc", str(data["desc"]), "--out", str(out),
           "--max-steps", "4", "--eval-every", "1", "--patience", "0", "--negatives", "1", "--batch-size", "8",
           "--lr", "3e-3", "--threads", "1", "--device", "cpu", "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert r.returncode == 0, r.stderr[-3000:]
    two = json.loads((out / "nertools.json").read_text())
    assert len(two["history"]) == 4
    assert [h["loss"] for h in two["history"]] == pytest.approx([h["loss"] for h in one["history"]], abs=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("two")) == ["two"]


def test_concepts_batches_without_any_concept_train_with_a_zero_loss(tiny, tmp_path):
    """SmolLM2's NuNER answers leave most sentences without a placed item: a batch in which no
    sentence has a concept is a zero loss, not a crash (it used to fail in the label tokenizer)."""
    from nertools.biencoder import BiEncoderArgs, train_biencoder
    from nertools.core.record import normalize_record

    recs = [normalize_record({"id": f"e{i}", "text": f"nothing to see here {i} ."}) for i in range(8)]
    r = normalize_record({"id": "c0", "text": "Alice visited Paris ."})
    r["annotation"] = {"items": [{"text": "Paris", "label": "city", "status": "placed", "occurrences": [[2, 2]]}]}
    recs.append(r)
    meta = train_biencoder(BiEncoderArgs(objective="concepts", model=str(tiny), max_steps=3, batch_size=4,
                                         device="cpu", seed=3), recs, recs, tmp_path / "m", log=lambda m: None)
    assert meta["training_labels"] == {"city": meta["training_labels"]["city"]}
    losses = [h.get("loss") for h in meta["history"] if "loss" in h]
    assert all(math.isfinite(x) for x in losses)
