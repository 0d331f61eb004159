"""X-NER fast mode (nertools.xner.fast): the cascade, int8 quantisation, and their CLI options.

Tiny random-weight causal LMs (the shared tiny RoBERTa tokenizer, a 2-layer Llama) and the
shared tiny masked LM; the CLI tests run the installed ``ner-divscore`` console script.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
from pathlib import Path

import pytest
import torch

from nertools.core.record import normalize_record
from nertools.errors import UsageError
from nertools.runtime.models import LoadedLM
from nertools.xner import fast
from nertools.xner.candidates import SpanRules, add_candidates
from nertools.xner.scoring import divscore, make_scorer
from nertools.xner.seeds import Seed

SHARED = Path(__file__).resolve().parents[2] / "shared"
TOKENIZER_DIR = SHARED / "fixtures" / "xner-official" / "roberta-tiny-random"
LABELS = ("PER", "LOC", "ORG")
SENTENCES = [
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn met Alexandra Fusai in Brussels on Friday",
    "Germany imported sheep from Britain",
    "the",  # no candidates
    "Japanese officials visited Singapore and Boston Celtics fans cheered",
    "Prime Minister John Major said talks with Sinn Fein would resume in London",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


def _llama(vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # sharpen the near-uniform random outputs
        model.get_output_embeddings().weight.mul_(20.0)
    return model.eval()


@pytest.fixture(scope="module")
def lm(tokenizer):
    return LoadedLM(model=_llama(len(tokenizer)), tokenizer=tokenizer, kind="causal",
                    device=torch.device("cpu"), dtype=torch.float32, name="tiny-llama")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, lm, tokenizer):
    folder = tmp_path_factory.mktemp("tiny-llama")
    lm.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def records():
    recs = [normalize_record({"id": f"s{i}", "text": t}) for i, t in enumerate(SENTENCES)]
    return list(add_candidates(recs, SpanRules()))


SEEDS = [Seed.make("PER", "Masaki Yoshida"), Seed.make("LOC", "Singapore"), Seed.make("ORG", "Boston Celtics")]


def scores_of(recs):
    return [[c["scores"] for c in r["candidates"]] for r in recs]


def flat(recs):
    return [(ri, ci) for ri, r in enumerate(recs) for ci in range(len(r["candidates"]))]


@pytest.fixture(scope="module")
def reference(lm):
    """Scores of every candidate by each method, computed once."""
    return {m: scores_of(make_scorer(lm, SEEDS, method=m).score_records(records()))
            for m in ("2way", "1way", "cosine")}


@pytest.mark.parametrize("cheap, keep", [("1way", 0.3), ("cosine", 0.1)])
def test_cascade_keeps_the_fraction_with_exact_scores_and_ranks_the_rest_after(lm, reference, cheap, keep):
    exact = reference["2way"]
    cheap_scores = reference[cheap]
    stats = {}
    out = list(fast.cascade_scores(records(), make_scorer(lm, SEEDS, method=cheap),
                                   make_scorer(lm, SEEDS, method="2way"), LABELS, keep=keep, stats=stats))
    got = scores_of(out)
    assert [r["id"] for r in out] == [f"s{i}" for i in range(len(SENTENCES))]
    assert all(set(c) == set(c0) | {"scores"} for r, r0 in zip(out, records()) for c, c0 in zip(r["candidates"], r0["candidates"]))
    assert all(set(c["scores"]) == set(LABELS) for r in out for c in r["candidates"])
    cands = flat(out)
    n = len(cands)
    want_k = max(1, math.ceil(round(keep * n, 9)))
    assert stats["candidates"] == n and stats["kept_pairs"] == want_k * len(LABELS)
    for lab in LABELS:
        # the kept ones: the best-ranked by the cheap score (ties by input order)
        kept = sorted(cands, key=lambda rc: (cheap_scores[rc[0]][rc[1]][lab], rc))[:want_k]
        assert len(kept) == want_k
        for ri, ci in kept:
            assert got[ri][ci][lab] == pytest.approx(exact[ri][ci][lab], rel=1e-5, abs=1e-7)
        rest = [rc for rc in cands if rc not in set(kept)]
        worst_kept = max(got[ri][ci][lab] for ri, ci in kept)
        for ri, ci in rest:
            assert got[ri][ci][lab] > worst_kept
        # the rest keeps the cheap order
        by_got = sorted(rest, key=lambda rc: (got[rc[0]][rc[1]][lab], rc))
        by_cheap = sorted(rest, key=lambda rc: (cheap_scores[rc[0]][rc[1]][lab], rc))
        assert by_got == by_cheap
        assert all(math.isfinite(got[ri][ci][lab]) for ri, ci in cands)


def test_cascade_keep_one_equals_the_exact_mode(lm, reference):
    exact = reference["2way"]
    out = scores_of(divscore(records(), SEEDS, model=lm, cascade="1way", cascade_keep=1.0))
    for a, b in zip(exact, out):
        for ca, cb in zip(a, b):
            for lab in LABELS:
                assert cb[lab] == pytest.approx(ca[lab], rel=1e-5, abs=1e-7)


def test_cascade_blocks_rank_each_block(lm):
    stats = {}
    out = list(divscore(records(), SEEDS, model=lm, cascade="cosine", cascade_keep=0.2, cascade_block=2,
                        cascade_stats=stats))
    assert len(out) == len(SENTENCES)
    sizes = [sum(len(r["candidates"]) for r in records()[i:i + 2]) for i in range(0, len(SENTENCES), 2)]
    assert stats["kept_pairs"] == sum(fast.keep_count(s, 0.2) for s in sizes) * len(LABELS)


def test_combine_rules():
    cheap = [[{"A": 0.1}, {"A": 0.5}, {"A": float("nan")}], [{"A": 0.3}]]
    kept = {"A": {(0, 0), (1, 0)}}
    exact = {(0, 0): {"A": 2.0}, (1, 0): {"A": 1.5}}
    out = fast.combine(cheap, exact, kept, ["A"])
    assert out[0][0]["A"] == 2.0 and out[1][0]["A"] == 1.5
    assert out[0][1]["A"] == pytest.approx(2.0 + 2.0 * fast.GAP)  # best rest: just after the worst kept
    assert out[0][2]["A"] == fast.NON_FINITE_SCORE


def test_keep_count_and_bad_fractions():
    assert fast.keep_count(30, 0.1) == 3 and fast.keep_count(7, 0.01) == 1 and fast.keep_count(0, 0.5) == 0
    assert fast.keep_count(10, 1.0) == 10
    for bad in (0, -0.1, 1.5, float("nan"), "x"):
        with pytest.raises(UsageError):
            fast.check_keep(bad)


@pytest.mark.parametrize("mode", ["int8", "int8-all"])
def test_quantize_runs_and_gives_finite_scores(tokenizer, mode):
    lm = LoadedLM(model=_llama(len(tokenizer)), tokenizer=tokenizer, kind="causal",
                  device=torch.device("cpu"), dtype=torch.float32, name="tiny-llama")
    exact = scores_of(make_scorer(lm, SEEDS, method="2way").score_records(records()[:3]))
    qlm = fast.quantize_lm(lm, mode)
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    head = qlm.model.get_output_embeddings()
    assert isinstance(head, QLinear) == (mode == "int8-all")
    assert any(isinstance(m, QLinear) for m in qlm.model.model.layers.modules())
    got = scores_of(make_scorer(qlm, SEEDS, method="2way").score_records(records()[:3]))
    vals = [c[lab] for rec in got for c in rec for lab in LABELS]
    assert vals and all(math.isfinite(v) and v < 1e29 for v in vals)
    assert got != exact  # the numerics did change


def test_quantize_refuses_non_cpu_float32(lm):
    with pytest.raises(UsageError):
        fast.quantize_lm(LoadedLM(**{**lm.__dict__, "dtype": torch.bfloat16}), "int8")
    assert fast.quantize_lm(lm, "none") is lm


def test_quantize_masked_lm_runs():
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tok = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, pad_token_id=tok.pad_token_id or 1)
    lm = LoadedLM(model=BertForMaskedLM(cfg).eval(), tokenizer=tok, kind="masked",
                  device=torch.device("cpu"), dtype=torch.float32, name="tiny-bert")
    out = scores_of(divscore(records()[:3], SEEDS[:2], model=lm, quantize="int8"))
    assert all(math.isfinite(c[lab]) for rec in out for c in rec for lab in ("PER", "LOC"))


# ---------------------------------------------------------------------------------- CLI

def run(args, stdin: bytes = b""):
    return subprocess.run(args, input=stdin, capture_output=True, timeout=240)


def candidates_jsonl() -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records()).encode()


def seed_args():
    return ["--seed", "PER=Masaki Yoshida", "--seed", "LOC=Singapore", "--seed", "ORG=Boston Celtics"]


def test_cli_cascade_with_quantize_equals_the_library(model_dir):
    p = run(["ner-divscore", "--model", str(model_dir), *seed_args(), "--threads", "1", "--no-progress",
             "--cascade", "1way", "--cascade-keep", "0.2", "--cascade-quantize", "int8"], candidates_jsonl())
    assert p.returncode == 0, p.stderr
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert [r["id"] for r in out] == [f"s{i}" for i in range(len(SENTENCES))]
    lib = scores_of(divscore(records(), SEEDS, model=str(model_dir), device="cpu", cascade="1way",
                             cascade_keep=0.2, cascade_quantize="int8"))
    n = 0
    for a, b in zip(scores_of(out), lib):
        for ca, cb in zip(a, b):
            for lab in LABELS:
                assert math.isfinite(ca[lab])
                assert ca[lab] == pytest.approx(cb[lab], rel=1e-5, abs=1e-7)
                n += 1
    assert n == len(flat(records())) * len(LABELS)


@pytest.mark.parametrize("extra", [["--cascade", "1way", "--cascade-keep", "0"],
                                   ["--cascade", "1way", "--cascade-keep", "1.5"],
                                   ["--cascade", "1way", "--method", "1way"],  # found by the library
                                   ["--quantize", "int4"]])
def test_cli_invalid_fast_options_exit_2(model_dir, extra):
    p = run(["ner-divscore", "--model", str(model_dir), *seed_args(), "--no-progress", *extra],
            candidates_jsonl())
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stdout == b""
    err = p.stderr.decode()
    assert "--cascade" in err or "--quantize" in err
    assert "Traceback" not in err
