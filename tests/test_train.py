"""Tagger, training loop, model directory, ner-selftrain and ner-tag (tiny random BERT)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from nertools.errors import NertoolsError
from nertools.core.jsonl import read_records
from nertools.core.record import normalize_record
from nertools.tagging.tagger import LabelScheme, SpecialTokens, Tagger, assign_owners, make_windows, predict_probs, window_ranges, word_pieces
from nertools.tagging.train import TrainArgs, replace_dir, save_model_dir, span_metrics, train

VOCAB = ("[PAD] [UNK] [CLS] [SEP] [MASK] the a of in visited met said city and works for to "
         ". , ##s alice bob carol paris london rome acme globex").split()
PER, LOC, ORG = ["Alice", "Bob", "Carol"], ["Paris", "London", "Rome"], ["Acme", "Globex"]


def _build_tiny_bert(folder: Path, layers: int = 2, max_pos: int = 64):
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=layers,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=max_pos)
    BertForMaskedLM(cfg).save_pretrained(folder)
    return folder


def _toy_record(rng: random.Random, i: int) -> dict:
    kind = rng.randint(0, 2)
    if kind == 0:
        words, spans = [rng.choice(PER), "visited", rng.choice(LOC), "."], [(0, 0, "PER"), (2, 2, "LOC")]
    elif kind == 1:
        words = [rng.choice(PER), "works", "for", rng.choice(ORG), "in", rng.choice(LOC), "."]
        spans = [(0, 0, "PER"), (3, 3, "ORG"), (5, 5, "LOC")]
    else:
        words, spans = ["the", "city", "of", rng.choice(LOC), "said", rng.choice(PER), "."], [(3, 3, "LOC"), (5, 5, "PER")]
    return {"id": f"r{i}", "tokens": words, "extra": i, "meta": {"k": i},
            "spans": [{"token_start": a, "token_end": b, "label": lab} for a, b, lab in spans]}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return _build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("toy-data")
    rng = random.Random(0)
    for name, n in (("train", 160), ("dev", 30)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(_toy_record(rng, i)) + "\n" for i in range(n)))
    return d / "train.jsonl", d / "dev.jsonl"


def _run(*args, env=None, **kw) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(list(args), capture_output=True, text=True, env=full_env, timeout=300, **kw)


# ----------------------------------------------------------------------------- labels & windows


def test_label_scheme_roundtrip_and_repair():
    scheme = LabelScheme(("LOC", "PER"))
    assert scheme.tags == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    spans = [{"token_start": 0, "token_end": 1, "label": "PER"}, {"token_start": 3, "token_end": 3, "label": "LOC"},
             {"token_start": 1, "token_end": 2, "label": "LOC"},   # overlaps the PER span: dropped
             {"token_start": 4, "token_end": 4, "label": "ORG"}]   # unknown label: dropped
    ids, dropped = scheme.tag_ids(5, spans)
    assert ids == [3, 4, 0, 1, 0] and dropped == 2
    probs = np.eye(5, dtype=np.float32)[ids] * 0.8 + 0.04
    assert [(a, b, lab) for a, b, lab, _ in scheme.decode(probs)] == [(0, 1, "PER"), (3, 3, "LOC")]
    # an I- tag after O starts a span; a change of type splits; the score is the tag-probability mean
    probs = np.zeros((4, 5), dtype=np.float32)
    for i, (t, p) in enumerate([(2, 0.6), (2, 0.8), (4, 0.9), (0, 1.0)]):
        probs[i, t] = p
    out = scheme.decode(probs)
    assert [(a, b, lab) for a, b, lab, _ in out] == [(0, 1, "LOC"), (2, 2, "PER")]
    assert out[0][3] == pytest.approx(0.7)


@pytest.mark.parametrize("seed", range(20))
def test_window_ranges_cover_everything_with_overlap(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 4) for _ in range(rng.randint(1, 40))]
    budget, overlap = rng.randint(4, 12), rng.randint(0, 5)
    ranges = window_ranges(lengths, budget, overlap)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(lengths)
    for (a, b), (c, d) in zip(ranges, ranges[1:]):
        assert a < c <= b  # progress, no gap
    for a, b in ranges:
        assert sum(min(x, budget) for x in lengths[a:b]) <= budget
    owned = assign_owners(ranges, len(lengths))
    covered = [w for a, b in owned for w in range(a, b)]
    assert covered == list(range(len(lengths)))  # a partition, in order
    for (a, b), (oa, ob) in zip(ranges, owned):
        assert oa == ob or a <= oa < ob <= b


def test_windowed_prediction_equals_context_free_prediction(tmp_path):
    """A model without context (no layers, zeroed positions) predicts each word from its id
    alone, so a long sentence split into windows must give exactly each word's own output."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    folder = _build_tiny_bert(tmp_path / "ctxfree", layers=0)
    scheme = LabelScheme(("LOC", "ORG", "PER"))
    model = AutoModelForTokenClassification.from_pretrained(folder, num_labels=scheme.num_tags)
    with torch.no_grad():
        model.bert.embeddings.position_embeddings.weight.zero_()
        model.bert.embeddings.token_type_embeddings.weight.zero_()
    tok = AutoTokenizer.from_pretrained(folder)
    rng = random.Random(3)
    words = [rng.choice(VOCAB[5:]) for _ in range(37)]
    long_rec = normalize_record({"tokens": words})
    special = SpecialTokens.of(tok)
    assert special.prefix == (VOCAB.index("[CLS]"),) and special.suffix == (VOCAB.index("[SEP]"),)
    wins = make_windows(0, word_pieces(tok, [long_rec])[0], special, max_length=8, overlap=2)
    assert len(wins) > 5 and all(len(w) <= 8 for w in wins)
    windowed = predict_probs(model, tok, [long_rec], scheme=scheme, max_length=8, overlap=2, max_tokens=40)[0]
    singles = predict_probs(model, tok, [normalize_record({"tokens": [w]}) for w in words], scheme=scheme,
                            max_length=8, overlap=2, max_tokens=40)
    assert windowed.shape == (37, scheme.num_tags)
    assert np.allclose(windowed, np.concatenate(singles), atol=1e-5)
    # a word whose pieces alone exceed the window still gets a prediction
    huge = normalize_record({"tokens": ["aliceaaaaaaaaaaaaaaaaaaa", "bob"]})
    assert predict_probs(model, tok, [huge], scheme=scheme, max_length=4, overlap=1,
                         max_tokens=40)[0].sum(-1) == pytest.approx([1.0, 1.0])


# ----------------------------------------------------------------------------- console scripts


def test_selftrain_then_tag_end_to_end(tiny_bert, toy_data, tmp_path):
    train_path, dev_path = toy_data
    out = tmp_path / "tagger"
    r = _run("ner-selftrain", "--train", str(train_path), "--dev", str(dev_path), "--model", str(tiny_bert),
             "--out", str(out), "--epochs", "8", "--lr", "3e-3", "--max-length", "8",
             "--window-overlap", "2", "--threads", "1", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "dev F1" in r.stderr and r.stdout == ""
    meta = json.loads((out / "nertools.json").read_text())
    assert meta["labels"] == ["LOC", "ORG", "PER"]
    assert meta["data"]["train"]["sha256"] == hashlib.sha256(train_path.read_bytes()).hexdigest()
    assert meta["training_args"]["max_length"] == 8 and meta["max_length"] == 8
    assert meta["dev_metrics"]["f1"] == max(h["dev_f1"] for h in meta["history"])
    assert not (tmp_path / "tagger.checkpoint").exists()

    tagged = _run("ner-tag", "--model", str(out), "--threads", "1", str(dev_path))
    assert tagged.returncode == 0, tagged.stderr
    recs = [json.loads(x) for x in tagged.stdout.splitlines()]
    gold = list(read_records(dev_path))
    assert [r["id"] for r in recs] == [g["id"] for g in gold]
    assert all(r["extra"] == i and r["meta"] == {"k": i} for i, r in enumerate(recs))
    spans = [s for r in recs for s in r["spans"]]
    assert spans and all(s["source"] == "ner-tag" and 0 < s["score"] <= 1 for s in spans)
    assert all(r["text"][s["start"]:s["end"]] == " ".join(t["text"] for t in r["tokens"][s["token_start"]:s["token_end"] + 1])
               for r in recs for s in r["spans"])
    f1 = span_metrics(gold, [r["spans"] for r in recs])["f1"]
    assert f1 == pytest.approx(meta["dev_metrics"]["f1"], abs=0.01)  # ner-tag == training-time eval
    assert f1 > 50, f1  # the toy task is learnable; a broken pipeline stays near 0

    tagger = Tagger.load(out, device="cpu")  # the library path of --threshold
    kept = [s for r in tagger.tag(list(read_records(dev_path)), threshold=0.9) for s in r["spans"]]
    assert all(s["score"] >= 0.9 for s in kept) and len(kept) < len(spans)

    # bfloat16 weights (the --dtype path) on CPU: nearly the same tags
    bf16 = Tagger.load(out, device="cpu", dtype="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    bf16_spans = [(s["token_start"], s["token_end"], s["label"]) for r in bf16.tag(gold, max_tokens=64)
                  for s in r["spans"]]
    fp32_spans = [(s["token_start"], s["token_end"], s["label"]) for s in spans]
    agree = len(set(bf16_spans) & set(fp32_spans)) / max(1, len(set(fp32_spans)))
    assert agree > 0.8, agree


def test_cli_errors(tmp_path, toy_data):
    train_path, dev_path = toy_data
    r = _run("ner-tag", "--model", str(tmp_path), str(dev_path))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not a nertools tagger directory" in r.stderr
    empty = tmp_path / "nospans.jsonl"
    empty.write_text('{"text": "Alice visited Paris ."}\n')
    r = _run("ner-selftrain", "--train", str(empty), "--dev", str(dev_path), "--model", "x", "--out", str(tmp_path / "m"))
    assert r.returncode == 65 and "no spans" in r.stderr and r.stderr.count("\n") == 1
    broken = tmp_path / "broken.jsonl"
    broken.write_text(train_path.read_text().splitlines()[0] + "\n{oops\n")
    r = _run("ner-selftrain", "--train", str(broken), "--dev", str(dev_path), "--model", "x", "--out", str(tmp_path / "m"))
    assert r.returncode == 65 and f"{broken}:2:" in r.stderr


# ----------------------------------------------------------------------------- BOND, atomic save, resume


def test_bond_training_in_process(tiny_bert, toy_data, tmp_path, monkeypatch):
    train_path, dev_path = toy_data
    torch.set_num_threads(1)
    args = TrainArgs(model=str(tiny_bert), lr=3e-3, max_steps=24, eval_every=4, self_train=True,
                     t_early=12, t_update=4, threshold=0.5, o_weight=0.5, patience=0, batch_size=16)
    records = list(read_records(train_path))
    # stage II must really learn from the teacher: count the loss functions each step calls
    from nertools.tagging import bond

    calls = Counter()

    def counted(fn):
        def wrapper(*a, **k):
            calls[fn.__name__] += 1
            return fn(*a, **k)
        return wrapper

    for name in ("weighted_cross_entropy", "soft_labels", "kl_loss"):
        monkeypatch.setattr(bond, name, counted(getattr(bond, name)))
    logs: list[str] = []
    meta = train(args, records, list(read_records(dev_path)), str(tmp_path / "bond"),
                 train_path=str(train_path), dev_path=str(dev_path), log=logs.append)
    assert meta["bond"] == {"t_early": 12, "t_update": 4, "threshold": 0.5}
    assert [h["stage"] for h in meta["history"]] == [1, 1, 1, 2, 2, 2]
    # steps 1-12 cross-entropy on the given labels, steps 13-24 KL to the teacher's soft labels,
    # the teacher copied from the student before steps 13, 17 and 21
    assert calls == {"weighted_cross_entropy": 12, "soft_labels": 12, "kl_loss": 12}
    assert [m for m in logs if "teacher <- student" in m] == [f"step {s}: teacher <- student" for s in (13, 17, 21)]
    assert meta["steps_run"] == 24
    assert Tagger.load(tmp_path / "bond", device="cpu").scheme.labels == ("LOC", "ORG", "PER")


def test_bfloat16_autocast_training_on_cpu(tiny_bert, toy_data, tmp_path):
    train_path, dev_path = toy_data
    args = TrainArgs(model=str(tiny_bert), lr=3e-3, max_steps=6, eval_every=3, precision="bfloat16",
                     grad_accum=2, batch_size=8, device="cpu")
    meta = train(args, list(read_records(train_path))[:64], list(read_records(dev_path)),
                 str(tmp_path / "bf16"), train_path=str(train_path), dev_path=str(dev_path), log=lambda m: None)
    assert meta["steps_run"] == 6 and len(meta["history"]) == 2
    assert all(np.isfinite(h["loss"]) and h["loss"] > 0 for h in meta["history"])


def test_atomic_save_never_leaves_a_loadable_half_directory(tiny_bert, tmp_path, monkeypatch):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(tiny_bert, num_labels=3)
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    meta = {"format": "nertools-tagger", "labels": ["X"], "max_length": 16, "window_overlap": 2}
    out = tmp_path / "model"
    save_model_dir(model, tok, meta, out)
    first = Tagger.load(out, device="cpu")

    def crash(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(tok), "save_pretrained", crash)
    with pytest.raises(RuntimeError):
        save_model_dir(model, tok, dict(meta, labels=["Y"]), out)
    assert Tagger.load(out, device="cpu").scheme.labels == first.scheme.labels == ("X",)
    with pytest.raises(RuntimeError):
        save_model_dir(model, tok, meta, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp leftovers
    with pytest.raises(NertoolsError):
        Tagger.load(tmp_path / "fresh")
    # replace_dir swaps whole directories
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "f").write_text("new"), (b / "f").write_text("old")
    replace_dir(a, b)
    assert (b / "f").read_text() == "new" and not a.exists()


def test_kill_and_resume_matches_uninterrupted_run(tiny_bert, toy_data, tmp_path):
    train_path, dev_path = toy_data
    out = tmp_path / "resumed"
    ckpt = tmp_path / "resumed.checkpoint"
    cmd = ["ner-selftrain", "--train", str(train_path), "--dev", str(dev_path), "--model", str(tiny_bert),
           "--out", str(out), "--max-steps", "16", "--eval-every", "4", "--lr", "3e-3", "--seed", "5",
           "--patience", "0", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, NERTOOLS_CHECKPOINT_PAUSE="120"))
    try:
        deadline = time.time() + 120
        while not (ckpt / "state.json").exists():
            assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert json.loads((ckpt / "state.json").read_text())["step"] == 4
    assert not out.exists()
    with pytest.raises(NertoolsError):
        Tagger.load(out)
    again = _run(*cmd)  # without --resume: refuses to clobber the interrupted run
    assert again.returncode == 1 and "--resume" in again.stderr
    resumed = _run(*cmd, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "at step 4/16" in resumed.stderr
    assert not ckpt.exists()

    # the same run without interruption, in this process
    torch.set_num_threads(1)
    args = TrainArgs(model=str(tiny_bert), max_steps=16, eval_every=4, lr=3e-3, seed=5, patience=0)
    ref_meta = train(args, list(read_records(train_path)), list(read_records(dev_path)), str(tmp_path / "ref"),
                     train_path=str(train_path), dev_path=str(dev_path), log=lambda m: None)
    meta = json.loads((out / "nertools.json").read_text())
    assert [h["step"] for h in meta["history"]] == [4, 8, 12, 16]
    assert [h["dev_f1"] for h in meta["history"]] == pytest.approx([h["dev_f1"] for h in ref_meta["history"]], abs=1e-6)
    assert meta["best_step"] == ref_meta["best_step"]
    a = Tagger.load(out, device="cpu").model.state_dict()
    b = Tagger.load(tmp_path / "ref", device="cpu").model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_decoder_backbone_trains_and_tags(toy_data, tmp_path):
    """A causal LM folder (tiny random Llama) gets a token-classification head too."""
    from transformers import BertTokenizerFast, LlamaConfig, LlamaForCausalLM

    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                 max_position_embeddings=64)).save_pretrained(folder)
    train_path, dev_path = toy_data
    args = TrainArgs(model=str(folder), lr=3e-3, max_steps=4, eval_every=2, batch_size=8)
    meta = train(args, list(read_records(train_path))[:32], list(read_records(dev_path)), str(tmp_path / "out"),
                 train_path=str(train_path), dev_path=str(dev_path), log=lambda m: None)
    assert meta["steps_run"] == 4
    tagger = Tagger.load(tmp_path / "out", device="cpu")
    assert type(tagger.model).__name__ == "LlamaForTokenClassification"
    recs = list(tagger.tag(list(read_records(dev_path))[:5]))
    assert len(recs) == 5 and all(isinstance(r["spans"], list) for r in recs)
    # the body is the source model's, fine-tuned: every base weight moved, by at most what 4
    # AdamW steps at lr <= 3e-3 (linear decay) can move it -- a fresh random body would be ~0.1 off
    source = LlamaForCausalLM.from_pretrained(folder).base_model.state_dict()
    trained = tagger.model.base_model.state_dict()
    assert trained.keys() == source.keys()
    moved = {k: (trained[k].float() - source[k].float()).abs().max().item() for k in source}
    assert max(moved.values()) <= 4 * args.lr, moved
    assert moved["embed_tokens.weight"] > 0 and moved["layers.0.mlp.up_proj.weight"] > 0
    # and it learns: the training loss of steps 3-4 is below that of steps 1-2 (1.57 vs 1.83)
    assert meta["history"][-1]["loss"] < meta["history"][0]["loss"]
