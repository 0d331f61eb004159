"""ner-retrieve --backend openai against a local OpenAI-compatible server on 127.0.0.1
(http.server in a thread): answers, retries on 5xx, the on-disk cache, timeouts."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nertools.errors import NertoolsError
from nertools.llm.client import LLMConfig
from nertools.gener.questions import ask_llm_entities, make_question
from nertools.llm.parsing import parse_entity_list

ANSWER = "1. Singapore\n2. Paris\n- the Netherlands\n* Berlin\n3. city\n4. Paris\n"


class FakeOpenAI:
    """A tiny OpenAI-compatible chat endpoint with scripted failures."""

    def __init__(self):
        self.requests: list[dict] = []
        self.fail_with: list[int] = []   # status codes for the next requests, in order
        self.delay = 0.0
        self.answer = ANSWER
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append({"path": self.path, "body": body})
                if fake.delay:
                    time.sleep(fake.delay)
                if fake.fail_with:
                    code = fake.fail_with.pop(0)
                    self._send(code, {"error": {"message": f"scripted {code}", "type": "server_error"}})
                    return
                self._send(200, {
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": fake.answer}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def server():
    s = FakeOpenAI()
    yield s
    s.close()


def config(server, tmp_path, **kw) -> LLMConfig:
    base = dict(base_url=server.url, model="fake-model", api_key="test", timeout=5.0, retries=2,
                retry_wait=0.01, cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return LLMConfig(**base)


def test_parse_entity_list():
    assert parse_entity_list(ANSWER) == ["Singapore", "Paris", "the Netherlands", "Berlin", "city"]
    assert parse_entity_list("Paris, Berlin,  Rome") == ["Paris", "Berlin", "Rome"]
    assert parse_entity_list("Here are cities:\n(1) Oslo\n2) Bergen") == ["Oslo", "Bergen"]


def test_answer_request_and_cache_hit(server, tmp_path):
    cfg = config(server, tmp_path)
    q = make_question("LOC", "Which city?")
    assert ask_llm_entities(cfg, q, 3) == ["Singapore", "Paris", "the Netherlands"]
    assert len(server.requests) == 1
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["body"]["model"] == "fake-model"
    assert "List 3 different city names" in req["body"]["messages"][-1]["content"]
    # same request again: answered from the cache, no second request
    assert ask_llm_entities(cfg, q, 3) == ["Singapore", "Paris", "the Netherlands"]
    assert len(server.requests) == 1
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    # a different request (other N) is not a cache hit
    ask_llm_entities(cfg, q, 4)
    assert len(server.requests) == 2
    # without a cache every call asks
    nocache = config(server, tmp_path, cache_dir=None)
    ask_llm_entities(nocache, q, 3)
    ask_llm_entities(nocache, q, 3)
    assert len(server.requests) == 4


def test_retries_on_500_then_success(server, tmp_path):
    server.fail_with = [500, 503]
    cfg = config(server, tmp_path, retries=2)
    assert ask_llm_entities(cfg, make_question("LOC"), 2) == ["Singapore", "Paris"]
    assert len(server.requests) == 3


def test_retries_exhausted_and_no_retry_on_400(server, tmp_path):
    server.fail_with = [500, 500, 500]
    with pytest.raises(NertoolsError, match="failed after 3 attempts: HTTP 500"):
        ask_llm_entities(config(server, tmp_path, retries=2), make_question("LOC"), 2)
    assert len(server.requests) == 3
    assert not list((tmp_path / "cache").glob("*.json"))  # failures are not cached
    server.fail_with = [400]
    with pytest.raises(NertoolsError, match="HTTP 400"):
        ask_llm_entities(config(server, tmp_path, retries=5), make_question("LOC"), 2)
    assert len(server.requests) == 4  # not retried


def test_timeout(server, tmp_path):
    server.delay = 1.5
    t = time.perf_counter()
    with pytest.raises(NertoolsError, match="timed out"):
        ask_llm_entities(config(server, tmp_path, timeout=0.2, retries=1), make_question("LOC"), 2)
    assert time.perf_counter() - t < 1.4  # two attempts of 0.2 s each, not the server's 1.5 s
    assert len(server.requests) == 2


def test_console_script_writes_dictionary(server, tmp_path):
    dic = tmp_path / "llm.tsv"
    args = ["ner-retrieve", "query", "--backend", "openai", "--base-url", server.url, "--model", "fake-model",
            "--api-key", "test", "--label", "LOC", "--type-word", "LOC=city", "--top-k", "10",
            "--dict-out", str(dic), "--cache-dir", str(tmp_path / "cache"), "--retry-wait", "0.01"]
    server.fail_with = [502]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "retry 1/3" in r.stderr and len(server.requests) == 2
    assert "List 10 different city names" in server.requests[-1]["body"]["messages"][-1]["content"]
    # rules: "the" dropped (4), the type word "city" dropped (7), duplicates counted once per answer
    assert dic.read_text().splitlines() == ["Singapore\tLOC\t1", "Paris\tLOC\t1", "Netherlands\tLOC\t1",
                                            "Berlin\tLOC\t1"]
    entries = [json.loads(x) for x in r.stdout.splitlines()]
    assert [e["phrase"] for e in entries] == ["Singapore", "Paris", "Netherlands", "Berlin"]
    # the JSONL on stdout is itself a dictionary for ner-dictmatch
    (tmp_path / "d.jsonl").write_text(r.stdout)
    m = subprocess.run(["ner-dictmatch", "--dict", str(tmp_path / "d.jsonl")], input='{"text": "From Paris to Berlin ."}\n',
                       capture_output=True, text=True, timeout=60)
    assert m.returncode == 0, m.stderr
    assert [s["label"] for s in json.loads(m.stdout)["spans"]] == ["LOC", "LOC"]
    # second run: cache hit, no request
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and len(server.requests) == 2
    # an endpoint that keeps failing: exit 1, one line
    server.fail_with = [500] * 10
    r = subprocess.run(args + ["--no-cache", "--retries", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("ner-retrieve query: error:")
    assert "HTTP 500" in r.stderr
    r = subprocess.run(["ner-retrieve", "query", "--backend", "openai", "--label", "LOC"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--base-url" in r.stderr
