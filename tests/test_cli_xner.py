"""ner-spans | ner-divscore through the installed console scripts, with the shared tiny RoBERTa."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIX = SHARED / "fixtures" / "xner-official"
TINY = FIX / "roberta-tiny-random"

pytestmark = pytest.mark.skipif(not TINY.is_dir(), reason="shared X-NER fixtures absent")


def run(args, stdin: str | bytes = "", timeout=240):
    if isinstance(stdin, str):
        stdin = stdin.encode()
    return subprocess.run(args, input=stdin, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def three_sentences() -> str:
    return "".join((FIX / "sentences.jsonl").read_text().splitlines(keepends=True)[:3])


@pytest.fixture(scope="module")
def candidates(three_sentences) -> bytes:
    p = run(["ner-spans", "--max-tokens", "28"], three_sentences)
    assert p.returncode == 0, p.stderr
    assert b"1 record(s) over 28 tokens got no candidates" in p.stderr
    return p.stdout


def test_spans_then_official_divscore_pipeline(candidates):
    p = run(["ner-divscore", "--model", str(TINY), "--method", "official", "--seed", "PER=Masaki Yoshida",
             "--threads", "2", "--no-progress"], candidates)
    assert p.returncode == 0, p.stderr
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert [r["sentence_id"] for r in out] == ["conll2003-train-0", "conll2003-train-3", "conll2003-train-6"]
    assert out[1]["candidates"] == []  # 30 tokens > --max-tokens 28
    expected = {(d["sentence_id"], d["start_word"], d["end_word"]): d["score"]
                for d in map(json.loads, (FIX / "official.PER.fast.jsonl").open())}
    n = 0
    for r in out:
        for c in r["candidates"]:
            want = expected[(r["sentence_id"], c["token_start"], c["token_end"] + 1)]
            assert math.isclose(c["scores"]["PER"], want, rel_tol=1e-4, abs_tol=1e-6)
            n += 1
    assert n == 15 + sum(1 for k in expected if k[0] == "conll2003-train-6")


def test_2way_with_progress_and_label_word(candidates, tmp_path):
    seeds = tmp_path / "seeds.tsv"
    seeds.write_text("PER\tMasaki Yoshida\nLOC\tSingapore\tplace\n")
    p = run(["ner-divscore", "--model", str(TINY), "--seeds", str(seeds), "--label-word", "PER=human",
             "--batch-tokens", "512", "-o", str(tmp_path / "out.jsonl")], candidates)
    assert p.returncode == 0, p.stderr
    assert b"span" in p.stderr  # tqdm progress in spans/s
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    cands = [c for r in out for c in r["candidates"]]
    assert cands and all(set(c["scores"]) == {"PER", "LOC"} and
                         all(math.isfinite(v) and v >= -1e-6 for v in c["scores"].values()) for c in cands)
    # the label words take part: --label-word PER=human and the seeds file's third column
    # (LOC "place") each change their label's scores; without either, the same seeds score differently
    plain = tmp_path / "plain.tsv"
    plain.write_text("PER\tMasaki Yoshida\nLOC\tSingapore\n")
    p = run(["ner-divscore", "--model", str(TINY), "--seeds", str(plain), "--batch-tokens", "512",
             "--no-progress"], candidates)
    assert p.returncode == 0, p.stderr
    base = [c for line in p.stdout.splitlines() for c in json.loads(line)["candidates"]]
    assert [(c["token_start"], c["token_end"]) for c in base] == [(c["token_start"], c["token_end"]) for c in cands]
    for label in ("PER", "LOC"):
        changed = sum(1 for a, b in zip(cands, base)
                      if not math.isclose(a["scores"][label], b["scores"][label], rel_tol=1e-6, abs_tol=1e-9))
        assert changed >= len(cands) // 2, (label, changed, len(cands))


@pytest.mark.parametrize("args,code,msg", [  # malformed command-line values are usage errors: 2
    (["--seed", "PER="], 2, b"empty"),
    (["--seed", "Masaki"], 2, b"LABEL=TEXT"),
    (["--seed", "PER=Masaki", "--label-word", "LOC=place"], 2, b"without a seed"),
    (["--seed", "PER=Masaki", "--label-word", "PER"], 2, b"LABEL=WORD"),
    ([], 2, b"no seeds given"),
])
def test_bad_seeds(candidates, args, code, msg):
    p = run(["ner-divscore", "--model", str(TINY), *args], candidates)
    assert p.returncode == code
    assert p.stderr.startswith(b"ner-divscore: error:") and msg in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_records_without_candidates(three_sentences):
    p = run(["ner-divscore", "--model", str(TINY), "--seed", "PER=Masaki Yoshida", "--no-progress"],
            three_sentences)
    assert p.returncode == 65
    assert b"run ner-spans first" in p.stderr and p.stdout == b""


def test_missing_gguf_and_headless_model(candidates, tmp_path):
    p = run(["ner-divscore", "--model", str(tmp_path / "nope.gguf"), "--seed", "PER=x"], candidates)
    assert p.returncode == 1 and b"GGUF file not found" in p.stderr

    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32)
    BertModel(cfg).save_pretrained(tmp_path / "bert")
    p = run(["ner-divscore", "--model", str(tmp_path / "bert"), "--seed", "PER=x"], candidates)
    assert p.returncode == 1
    assert b"neither a masked nor a causal" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_causal_model_folder_and_start_token(candidates, tmp_path):
    """A causal LM from a local folder; --start-token changes scores, an unknown one is an error."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(TINY))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(20.0)
    model.save_pretrained(tmp_path / "llama")
    tok.save_pretrained(tmp_path / "llama")
    base = ["ner-divscore", "--model", str(tmp_path / "llama"), "--seed", "PER=Masaki Yoshida", "--no-progress"]

    def scores(extra):
        p = run(base + extra, candidates)
        assert p.returncode == 0, p.stderr
        return [c["scores"]["PER"] for line in p.stdout.splitlines() for c in json.loads(line)["candidates"]]

    auto, explicit, other = scores([]), scores(["--start-token", "<s>"]), scores(["--start-token", "</s>"])
    assert auto == explicit  # RoBERTa's tokenizer adds <s> itself: auto keeps it
    assert auto != other and all(math.isfinite(v) for v in other)
    p = run(base + ["--start-token", "<nope>"], candidates)
    assert p.returncode == 1 and b"not in the vocabulary" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
