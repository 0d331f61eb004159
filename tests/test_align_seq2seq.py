"""LAR's generative mode on an encoder-decoder (T5) backbone: the literal-newline separator,
encoder inputs and labels, and a tiny random T5 (the real ``T5Tokenizer`` class, built from a
vocabulary of the toy task) learning the toy task through the console scripts."""

from __future__ import annotations

import json
from contextlib import nullcontext
from types import SimpleNamespace

import pytest

from nertools.align import generative as gen
from nertools.align.linearize import LITERAL_SEPARATOR, SEPARATOR, Linearizer, split_items
from tests.test_align_generative import SOURCES, TOKENIZER_DIR, run, run_here, toy_records, write_jsonl

ASSIGN = {"politician": "PER", "person": "PER", "politicalparty": "ORG", "country": "LOC"}
CANDIDATES = {"PER": ["person", "politician"], "ORG": ["politicalparty"], "LOC": ["country"]}
TABLE = {"format": "nertools-align-table", "version": 1, "method": "manual", "source_labels": SOURCES,
         "target_labels": sorted(ASSIGN), "misc": "MISC", "assign": ASSIGN, "candidates": CANDIDATES,
         "votes": {}, "overrides": {}}


def t5_tokenizer():
    """A real ``T5Tokenizer`` (SentencePiece-style unigram: a newline is whitespace to it, as to
    Flan-T5's) whose vocabulary holds every word of the toy task's prompts and answers."""
    from transformers import T5Tokenizer

    words = set()
    for lin in (Linearizer("reassign", sorted(ASSIGN), SOURCES, ASSIGN, CANDIDATES),
                Linearizer("direct", sorted(ASSIGN), SOURCES)):
        for r in toy_records():
            words.update(lin.prompt(r).split())
            words.update(lin.answer(r, LITERAL_SEPARATOR).split())
    chars = sorted({c for w in words for c in w})
    vocab = ([("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
             + [("\u2581" + w, -1.0) for w in sorted(words)] + [(c, -5.0) for c in chars])
    return T5Tokenizer(vocab=vocab, extra_ids=0)


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    """A random 2-layer T5 encoder-decoder folder with :func:`t5_tokenizer`."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tok = t5_tokenizer()
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=len(tok), d_model=64, d_ff=128, d_kv=16, num_layers=2, num_heads=4,
                   decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                   eos_token_id=tok.eos_token_id)
    d = tmp_path_factory.mktemp("tiny-t5")
    T5ForConditionalGeneration(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_separator_follows_what_the_tokenizer_can_write():
    from transformers import AutoTokenizer

    t5 = t5_tokenizer()
    # T5's normaliser turns a newline into a space: items would run together
    assert "\n" not in t5.decode(t5("Alice\nBob", add_special_tokens=False)["input_ids"])
    assert gen.answer_separator(t5) == LITERAL_SEPARATOR == " \\n "
    # a byte-level BPE (RoBERTa's, the tiny Llama's) keeps the newline
    assert gen.answer_separator(AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))) == SEPARATOR
    rec = toy_records()[0]
    lin = Linearizer("reassign", sorted(ASSIGN), SOURCES, ASSIGN, CANDIDATES)
    ans = lin.answer(rec, LITERAL_SEPARATOR)
    assert ans == "person : Alice -> politician \\n person : Bob -> person \\n location : Paris -> country"
    # the T5 vocabulary writes that answer back unchanged, and it parses to the gold spans
    text = t5.decode(t5(ans)["input_ids"], skip_special_tokens=True)
    assert text == ans and split_items(text) == lin.items(rec)
    spans, stats = lin.parse(text, rec)
    assert [(s["token_start"], s["label"], s["source_label"]) for s in spans] == \
        [(0, "politician", "PER"), (2, "person", "PER"), (4, "country", "LOC")]
    assert stats.kept == 3 and stats.dropped() == 0


def test_encoder_inputs_keep_special_tokens_and_the_prompt_end():
    from transformers import AutoTokenizer

    t5 = t5_tokenizer()
    rec = toy_records()[0]
    lin = Linearizer("reassign", sorted(ASSIGN), SOURCES, ASSIGN, CANDIDATES)
    prompt, ans = lin.prompt(rec), lin.answer(rec, LITERAL_SEPARATOR)
    plain = t5(prompt, add_special_tokens=False)["input_ids"]
    ids, labels, cut = gen.encode_seq2seq(t5, prompt, ans, 256, 128)
    assert ids == plain + [t5.eos_token_id] and not cut
    assert labels == t5(ans, add_special_tokens=False)["input_ids"] + [t5.eos_token_id]
    # too long: the last prompt tokens ("... Paris . Answer:") and the final </s> stay
    ids, labels, cut = gen.encode_seq2seq(t5, prompt, ans, 5, 4)
    assert ids == plain[-4:] + [t5.eos_token_id] and t5.decode(ids[:-1]).endswith("Paris . Answer:")
    assert labels == t5(ans, add_special_tokens=False)["input_ids"][:3] + [t5.eos_token_id] and cut
    ids, labels, cut = gen.encode_seq2seq(t5, prompt, None, 256, 1)
    assert ids == plain + [t5.eos_token_id] and labels == [] and not cut
    # a tokenizer that wraps the prompt on both sides (<s> ... </s>) keeps both when cut
    rob = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    plain = rob(prompt, add_special_tokens=False)["input_ids"]
    ids, _, _ = gen.encode_seq2seq(rob, prompt, None, 6, 1)
    assert ids == [rob.bos_token_id] + plain[-4:] + [rob.eos_token_id]


def test_collate_gives_labels_padded_with_ignore(tiny_t5):
    model, tok = gen.load_generator_lm(str(tiny_t5))
    assert gen.is_seq2seq(model) and not gen.is_seq2seq(SimpleNamespace(config=SimpleNamespace()))
    assert gen.generator_kind(str(tiny_t5)) == "seq2seq"
    recs = toy_records()
    lin = Linearizer("reassign", sorted(ASSIGN), SOURCES, ASSIGN, CANDIDATES)
    task = gen.GenerativeTask(gen.GenArgs(model=str(tiny_t5)), model, tok, lin, recs, recs, {}, log=lambda m: None)
    assert task.seq2seq and task.separator == LITERAL_SEPARATOR
    assert "encoder-decoder LM, items separated by a literal \\n" in task.describe()
    batch = task.collate([0, 4])  # a sentence with three entities and one with none
    assert batch["input_ids"].shape[0] == 2 and batch["attention_mask"].sum(1).tolist() == \
        [len(task.examples[0][0]), len(task.examples[4][0])]
    lab = batch["labels"].tolist()
    assert lab[0] == task.examples[0][1]
    assert lab[1][0] == tok.eos_token_id and set(lab[1][1:]) == {gen.IGNORE}  # empty answer: EOS only
    # the model builds its decoder input from the labels; the loss is finite
    loss = task.loss(model, batch, SimpleNamespace(autocast=nullcontext, dtype=None))
    assert loss.item() > 0
    # float16 autocast on an encoder-decoder is warned about, once
    import torch

    logs = []
    task.log = logs.append
    for _ in range(2):
        task.loss(model, batch, SimpleNamespace(autocast=nullcontext, dtype=torch.float16))
    assert len(logs) == 1 and "float16" in logs[0]
    assert gen.warn_fp16_seq2seq(model, torch.bfloat16, logs.append) is False and len(logs) == 1


def test_missing_decoder_start_is_refused(tiny_t5, tmp_path):
    from transformers import T5ForConditionalGeneration

    model = T5ForConditionalGeneration.from_pretrained(str(tiny_t5))
    model.config.decoder_start_token_id = None
    model.generation_config.decoder_start_token_id = None
    recs = toy_records()
    lin = Linearizer("direct", sorted(ASSIGN), SOURCES)
    with pytest.raises(Exception, match="decoder_start_token_id"):
        gen.GenerativeTask(gen.GenArgs(model="x"), model, t5_tokenizer(), lin, recs, recs, {}, log=lambda m: None)


def test_t5_learns_the_toy_task_through_the_console_scripts(tiny_t5, tmp_path):
    """Source stage (direct) on T5, then LAR's reassignment from that directory, then predict."""
    recs = toy_records()
    data = write_jsonl(tmp_path / "toy.jsonl", recs)
    tpath = tmp_path / "table.json"
    tpath.write_text(json.dumps(TABLE))
    common = ("--train", data, "--dev", data, "--lr", 1e-2, "--batch-size", 6, "--patience", 0,
              "--max-new-tokens", 40, "--threads", 1, "--warmup-ratio", 0.05)
    src = tmp_path / "source"
    run_here_ok("train", "--mode", "generative", "--ori", "--model", tiny_t5, "--out", src, "--max-steps", 10,
                *common)
    smeta = json.loads((src / "nertools.json").read_text())
    assert smeta["architecture"] == "seq2seq" and smeta["answer_separator"] == LITERAL_SEPARATOR
    assert smeta["linearizer"]["format"] == "direct"

    out = tmp_path / "gen"
    p = run("train", "--mode", "generative", "--table", tpath, "--model", src, "--out", out,
            "--max-steps", 120, "--eval-every", 40, *common)
    meta = json.loads((out / "nertools.json").read_text())
    assert meta["architecture"] == "seq2seq" and meta["linearizer"]["format"] == "reassign"
    assert meta["base_model"] == str(src)
    assert meta["dev_metrics"]["f1"] >= 90, p.stderr[-1500:]
    assert "encoder-decoder LM" in p.stderr

    pred = run("predict", "--model", out, data, "--threads", 1, "--keep-text", "--max-new-tokens", 40)
    rows = [json.loads(line) for line in pred.stdout.splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in recs]
    # the answers use the literal separator (T5 cannot write a newline)
    multi = [r["meta"]["generated"] for r, g in zip(rows, recs) if len(g["spans"]) > 1]
    assert multi and all(" \\n " in t and "\n" not in t for t in multi)
    hits = sum(1 for r, g in zip(rows, recs)
               for s in r["spans"] if any((s["token_start"], s["token_end"], s["label"]) ==
                                          (x["token_start"], x["token_end"], x["label"]) for x in g["spans"]))
    assert hits >= 0.9 * sum(len(g["spans"]) for g in recs)
    assert all(s["source_label"] == ASSIGN[s["label"]] for r in rows for s in r["spans"])
    assert "generated item(s) kept" in pred.stderr
    # the library's Generator reads the directory as an encoder-decoder too
    g = gen.Generator.load(out, device="cpu")
    assert gen.is_seq2seq(g.model)
    again = list(g.tag(toy_records(), max_new_tokens=40))
    assert [r["spans"] for r in again] == [r["spans"] for r in rows]


def run_here_ok(*args):
    res = run_here(*args)
    assert res.exit_code == 0, res.stderr
    return res


# --------------------------------------------------------------------------- enhanced inference


def t5_lm(folder):
    from nertools.runtime.models import SEQ2SEQ, load_lm

    return load_lm(str(folder), device="cpu", dtype="float32", kind=SEQ2SEQ)


def test_seq2seq_chooser_scores_are_the_decoder_log_probabilities(tiny_t5):
    import torch

    from nertools.align.choose import Seq2SeqChooser, local_chooser
    from nertools.align.names import label_name
    from tests.test_align_choose import _questions

    lm = t5_lm(tiny_t5)
    big = local_chooser(lm, batch_tokens=100_000)
    small = Seq2SeqChooser(lm, batch_tokens=64)  # every row alone in its batch
    assert type(big) is Seq2SeqChooser and not big.chat and not big.prefix_cache
    a, b = big.choose(_questions()), small.choose(_questions())
    assert big.rows_scored == small.rows_scored == 6  # one row per (entity, option)
    for (ca, ea), (cb, eb) in zip(a, b):
        assert ca == cb
        for sa, sb in zip(ea["scores"], eb["scores"]):
            assert sa.keys() == sb.keys() and all(abs(sa[k] - sb[k]) < 1e-3 for k in sa), (sa, sb)
    for choices, extra in a:
        for c, sc in zip(choices, extra["scores"]):
            assert c == max(sc, key=sc.get)
    # by hand: the encoder reads the one-entity prompt, the decoder the lead then the option
    tok, model = lm.tokenizer, lm.model
    q = _questions()[0]
    e = q.entities[1]
    from nertools.align.choose import Question, render_prompt

    enc = tok(render_prompt(Question(q.sentence, [e])))["input_ids"]
    assert enc[-1] == tok.eos_token_id
    lead = tok(f"{label_name(e.source)} : {e.text} ->", add_special_tokens=False)["input_ids"]
    for o in e.options:
        opt = tok(" " + label_name(o), add_special_tokens=False)["input_ids"]
        labels = torch.tensor([lead + opt])
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([enc]), labels=labels).logits[0]
        logp = torch.log_softmax(logits, -1)
        want = sum(float(logp[len(lead) + k, t]) for k, t in enumerate(opt))
        assert a[0][1]["scores"][1][o] == pytest.approx(want, abs=1e-3)


def test_local_chooser_refuses_a_masked_lm(tiny_t5):
    from dataclasses import replace

    from nertools.align.choose import local_chooser
    from nertools.errors import NertoolsError

    with pytest.raises(NertoolsError, match="causal or encoder-decoder"):
        local_chooser(replace(t5_lm(tiny_t5), kind="masked"))


def test_cli_choose_with_a_t5_folder(tiny_t5, tmp_path):
    from tests.test_align_choose import record, table

    tpath = tmp_path / "t.json"
    tpath.write_bytes(table().dumps())
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps(record()) + "\n")
    r = run_here("choose", "--table", tpath, "--model", tiny_t5, "--device", "cpu", "--cache-dir",
                 tmp_path / "cache", inp)
    assert r.exit_code == 0, (r.stderr, r.exception)
    [out] = [json.loads(x) for x in r.stdout.splitlines()]
    assert [s["align_choice"]["outcome"] for s in out["spans"]] == ["chosen", "chosen", "single"]
    for s in out["spans"][:2]:
        sc = s["align_choice"]["scores"]
        assert set(sc) == set(s["align_choice"]["options"]) and s["label"] == max(sc, key=sc.get)
    assert "2 chosen, 1 single, 1 dropped; 1 question(s) asked" in r.stderr
