"""--resume: a run killed with SIGKILL at a random point and resumed writes the bytes of an
uninterrupted run (ner-divscore, ner-tag, ner-annotate); what is refused, what is left on disk."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from corpus_fixtures import command, env, invoke, tiny_bert, tiny_tagger, write_candidates, write_records

CPU = ["--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    model = tiny_bert(d / "bert")
    return {"dir": d, "model": model, "tagger": tiny_tagger(model, d / "tagger"),
            "cands": write_candidates(d / "cands.jsonl", 240), "records": write_records(d / "records.jsonl", 600)}


def divscore_args(data, *extra):
    return ["--model", str(data["model"]), "--seed", "PER=Ann", "--seed", "LOC=Paris", "--no-progress",
            "--block-records", "4", *CPU, str(data["cands"]), *extra]


def tag_args(data, *extra):
    return ["--model", str(data["tagger"]), "--block-records", "8", "--chunk", "3", "-q", *CPU,
            str(data["records"]), *extra]


def kill_at_random_point(prog: str, args: list[str], out: Path, rng: random.Random) -> None:
    """Start ``prog``, wait until ``out`` has a few lines, SIGKILL it after a random pause."""
    proc = subprocess.Popen(command(prog, *args), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.3))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed (make the input larger)"


def test_divscore_sigkill_then_resume_equals_an_uninterrupted_run(data, tmp_path):
    full = tmp_path / "full.jsonl"
    r = invoke("ner-divscore", *divscore_args(data, "-o", str(full)))
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "out.jsonl"
    kill_at_random_point("ner-divscore", divscore_args(data, "-o", str(out), "--resume"), out, random.Random())
    journal = Path(f"{out}.progress")
    assert journal.exists() and b'"complete"' not in journal.read_bytes()
    assert 0 < out.stat().st_size < full.stat().st_size
    r = invoke("ner-divscore", *divscore_args(data, "-o", str(out), "--resume"))
    assert r.exit_code == 0, r.stderr
    assert "resuming" in r.stderr
    assert out.read_bytes() == full.read_bytes()
    assert not journal.exists()  # a finished --resume run removes its journal
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.jsonl", "out.jsonl"]


def test_tag_sigkill_refusals_torn_line_then_resume(data, tmp_path):
    full = tmp_path / "full.jsonl"
    r = invoke("ner-tag", *tag_args(data, "-o", str(full)))
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "out.jsonl"
    kill_at_random_point("ner-tag", tag_args(data, "-o", str(out), "--resume"), out, random.Random())
    before = out.read_bytes()
    # other options or another input: refused, naming what differs, nothing changed
    r = invoke("ner-tag", *tag_args(data, "-o", str(out), "--resume", "--threshold", "0.5"))
    assert r.exit_code == 2 and "cannot resume" in r.stderr and "--threshold (default) -> 0.5" in r.stderr, r.stderr
    other = tmp_path / "other.jsonl"
    other.write_text(data["records"].read_text().replace("Paris", "Rome"))
    args = tag_args(data, "-o", str(out), "--resume")
    args[args.index(str(data["records"]))] = str(other)
    r = invoke("ner-tag", *args)
    assert r.exit_code == 2 and "other content" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == before
    with open(out, "ab") as fh:  # as if the kill had torn a line
        fh.write(b'{"id": "r9999", "te')
    r = invoke("ner-tag", *tag_args(data, "-o", str(out), "--resume"))
    assert r.exit_code == 0, r.stderr
    assert out.read_bytes() == full.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.jsonl", "other.jsonl", "out.jsonl"]
    # a --resume onto a finished output (no journal) is refused; -o is required
    r = invoke("ner-tag", *tag_args(data, "-o", str(out), "--resume"))
    assert r.exit_code == 2 and "has no progress journal" in r.stderr
    r = invoke("ner-tag", *tag_args(data, "--resume"))
    assert r.exit_code == 2 and "--resume needs -o FILE" in r.stderr


def test_annotate_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    """The local backend (a tiny random causal LM): generation is batched per block."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *sorted({w for t in open(data_path(tmp_path))
                                                                         for w in json.loads(t)["text"].split()}),
                                         "[", "]", "(", ")", "PER", "LOC", ":", "Sentence"])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="</s>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2)
    folder = tmp_path / "llama"
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    inp = data_path(tmp_path)
    args = ["--prompt", "instructmine", "--seed", "LOC=Paris", "--model", str(folder), "--max-new-tokens", "8",
            "--batch-size", "4", "--block-records", "8", "-q", *CPU, str(inp)]
    full = tmp_path / "full.jsonl"
    r = invoke("ner-annotate", *args, "-o", str(full))
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "out.jsonl"
    kill_at_random_point("ner-annotate", [*args, "-o", str(out), "--resume"], out, random.Random())
    r = invoke("ner-annotate", *args, "-o", str(out), "--resume")
    assert r.exit_code == 0, r.stderr
    assert out.read_bytes() == full.read_bytes()


def data_path(tmp_path: Path) -> Path:
    p = tmp_path / "ann-in.jsonl"
    if not p.exists():
        write_records(p, 160)
    return p


def test_scan_lines_cuts_a_torn_line_and_streams(tmp_path):
    from nertools.core.resume import scan_lines

    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"id": 1}\n\n{"id": 2}\n{"id": 3')
    seen = []
    res = scan_lines(str(p), each=lambda line, n: seen.append((n, line)), chunk=4)
    assert (res.lines, res.cut, res.last) == (3, 8, b'{"id": 2}')
    assert seen == [(1, b'{"id": 1}'), (3, b'{"id": 2}')]
    assert p.read_bytes() == b'{"id": 1}\n\n{"id": 2}\n'
