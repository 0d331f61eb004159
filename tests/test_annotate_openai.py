"""ner-annotate --backend openai|batch against a real HTTP server on 127.0.0.1: concurrency,
429 with Retry-After, 500 then success, timeouts, malformed answers, structured output with
fallback, cache hits that send no request, an endpoint that stays down, resume after a kill,
the API key kept out of everything written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nertools.llm.client import LLMConfig, LLMRequestError, read_api_key, request_completion, retry_after_seconds

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-SECRET-4242"


def entity_answer(messages):
    """Bracket every capitalised word of the sentence as LOC (a deterministic fake annotator)."""
    sentence = messages[-1]["content"].rsplit("\n", 1)[-1]
    return re.sub(r"\b([A-Z][a-z]+)\b", r"[\1](LOC)", sentence)


class Server:
    """OpenAI-compatible chat endpoint with scripted behaviour per request."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list = []          # per request: int status, ("retry-after", s), "malformed", "slow"
        self.delay = 0.0
        self.inflight = 0
        self.max_inflight = 0
        self.lock = threading.Lock()
        self.reject_response_format = False
        self.answer = entity_answer
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with srv.lock:
                    srv.requests.append({"body": body, "auth": self.headers.get("Authorization")})
                    step = srv.script.pop(0) if srv.script else None
                    srv.inflight += 1
                    srv.max_inflight = max(srv.max_inflight, srv.inflight)
                try:
                    time.sleep(srv.delay)
                    if step == "slow":
                        time.sleep(2.0)
                    if isinstance(step, tuple) and step[0] == "retry-after":
                        return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": str(step[1])})
                    if isinstance(step, int):
                        # a hostile server echoes the Authorization header into its error message
                        return self._send(step, {"error": {"message": f"scripted {step} for {self.headers.get('Authorization')}"}})
                    if step == "malformed":
                        data = b'{"choices": [ this is not json'
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                    if srv.reject_response_format and "response_format" in body:
                        code = 400 if srv.reject_response_format is True else srv.reject_response_format
                        return self._send(code, {"error": {"message": "response_format not supported"}})
                    if "response_format" in body:
                        sentence = body["messages"][-1]["content"].rsplit("\n", 1)[-1]
                        ents = [{"text": w, "label": "LOC"} for w in re.findall(r"\b[A-Z][a-z]+\b", sentence)]
                        content = json.dumps({"entities": ents})
                    else:
                        content = srv.answer(body["messages"])
                    self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"),
                                     "choices": [{"index": 0, "finish_reason": "stop",
                                                  "message": {"role": "assistant", "content": content}}],
                                     "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
                finally:
                    with srv.lock:
                        srv.inflight -= 1

            def _send(self, code, obj, headers=None):
                data = json.dumps(obj).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    s = Server()
    yield s
    s.close()


def cfg(server, tmp_path, **kw):
    base = dict(base_url=server.url, model="m", api_key=KEY, timeout=5.0, retries=2, retry_wait=0.01,
                cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return LLMConfig(**base)


MSG = [{"role": "user", "content": "Bracket:\n\nParis and Rome ."}]


# --------------------------------------------------------------------------- client

def test_retry_after_is_honoured(server, tmp_path):
    server.script = [("retry-after", 0.7)]
    waits = []
    comp = request_completion(cfg(server, tmp_path), MSG, sleep=lambda s: (waits.append(s), time.sleep(s)))
    assert comp.content == "[Paris](LOC) and [Rome](LOC) ."
    assert waits == [0.7] and len(server.requests) == 2 and comp.attempts == 2
    assert (comp.prompt_tokens, comp.completion_tokens) == (10, 5)
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({}) is None
    # a server asking for hours is capped
    server.script = [("retry-after", 3600)]
    waits.clear()
    request_completion(cfg(server, tmp_path, max_retry_wait=0.05, cache_dir=None), MSG, sleep=waits.append)
    assert waits == [0.05]


def test_500_then_success_and_cache_keyed_by_full_request(server, tmp_path):
    server.script = [500]
    c = cfg(server, tmp_path)
    first = request_completion(c, MSG)
    assert len(server.requests) == 2 and not first.cached
    again = request_completion(c, MSG)
    assert again.cached and again.content == first.content and len(server.requests) == 2
    rf = {"type": "json_object"}
    request_completion(c, MSG, response_format=rf)  # another request: not a cache hit
    assert len(server.requests) == 3
    request_completion(cfg(server, tmp_path, max_tokens=7), MSG)
    assert len(server.requests) == 4
    files = list((tmp_path / "cache").glob("*.json"))
    assert len(files) == 3 and not list((tmp_path / "cache").glob(".tmp-*"))
    for f in files:
        assert KEY not in f.read_text()


def test_timeouts_malformed_answers_and_the_key_stays_secret(server, tmp_path):
    server.script = ["slow", "slow"]
    t = time.perf_counter()
    with pytest.raises(LLMRequestError, match="timed out") as e:
        request_completion(cfg(server, tmp_path, timeout=0.3, retries=1), MSG)
    assert e.value.retryable and time.perf_counter() - t < 3.5  # two 2 s answers would take 4 s
    server.script = ["malformed", "malformed", "malformed"]
    with pytest.raises(LLMRequestError) as e:
        request_completion(cfg(server, tmp_path, cache_dir=None), MSG)
    assert "malformed" in str(e.value) or "HTTP" in str(e.value) or "failed" in str(e.value)
    server.script = [401]
    with pytest.raises(LLMRequestError, match="HTTP 401") as e:
        request_completion(cfg(server, tmp_path, cache_dir=None), MSG)
    assert KEY not in str(e.value) and "***" in str(e.value)
    assert server.requests[-1]["auth"] == f"Bearer {KEY}"
    assert KEY not in repr(cfg(server, tmp_path))


def test_read_api_key(tmp_path, monkeypatch):
    f = tmp_path / "key"
    f.write_text(f"{KEY}\n")
    assert read_api_key(None, str(f)) == KEY
    monkeypatch.setenv("OPENAI_API_KEY", "envkey")
    assert read_api_key(None, None) == "envkey" and read_api_key("given", str(f)) == "given"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(Exception, match="empty"):
        read_api_key(None, str(tmp_path / "empty"))


# --------------------------------------------------------------------------- command line

def records(n):
    return "".join(json.dumps({"id": f"s{i}", "text": f"Trip {i} from Paris to Rome ."}) + "\n" for i in range(n))


def cli(server, tmp_path, *extra, input=None, key_file=True, wait=True):
    kf = tmp_path / "key.txt"
    kf.write_text(KEY + "\n")
    args = [sys.executable, "-m", "nertools.cli.annotate", "--prompt", "instructmine", "--seed", "LOC=Singapore",
            "--backend", "openai", "--base-url", server.url, "--model", "m", "--retry-wait", "0.01",
            "--cache-dir", str(tmp_path / "cache"), *(["--api-key-file", str(kf)] if key_file else []), *extra]
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    if not wait:
        return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=ROOT, env=env)
    return subprocess.run(args, input=input, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def test_concurrency_order_tokens_price_and_cache(server, tmp_path):
    server.delay = 0.3
    r = cli(server, tmp_path, "--concurrency", "4", "--price-prompt", "0.5", "--price-completion", "2",
            input=records(8))
    assert r.returncode == 0, r.stderr
    assert server.max_inflight == 4 and len(server.requests) == 8
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert [o["id"] for o in out] == [f"s{i}" for i in range(8)]  # input order kept
    for o in out:
        assert [o["text"][s["start"]:s["end"]] for s in o["spans"]] == ["Trip", "Paris", "Rome"]
        assert o["annotation"]["backend"] == "openai" and o["annotation"]["model"] == "m"
        assert o["meta"]["annotate"]["placed"] == 3
    assert "tokens: 80 prompt, 40 completion; cost 0.1200" in r.stderr
    # second run: all from the cache, no request
    r2 = cli(server, tmp_path, input=records(8))
    assert r2.returncode == 0 and len(server.requests) == 8 and "8 cache hits" in r2.stderr
    assert r2.stdout == r.stdout
    for text in (r.stdout, r.stderr, r2.stderr, *(f.read_text() for f in (tmp_path / "cache").glob("*.json"))):
        assert KEY not in text
    assert all(q["auth"] == f"Bearer {KEY}" for q in server.requests)


def test_429_and_500_retried_within_a_run(server, tmp_path):
    server.script = [("retry-after", 0.2), 500]
    r = cli(server, tmp_path, "--concurrency", "1", input=records(3))
    assert r.returncode == 0, r.stderr
    assert len(server.requests) == 5 and "HTTP 429; retry 1/3 in 0.2s" in r.stderr
    assert len(r.stdout.splitlines()) == 3


def test_endpoint_down_ends_with_one_line_keeping_completed_records(server, tmp_path):
    out = tmp_path / "out.jsonl"
    server.script = [None, None] + [503] * 50
    r = cli(server, tmp_path, "--concurrency", "1", "--retries", "2", "-o", str(out), input=records(5))
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ner-annotate: error: LLM request to") and "HTTP 503" in last
    assert "2 records kept in" in last and "--resume" in last and KEY not in r.stderr
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["s0", "s1"]
    # the endpoint is back: --resume does the rest only
    server.script = []
    n = len(server.requests)
    r = cli(server, tmp_path, "--concurrency", "2", "-o", str(out), "--resume", input=records(5))
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [f"s{i}" for i in range(5)]
    assert len(server.requests) - n == 3


def test_resume_after_a_kill(server, tmp_path):
    out = tmp_path / "out.jsonl"
    server.delay = 0.4
    p = cli(server, tmp_path, "--concurrency", "1", "-o", str(out), "--resume", wait=False)
    p.stdin.write(records(30))
    p.stdin.close()
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    done = [json.loads(x)["id"] for x in out.read_text().splitlines() if x.strip()]
    assert 3 <= len(done) < 30
    sent_before = len(server.requests)
    server.delay = 0.0
    r = cli(server, tmp_path, "--concurrency", "4", "-o", str(out), "--resume", input=records(30))
    assert r.returncode == 0, r.stderr
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert sorted(ids, key=lambda s: int(s[1:])) == [f"s{i}" for i in range(30)] and len(set(ids)) == 30
    # records done before the kill were skipped; any answered but not written came from the cache.
    # The killed run had one request in flight (--concurrency 1); on a loaded machine the server
    # may read it only after the kill, so it can be counted after sent_before: hence the + 1.
    assert len(server.requests) - sent_before <= 30 - len(done) + 1


def test_structured_output_and_fallback_to_text(server, tmp_path):
    r = cli(server, tmp_path, "--structured", "--no-cache", input=records(2))
    assert r.returncode == 0, r.stderr
    body = server.requests[0]["body"]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["properties"]["entities"]["items"]["properties"]["label"]["enum"] == ["LOC"]
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert out[0]["annotation"]["format"] == "json" and len(out[0]["spans"]) == 3
    server.reject_response_format = True
    n = len(server.requests)
    r = cli(server, tmp_path, "--structured", "--no-cache", "--concurrency", "1", input=records(3))
    assert r.returncode == 0, r.stderr
    assert "structured output refused (400)" in r.stderr
    assert len(server.requests) - n == 4  # one refused, then three text requests
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert [o["annotation"]["format"] for o in out] == ["brackets"] * 3 and all(len(o["spans"]) == 3 for o in out)
    # llama.cpp's server answers a json_schema response_format with a 500 (a request
    # validation error): after the retries the request goes out without it, once
    server.reject_response_format = 500
    n = len(server.requests)
    r = cli(server, tmp_path, "--structured", "--no-cache", "--concurrency", "1", "--retries", "1",
            "--retry-wait", "0.01", input=records(3))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("structured output refused (500)") == 1
    assert len(server.requests) - n == 2 + 3  # the structured request and its retry, then three text requests
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert [o["annotation"]["format"] for o in out] == ["brackets"] * 3


def test_structured_request_on_an_endpoint_that_is_down_reports_the_plain_failure(server, tmp_path):
    """The fallback's plain request fails too: its error ends the run, structured output is
    not reported as refused, and nothing is written for the record."""
    server.script = [500] * 20
    r = cli(server, tmp_path, "--structured", "--no-cache", "--concurrency", "1", "--retries", "1",
            "--retry-wait", "0.01", input=records(1))
    assert r.returncode != 0 and "HTTP 500" in r.stderr and "structured output refused" not in r.stderr
    assert r.stdout == ""


def test_a_request_refused_as_such_is_reported_and_the_run_goes_on(server, tmp_path):
    server.script = [None, 400]
    r = cli(server, tmp_path, "--concurrency", "1", "--no-cache", input=records(3))
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["id"] for x in r.stdout.splitlines()] == ["s0", "s2"]
    assert "1 without an answer (first: id 's1': LLM request to" in r.stderr and "HTTP 400" in r.stderr
    assert KEY not in r.stderr


def test_malformed_answers_end_the_run_cleanly(server, tmp_path):
    server.script = ["malformed"] * 10
    r = cli(server, tmp_path, "--retries", "0", "--no-cache", input=records(1))
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("ner-annotate: error:")


def test_batch_files_roundtrip(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(records(3))
    req = tmp_path / "requests.jsonl"
    base = [sys.executable, "-m", "nertools.cli.annotate", "--prompt", "labels", "--label", "LOC", "--label", "PER",
            "--backend", "batch", "--model", "gpt-x", "--max-new-tokens", "50"]
    r = subprocess.run(base + ["--batch-requests", str(req), str(inp)], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in req.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == ["s0", "s1", "s2"]
    assert lines[0]["url"] == "/v1/chat/completions" and lines[0]["body"]["model"] == "gpt-x"
    assert lines[0]["body"]["max_tokens"] == 50 and lines[0]["body"]["messages"][-1]["content"].endswith("Trip 0 from Paris to Rome .")
    res = tmp_path / "results.jsonl"
    res.write_text(
        json.dumps({"custom_id": "s1", "response": {"status_code": 200, "body": {
            "choices": [{"message": {"content": "LOC: Paris, Rome"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 4}}}}) + "\n" +
        json.dumps({"custom_id": "s0", "response": {"status_code": 200, "body": {
            "choices": [{"message": {"content": "LOC: Rome\nPER: Trip"}}]}}}) + "\n" +
        json.dumps({"custom_id": "s2", "response": None, "error": {"message": "expired"}}) + "\n")
    r = subprocess.run(base + ["--batch-results", str(res), str(inp)], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert [o["id"] for o in out] == ["s0", "s1"]
    o = out[1]
    assert [(o["text"][s["start"]:s["end"]], s["label"]) for s in o["spans"]] == [("Paris", "LOC"), ("Rome", "LOC")]
    assert "1 without an answer (first: id 's2': batch result: expired)" in r.stderr
    assert "tokens: 30 prompt, 4 completion" in r.stderr


def test_prompt_file_with_placeholders(server, tmp_path):
    tpl = tmp_path / "tpl.txt"
    tpl.write_text("### system\nYou bracket entities.\n### user\nTypes: {labels}\n{seeds}\n\n{sentence}\n")
    kf = tmp_path / "key.txt"
    kf.write_text(KEY)
    r = subprocess.run([sys.executable, "-m", "nertools.cli.annotate", "--prompt-file", str(tpl), "--seed",
                        "LOC=Singapore", "--backend", "openai", "--base-url", server.url, "--model", "m",
                        "--api-key-file", str(kf), "--no-cache"], input=records(1), capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    msgs = server.requests[0]["body"]["messages"]
    assert msgs == [{"role": "system", "content": "You bracket entities."},
                    {"role": "user", "content": "Types: LOC\n[Singapore](LOC)\n\nTrip 0 from Paris to Rome ."}]
    o = json.loads(r.stdout)
    assert o["annotation"]["prompt"]["name"] == "file:tpl.txt" and o["annotation"]["format"] == "brackets"
    assert len(o["spans"]) == 3
