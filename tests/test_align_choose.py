"""ner-align choose: answer parsing, every outcome of the span stream, the local constrained
choice on a tiny random causal LM (key-value-cached prefix = plain scoring, batching, the disk
cache), and the served path against a fake OpenAI server on 127.0.0.1 (cache, retry, answers
outside the options)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from nertools.align.choose import (ChooseStats, Entity, LocalChooser, Question, answers_for, choose, match_option,
                                   parse_answer, render_prompt)
from nertools.align.table import AlignmentTable
from nertools.cli.align import align
from nertools.core.record import normalize_record
from nertools.runtime.models import LoadedLM

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = ROOT.parent / "shared" / "fixtures" / "xner-official" / "roberta-tiny-random"
TEXT = "Tony Benn of the Labour Party spoke in London on Monday ."


def table() -> AlignmentTable:
    return AlignmentTable("manual", ["PER", "ORG", "LOC", "MISC", "DATE"],
                          ["politician", "person", "politicalparty", "organisation", "city"], "MISC",
                          {"politician": "PER", "person": "PER", "politicalparty": "ORG", "organisation": "ORG",
                           "city": "LOC"},
                          default={"PER": "person", "ORG": "organisation", "LOC": "city"})


def record(rid="r1", spans=None) -> dict:
    spans = spans if spans is not None else [("Tony Benn", "person", "PER"), ("Labour Party", "organisation", "ORG"),
                                             ("London", "city", "LOC"), ("Monday", "DATE", "DATE")]
    out = []
    for words, label, src in spans:
        start = TEXT.index(words)
        s = {"start": start, "end": start + len(words), "label": label}
        if src is not None:
            s["source_label"] = src
        out.append(s)
    return normalize_record({"id": rid, "text": TEXT, "spans": out})


# ----------------------------------------------------------------------------- parsing

def test_parse_answer_real_and_literal_newlines_first_colon_last_arrow():
    text = "Answer: person : Tony Benn -> politician \\n organization : A : B -> C -> political party\nnoise line"
    assert parse_answer(text) == [("person", "Tony Benn", "politician"),
                                  ("organization", "A : B -> C", "political party")]
    assert parse_answer("") == [] and parse_answer("no items here") == []


def test_match_option_by_label_or_name_and_outside():
    opts = ["politicalparty", "organisation"]
    assert match_option("political party", opts) == "politicalparty"
    assert match_option("PoliticalParty.", opts) == "politicalparty"
    assert match_option("it is an organisation", opts) == "organisation"
    assert match_option("a band", opts) is None and match_option("", opts) is None and match_option(None, opts) is None
    assert match_option("person", ["person", "politician"]) == "person"
    assert match_option("the political party organisation", opts) is None  # two options named: ambiguous


def test_answers_for_matches_entities_by_words_in_order():
    q = Question(TEXT, [Entity("PER", "Tony Benn", ["person", "politician"], "person"),
                        Entity("ORG", "Labour Party", ["organisation", "politicalparty"], "organisation")])
    prompt = render_prompt(q)
    assert prompt.endswith("Entities: person : Tony Benn \\n organization : Labour Party\nAnswer:")
    assert "Options for person: person, politician" in prompt and "Options for organization: organisation, " \
                                                                    "political party" in prompt
    assert "Coach Phil Jackson" in prompt  # the one demonstration (from another domain)
    assert answers_for(q, "organization : Labour Party -> political party\nperson : Tony Benn -> politician") == \
        ["politician", "politicalparty"]
    assert answers_for(q, "person : Tony Benn -> band") == [None, None]


# ----------------------------------------------------------------------------- the stream

class FakeChooser:
    def __init__(self, answer):
        self.answer = answer
        self.questions = []

    def choose(self, questions):
        self.questions.extend(questions)
        return [([self.answer(e) for e in q.entities], {}) for q in questions]


def test_every_outcome_is_counted_and_recorded():
    spans = [("Tony Benn", "person", "PER"), ("Labour Party", "organisation", "ORG"), ("London", "city", "LOC"),
             ("Monday", "DATE", "DATE"), ("spoke", "X", None), ("Benn", "writer", "PER")]
    fake = FakeChooser(lambda e: {"Tony Benn": "politician", "Labour Party": "band"}.get(e.text, "person"))
    stats = ChooseStats()
    [out] = list(choose([record(spans=spans)], table(), fake, stats=stats))
    by = {s["start"]: s for s in out["spans"]}
    benn, party, london = by[0], by[TEXT.index("Labour")], by[TEXT.index("London")]
    assert benn["label"] == "politician" and benn["align_choice"] == {
        "original": "person", "options": ["person", "politician"], "outcome": "chosen"}
    assert party["label"] == "organisation" and party["align_choice"]["outcome"] == "invalid"
    assert london["label"] == "city" and london["align_choice"]["outcome"] == "single"
    assert TEXT.index("Monday") not in by  # DATE has no candidate: dropped
    assert by[TEXT.index("spoke")]["label"] == "X" and "align_choice" not in by[TEXT.index("spoke")]
    assert stats.counts == {"chosen": 2, "single": 1, "invalid": 1, "not-asked": 0, "dropped": 1, "uncovered": 0,
                            "no-source": 1}
    assert stats.unknown_targets == {"writer": 1} and stats.questions == 1 and stats.changed == 2
    assert len(fake.questions) == 1 and [e.text for e in fake.questions[0].entities] == \
        ["Tony Benn", "Labour Party", "Benn"]


def test_direct_types_keep_uncovered_and_from_source():
    stats = ChooseStats()
    [out] = list(choose([record()], table(), None, drop_uncovered=False, stats=stats))
    assert [s["label"] for s in out["spans"]] == ["person", "organisation", "city", "DATE"]
    assert stats.counts["not-asked"] == 2 and stats.counts["uncovered"] == 1
    fake = FakeChooser(lambda e: "politician")
    [out] = list(choose([record()], table(), fake, types=["PER"]))
    assert [s["align_choice"]["outcome"] for s in out["spans"]] == ["chosen", "not-asked", "single"]
    src = record(spans=[("Tony Benn", "PER", None), ("Labour Party", "ORG", None), ("Monday", "DATE", None)])
    [out] = list(choose([src], table(), None, from_source=True))
    assert [(s["label"], s["source_label"]) for s in out["spans"]] == [("person", "PER"), ("organisation", "ORG")]


# ----------------------------------------------------------------------------- local LM

@pytest.fixture(scope="module")
def tiny_lm():
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(20.0)
    torch.set_num_threads(1)
    return LoadedLM(model=model, tokenizer=tok, kind="causal", device=torch.device("cpu"), dtype=torch.float32,
                    name="tiny-llama")


def _questions():
    return [Question(TEXT, [Entity("PER", "Tony Benn", ["person", "politician"], "person"),
                            Entity("ORG", "Labour Party", ["organisation", "politicalparty"], "organisation")]),
            Question("Ann visited Rome .", [Entity("PER", "Ann", ["person", "politician"], "person")])]


def test_local_choice_is_the_argmax_and_the_cached_prefix_changes_nothing(tiny_lm):
    plain = LocalChooser(tiny_lm, prefix_cache=False, batch_tokens=100_000)
    cached = LocalChooser(tiny_lm, prefix_cache=True, batch_tokens=300)  # several small batches
    a, b = plain.choose(_questions()), cached.choose(_questions())
    for (ca, ea), (cb, eb) in zip(a, b):
        assert ca == cb
        for sa, sb in zip(ea["scores"], eb["scores"]):
            assert sa.keys() == sb.keys()
            assert all(abs(sa[k] - sb[k]) < 1e-3 for k in sa), (sa, sb)
    for choices, extra in a:
        for c, sc in zip(choices, extra["scores"]):
            assert c == max(sc, key=sc.get)
    # one row per (entity, option); the prompt holds only that entity
    assert plain.rows_scored == 6
    text = plain.prompt_text(TEXT, _questions()[0].entities[1])
    assert text.endswith("Entities: organization : Labour Party\nAnswer: organization : Labour Party ->")


def test_local_scores_equal_one_row_at_a_time(tiny_lm):
    ch = LocalChooser(tiny_lm, prefix_cache=False)
    tok = tiny_lm.tokenizer
    rows = [(tok("a b c")["input_ids"], tok(" d e", add_special_tokens=False)["input_ids"]),
            (tok("x")["input_ids"], tok(" y", add_special_tokens=False)["input_ids"])]
    together = ch.score_rows(rows)
    alone = [ch.score_rows([r])[0] for r in rows]
    assert together == pytest.approx(alone, abs=1e-4)
    ids = rows[1][0] + rows[1][1]
    with torch.no_grad():
        logp = torch.log_softmax(tiny_lm.model(input_ids=torch.tensor([ids])).logits[0], -1)
    assert alone[1] == pytest.approx(float(logp[len(ids) - 2, ids[-1]]), abs=1e-4)


def test_local_answers_are_cached_on_disk(tiny_lm, tmp_path):
    first = LocalChooser(tiny_lm, cache_dir=str(tmp_path))
    a = first.choose(_questions())
    second = LocalChooser(tiny_lm, cache_dir=str(tmp_path))
    b = second.choose(_questions())
    assert a == b and first.rows_scored == 6 and second.rows_scored == 0


def test_cli_choose_local_model_folder(tiny_lm, tmp_path):
    folder = tmp_path / "lm"
    tiny_lm.model.save_pretrained(folder)
    tiny_lm.tokenizer.save_pretrained(folder)
    tpath = tmp_path / "t.json"
    tpath.write_bytes(table().dumps())
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps(record()) + "\n")
    r = CliRunner().invoke(align, ["choose", "--table", str(tpath), "--model", str(folder), "--device", "cpu",
                                   "--cache-dir", str(tmp_path / "cache"), str(inp)], prog_name="ner-align")
    assert r.exit_code == 0, (r.stderr, r.exception)
    [out] = [json.loads(x) for x in r.stdout.splitlines()]
    outcomes = [s["align_choice"]["outcome"] for s in out["spans"]]
    assert outcomes == ["chosen", "chosen", "single"]
    assert all(set(s["align_choice"]["scores"]) == set(s["align_choice"]["options"]) for s in out["spans"][:2])
    assert "2 chosen, 1 single, 1 dropped; 1 question(s) asked" in r.stderr


def test_cli_choose_needs_a_model_or_direct(tmp_path):
    tpath = tmp_path / "t.json"
    tpath.write_bytes(table().dumps())
    r = CliRunner().invoke(align, ["choose", "--table", str(tpath)], input="", prog_name="ner-align")
    assert r.exit_code == 2 and "--model" in r.stderr
    r = CliRunner().invoke(align, ["choose", "--table", str(tpath), "--direct", "--from-source", "-"],
                           input=json.dumps(record(spans=[("Tony Benn", "PER", None)])) + "\n",
                           prog_name="ner-align")
    assert r.exit_code == 0 and json.loads(r.stdout)["spans"][0]["label"] == "person"


# ----------------------------------------------------------------------------- served model

class Server:
    def __init__(self, answer):
        self.requests: list[dict] = []
        self.script: list = []
        self.answer = answer
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                srv.requests.append(body)
                step = srv.script.pop(0) if srv.script else None
                if isinstance(step, int):
                    return self._send(step, {"error": {"message": "scripted"}})
                content = srv.answer(body["messages"][-1]["content"])
                self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"),
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}],
                                 "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    def answer(prompt):
        # the fake LLM: a politician for every person, an answer outside the options for organisations
        query = prompt.rsplit("\n\n", 1)[1]
        ents = query.split("Entities: ", 1)[1].split("\nAnswer:")[0].split(" \\n ")
        lines = []
        for item in ents:
            src, span = item.split(" : ", 1)
            lines.append(f"{src} : {span} -> {'politician' if src == 'person' else 'trade union'}")
        return "\n".join(lines)

    s = Server(answer)
    yield s
    s.close()


def test_cli_choose_openai_free_generation_cache_and_retry(server, tmp_path):
    tpath = tmp_path / "t.json"
    tpath.write_bytes(table().dumps())
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps(record("r1")) + "\n" + json.dumps(record("r2")) + "\n")
    args = ["choose", "--table", str(tpath), "--backend", "openai", "--model", "fake", "--base-url", server.url,
            "--cache-dir", str(tmp_path / "cache"), "--retry-wait", "0.01", str(inp)]
    server.script = [500]
    r = CliRunner().invoke(align, args, prog_name="ner-align")
    assert r.exit_code == 0, (r.stderr, r.exception)
    outs = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(server.requests) == 3  # one per sentence, one retried after the 500
    for out in outs:
        benn, party, london = out["spans"]
        assert benn["label"] == "politician" and benn["align_choice"]["outcome"] == "chosen"
        assert "Tony Benn -> politician" in benn["align_choice"]["answer"]
        assert party["label"] == "organisation" and party["align_choice"]["outcome"] == "invalid"
        assert london["align_choice"]["outcome"] == "single"
    assert "2 chosen, 2 single, 2 invalid, 2 dropped" in r.stderr
    prompt = server.requests[-1]["messages"][-1]["content"]
    assert "Options for person: person, politician" in prompt and prompt.endswith("Answer:")
    r = CliRunner().invoke(align, args, prog_name="ner-align")  # all from the cache
    assert r.exit_code == 0 and len(server.requests) == 3 and r.stdout.splitlines() == [json.dumps(o) for o in outs] \
        or [json.loads(x) for x in r.stdout.splitlines()] == outs


def test_cli_choose_openai_endpoint_down_is_one_line(tmp_path):
    tpath = tmp_path / "t.json"
    tpath.write_bytes(table().dumps())
    r = CliRunner().invoke(align, ["choose", "--table", str(tpath), "--backend", "openai", "--model", "m",
                                   "--base-url", "http://127.0.0.1:9/v1", "--retries", "0", "--no-cache", "-"],
                           input=json.dumps(record()) + "\n", prog_name="ner-align")
    assert r.exit_code == 1 and "ner-align choose: error: LLM request" in r.stderr and "Traceback" not in r.stderr


def test_both_orders_averages_the_two_listings(tiny_lm):
    q = _questions()[:1]
    one = LocalChooser(tiny_lm, both_orders=False)
    both = LocalChooser(tiny_lm, both_orders=True)
    rev = LocalChooser(tiny_lm, both_orders=False)
    a, b = one.choose(q), both.choose(q)
    qr = [Question(q[0].sentence, [Entity(e.source, e.text, e.options[::-1], e.original) for e in q[0].entities])]
    c = rev.choose(qr)
    assert both.rows_scored == 2 * one.rows_scored == 8
    for sa, sb, sc in zip(a[0][1]["scores"], b[0][1]["scores"], c[0][1]["scores"]):
        for o in sa:
            assert sb[o] == pytest.approx((sa[o] + sc[o]) / 2, abs=2e-4)
