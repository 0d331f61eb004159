"""Issue 10 reliability: the X-NER scorers (template-cache eviction, the finite-score contract)
and the phrase index (crash recovery, atomic first build / --rebuild, truncation reports, GGUF
load errors)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import orjson
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
TINY = SHARED / "fixtures" / "xner-official" / "roberta-tiny-random"
needs_tiny = pytest.mark.skipif(not TINY.is_dir(), reason="shared X-NER fixtures absent")

TEXTS = ["Paris is in France .", "Paris and London met .", "London beats Paris and Rome .",
         "Rome , Paris , London .", "France and Rome met Paris ."]


@pytest.fixture(scope="module")
def tiny64():
    """The tiny RoBERTa in float64 (scores then do not depend on how rows are batched)."""
    import torch

    from nertools.runtime.models import LoadedLM, load_lm

    torch.set_num_threads(1)
    lm = load_lm(str(TINY), device="cpu", dtype="float32")
    return LoadedLM(model=copy.deepcopy(lm.model).double(), tokenizer=lm.tokenizer, kind=lm.kind,
                    device=lm.device, dtype=torch.float64, name="tiny64")


def _records(texts=TEXTS):
    from nertools.core.record import normalize_record
    from nertools.xner.candidates import SpanRules, add_candidates

    return list(add_candidates([normalize_record({"id": f"r{i}", "text": t}) for i, t in enumerate(texts)],
                               SpanRules()))


def _seeds():
    from nertools.xner.seeds import Seed

    return [Seed.make("PER", "Masaki Yoshida"), Seed.make("LOC", "Singapore")]


def _all_scores(out):
    return [c["scores"] for r in out for c in r["candidates"]]


# ---------------------------------------------------------------------------------- B1
@needs_tiny
@pytest.mark.parametrize("cache_size", [1, 2, 3, 5])
def test_masked_template_cache_eviction_keeps_scores(tiny64, cache_size):
    """A tiny template cache over one-record chunks (spans recur across chunks, so cached
    entries are needed after newer ones were inserted): no KeyError, the same scores."""
    from nertools.xner.masked import MaskedDivergenceScorer

    recs = _records()
    big = MaskedDivergenceScorer(tiny64, _seeds(), chunk_tokens=1, cache_size=10**6, kl_dtype="float64")
    want = _all_scores(big.score_records(copy.deepcopy(recs)))
    small = MaskedDivergenceScorer(tiny64, _seeds(), chunk_tokens=1, cache_size=cache_size,
                                   kl_dtype="float64")
    got = _all_scores(small.score_records(copy.deepcopy(recs)))
    assert len(small._desc_cache) <= cache_size
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for lab in w:
            assert g[lab] == pytest.approx(w[lab], rel=1e-9, abs=1e-15)


# ---------------------------------------------------------------------------------- B4
def test_settle_scores_replaces_and_counts_non_finite():
    from nertools.core.format_doc import NON_FINITE_SCORE, settle_scores

    s = {"A": float("nan"), "B": 0.5, "C": float("inf"), "D": float("-inf")}
    assert settle_scores(s) == 3
    assert s == {"A": NON_FINITE_SCORE, "B": 0.5, "C": NON_FINITE_SCORE, "D": NON_FINITE_SCORE}
    assert b"null" not in orjson.dumps(s)


def _poison(model):
    """Every parameter of the last layer norm NaN: every divergence becomes NaN."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm) or "RMSNorm" in type(m).__name__]
    with torch.no_grad():
        norms[-1].weight.fill_(float("nan"))
    return model


def _check_sentinel_out(out, capsys):
    from nertools.core.format_doc import NON_FINITE_SCORE

    scores = _all_scores(out)
    n = sum(len(s) for s in scores)
    assert n > 0
    line = orjson.dumps(scores).decode()
    assert "null" not in line
    assert all(v == NON_FINITE_SCORE for s in scores for v in s.values())
    err = capsys.readouterr().err
    assert f"ner-divscore: {n} score(s) of {sum(len(r['candidates']) for r in out)} span(s) were not finite" in err


@needs_tiny
@pytest.mark.parametrize("method", ["2way", "1way", "prompt"])
def test_masked_non_finite_scores_are_the_sentinel_and_counted(tiny64, method, capsys):
    from nertools.runtime.models import LoadedLM
    from nertools.xner.masked import MaskedDivergenceScorer

    lm = LoadedLM(model=_poison(copy.deepcopy(tiny64.model)), tokenizer=tiny64.tokenizer, kind=tiny64.kind,
                  device=tiny64.device, dtype=tiny64.dtype, name="poisoned")
    sc = MaskedDivergenceScorer(lm, _seeds(), method=method)
    out = list(sc.score_records(_records(TEXTS[:2])))
    _check_sentinel_out(out, capsys)
    assert sc.non_finite == sum(len(s) for s in _all_scores(out))


@needs_tiny
def test_causal_non_finite_scores_are_the_sentinel_and_counted(capsys):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from nertools.runtime.models import LoadedLM
    from nertools.xner.causal import CausalDivergenceScorer

    tok = AutoTokenizer.from_pretrained(str(TINY))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = _poison(LlamaForCausalLM(cfg).eval())
    lm = LoadedLM(model=model, tokenizer=tok, kind="causal", device=torch.device("cpu"),
                  dtype=torch.float32, name="poisoned-llama")
    sc = CausalDivergenceScorer(lm, _seeds(), progress=False)
    out = list(sc.score_records(_records(TEXTS[:2])))
    _check_sentinel_out(out, capsys)
    assert sc.stats["non_finite"] == sum(len(s) for s in _all_scores(out))
