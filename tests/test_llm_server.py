"""ner-annotate --backend openai against a real OpenAI-compatible server: llama.cpp's
(llama-cpp-python[server]) serving SmolLM2-135M-Instruct's GGUF on 127.0.0.1.

Not part of ``make test``: llama-cpp-python has no wheel on PyPI and builds from source
(~8 CPU-minutes), so these tests carry the ``llm_server`` marker, which the default run
deselects (pyproject's addopts). ``make test-llm-server`` builds it into the venv and runs them;
``make llm-server`` starts the same server for a user. ``$LLAMA_SERVER_PYTHON`` names another
Python that has llama-cpp-python[server] (default: the one running the tests).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.llm_server

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEV = ROOT.parent / "shared" / "data" / "conll2003" / "dev.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from nertools.runtime.models import resolve_model_path

    gguf = resolve_model_path("smollm2-135m")
    assert gguf.endswith(".gguf") and os.path.isfile(gguf), gguf
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log, "wb") as fh:
        python = os.environ.get("LLAMA_SERVER_PYTHON") or sys.executable
        proc = subprocess.Popen([python, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1",
                                 "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
                                 "--model_alias", "smollm2"], stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(120):
            if proc.poll() is not None:
                raise AssertionError(f"llama.cpp server exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError(f"llama.cpp server not up after 60 s: {log.read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def sentences(tmp_path, n=3) -> Path:
    with open(DEV, encoding="utf-8") as fh:
        recs = [json.loads(line) for _, line in zip(range(40), fh)]
    recs = [r for r in recs if 6 <= len(r["tokens"]) <= 20][:n]
    for r in recs:
        r["spans"] = []
    p = tmp_path / "in.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return p


def annotate(*args, cwd=None):
    return subprocess.run([str(BIN / "ner-annotate"), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "OPENAI_API_KEY": "sk-local-unused"})


@pytest.mark.parametrize("prompt", ["instructmine", "nuner"])
def test_annotate_against_llama_cpp_server(server, tmp_path, prompt):
    """Real completions come back, are parsed onto the record's own tokens, are counted and
    cached: a second run sends no request and writes the same bytes."""
    from nertools.core.record import normalize_record

    data = sentences(tmp_path)
    extra = ["--paper-seeds", "conll2003"] if prompt == "instructmine" else ["--keep-concept-concept"]
    args = ["--prompt", prompt, *extra, "--backend", "openai", "--base-url", server, "--model", "smollm2",
            "--max-new-tokens", "48", "--concurrency", "2", "--cache-dir", tmp_path / "cache", data]
    first = annotate(*args, "-o", tmp_path / "a.jsonl")
    assert first.returncode == 0, first.stderr
    out = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    inputs = [json.loads(line) for line in data.read_text().splitlines()]
    assert [r["id"] for r in out] == [r["id"] for r in inputs]
    for rec, src in zip(out, inputs):
        ann = rec["annotation"]
        assert ann["backend"] == "openai" and ann["model"] == "smollm2"
        assert isinstance(ann["completion"], str) and ann["completion"].strip()  # the model really answered
        norm = normalize_record(rec)  # validates that every span lies on the record's own tokens
        assert norm["tokens"] == normalize_record(src)["tokens"] and norm["text"] == src["text"]
        placed = [i for i in ann["items"] if i.get("status") == "placed"]
        assert len(placed) >= len(norm["spans"])
    assert "tokens" in first.stderr  # the token accounting line
    second = annotate(*args, "-o", tmp_path / "b.jsonl")
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()
    assert "3 cache hits" in second.stderr, second.stderr


def test_structured_output_falls_back_to_text_on_llama_cpp(server, tmp_path):
    """llama.cpp's server refuses OpenAI's json_schema response_format (HTTP 500, a request
    validation error): --structured asks again without it, says so once, and the run
    completes with text answers parsed as usual."""
    data = sentences(tmp_path, 2)
    r = annotate("--prompt", "labels", "--label", "PER=a person", "--label", "LOC=a place", "--backend", "openai",
                 "--base-url", server, "--model", "smollm2", "--max-new-tokens", "48", "--structured",
                 "--retry-wait", "0.1", "--no-cache", data, "-o", tmp_path / "s.jsonl")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("structured output refused (500)") == 1, r.stderr
    out = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(out) == 2 and all(rec["annotation"]["completion"].strip() for rec in out)
