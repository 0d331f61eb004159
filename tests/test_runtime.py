"""The shared runtime (nertools.runtime.models): one loader for every model kind, the GGUF cache for
all of them, one error wording, position limits; and what the scorers take from it (the causal
scorer's key/value cache without deprecated arguments, one candidate validator)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch

from nertools.errors import DataError, NertoolsError
from nertools.runtime import models as M

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "xner-official" / "roberta-tiny-random"


@pytest.fixture(scope="module")
def tokenizer():
    if not TOKENIZER_DIR.is_dir():
        pytest.skip("../shared tiny RoBERTa tokenizer is not available")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


def _tiny_llama(vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(cfg).eval()


# ------------------------------------------------------------------ errors, sources, limits

def test_load_error_wording():
    e = M.load_error("model 'x'", OSError("no such folder\nmore detail"))
    assert isinstance(e, NertoolsError) and str(e) == "cannot load model 'x': no such folder"
    assert str(M.load_error("tagger d", KeyError())) == "cannot load tagger d: KeyError"
    assert str(M.load_error("model 'x'", ValueError("\n  \nsecond"))) == "cannot load model 'x': second"


def test_a_local_folder_named_like_an_alias_is_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gemma-3-270m").mkdir()
    src = M.model_source("gemma-3-270m")
    assert src.path == "gemma-3-270m" and src.gguf is None and src.cache is None
    assert M.model_source("some/hub-name").path == "some/hub-name"
    with pytest.raises(NertoolsError, match="GGUF file not found"):
        M.model_source(str(tmp_path / "missing.gguf"))


def test_position_limits():
    from types import SimpleNamespace as NS

    assert M.max_positions(NS(model_type="roberta", max_position_embeddings=514)) == 512
    assert M.max_positions(NS(model_type="bert", max_position_embeddings=512)) == 512
    assert M.max_positions(NS(model_type="bert")) is None
    model = NS(config=NS(model_type="xlm-roberta", max_position_embeddings=514))
    assert M.model_window(model, NS(model_max_length=int(1e30)), None) == 512
    assert M.model_window(model, NS(model_max_length=128), None) == 128
    assert M.model_window(model, NS(model_max_length=128), 64) == 64
    assert M.model_window(NS(config=NS()), NS(), None) == M.DEFAULT_WINDOW


def test_old_names_still_importable():
    from nertools.gener import phrase_index
    from nertools.runtime import progress
    from nertools.tagging import tagger

    assert tagger.quiet_transformers is progress.quiet_transformers
    assert tagger.model_window is M.model_window and tagger.prepare_tokenizer is M.prepare_tokenizer
    assert phrase_index._NoProgress is progress.NoProgress
    assert isinstance(phrase_index._progress(None, "x", "it", False), progress.NoProgress)


# ------------------------------------------------------------------ one loader, every kind

def test_folder_loads_every_kind(tmp_path, tokenizer):
    _tiny_llama(len(tokenizer)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    lm = M.load_lm(str(tmp_path), device="cpu", dtype="float32")
    assert lm.kind == M.CAUSAL and not lm.model.training
    enc, _ = M.load_pretrained(str(tmp_path), M.ENCODER)
    assert type(enc).__name__ == "LlamaModel"
    tc, _ = M.load_pretrained(str(tmp_path), M.TOKEN_CLASSIFIER, num_labels=5)
    assert tc.config.num_labels == 5
    with pytest.raises(NertoolsError, match="unknown model kind"):
        M.load_pretrained(str(tmp_path), "seq2sequence")
    # a decoder-only folder is no encoder-decoder: a clear one-line error, not a traceback
    with pytest.raises(NertoolsError, match=r"^cannot load model .*Llama"):
        M.load_pretrained(str(tmp_path), M.SEQ2SEQ)
    with pytest.raises(NertoolsError, match=r"^cannot load encoder 'nope': "):
        M.load_pretrained(str(tmp_path / "nope"), M.ENCODER, subject="encoder 'nope'")


@pytest.fixture()
def cached_gguf(tmp_path, monkeypatch, tokenizer):
    """A "GGUF file" that is not one, with a complete de-quantised cache beside: every load that
    reads the cache works, every load that parses the file fails."""
    monkeypatch.setenv("NERTOOLS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NERTOOLS_MODEL_CACHE", raising=False)
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF-but-not-really")
    cache = M.gguf_cache_dir(str(gguf))
    lm = _tiny_llama(len(tokenizer))
    lm.save_pretrained(cache)
    tokenizer.save_pretrained(cache)
    (cache / M.CACHE_MARKER).write_text("ok\n")
    return str(gguf), lm


def test_gguf_cache_serves_every_kind(cached_gguf):
    from nertools.gener.phrase_index import load_encoder
    from nertools.tagging.tagger import LabelScheme, load_token_classifier

    path, ref = cached_gguf
    base = ref.model.state_dict()
    lm = M.load_lm(path, device="cpu")
    assert lm.kind == M.CAUSAL
    assert torch.equal(lm.model.lm_head.weight, ref.lm_head.weight)
    # the token classifier (ner-selftrain) reads the cache too: no de-quantisation (B13)
    scheme = LabelScheme(("LOC", "PER"))
    model, tok = load_token_classifier(path, scheme)
    assert model.config.num_labels == scheme.num_tags and tok.pad_token_id is not None
    got = model.model.state_dict()
    assert got.keys() == base.keys() and all(torch.equal(got[k], base[k]) for k in base)
    # so does the phrase-index encoder: the language model's base model
    enc = load_encoder(path, device="cpu")
    assert type(enc.model).__name__ == "LlamaModel"
    assert all(torch.equal(v, base[k]) for k, v in enc.model.state_dict().items())
    assert enc.encode_texts(["Which city ?"]).shape == (1, 32)


def test_gguf_without_cache_parses_the_file(cached_gguf, monkeypatch):
    from nertools.tagging.tagger import LabelScheme, load_token_classifier

    path, _ = cached_gguf
    monkeypatch.setenv("NERTOOLS_MODEL_CACHE", "0")
    with pytest.raises(NertoolsError, match=r"^cannot load model .*tiny\.gguf'"):
        M.load_lm(path, device="cpu")
    with pytest.raises(NertoolsError, match=r"^cannot load model .* for token classification: "):
        load_token_classifier(path, LabelScheme(("LOC",)))


def test_tagger_load_error_is_one_line(tmp_path):
    import json

    from nertools.tagging.tagger import META_FILE, META_FORMAT, Tagger

    (tmp_path / META_FILE).write_text(json.dumps({"format": META_FORMAT, "labels": ["LOC"], "max_length": 8}))
    with pytest.raises(NertoolsError, match=rf"^cannot load tagger {tmp_path}: "):
        Tagger.load(tmp_path, device="cpu")


# ------------------------------------------------------------------ the scorers' runtime

def _records():
    from nertools.core.record import normalize_record
    from nertools.xner.candidates import SpanRules, add_candidates

    texts = ["Peter Blackburn met Alexandra Fusai in Brussels", "Germany imported sheep from Britain"]
    return list(add_candidates([normalize_record({"id": str(k), "text": t}) for k, t in enumerate(texts)],
                               SpanRules()))


def _seeds():
    from nertools.xner.seeds import Seed

    return [Seed.make("PER", "Masaki Yoshida"), Seed.make("LOC", "Singapore")]


@pytest.fixture(scope="module")
def causal_lm(tokenizer):
    return M.LoadedLM(model=_tiny_llama(len(tokenizer)), tokenizer=tokenizer, kind=M.CAUSAL,
                      device=torch.device("cpu"), dtype=torch.float32, name="tiny-llama")


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("method,rows", [("2way", "all"), ("prompt", "next")])
def test_kv_cache_path_uses_no_deprecated_argument(causal_lm, method, rows):
    from nertools.xner.causal import CausalDivergenceScorer

    handler = _Collect()
    hf_logger = logging.getLogger("transformers")
    hf_logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            sc = CausalDivergenceScorer(causal_lm, _seeds(), method=method, rows=rows, kv_cache=True,
                                        progress=False)
            out = list(sc.score_records(_records()))
    finally:
        hf_logger.removeHandler(handler)
    assert all(c["scores"] for r in out for c in r["candidates"])
    assert not [m for m in handler.messages if "deprecated" in m]


def test_both_scorers_validate_candidates_the_same_way(causal_lm, tokenizer):
    import copy

    from nertools.xner.causal import CausalDivergenceScorer
    from nertools.xner.masked import MaskedDivergenceScorer

    masked_lm = M.load_lm(str(TOKENIZER_DIR), device="cpu", dtype="float32")
    scorers = [MaskedDivergenceScorer(masked_lm, _seeds(), method="1way"),
               CausalDivergenceScorer(causal_lm, _seeds(), progress=False)]
    rec = _records()[0]
    no_cands = copy.deepcopy(rec)
    del no_cands["candidates"]
    shifted = copy.deepcopy(rec)
    shifted["candidates"][0]["start"] += 1  # characters no longer match the tokens
    wrong_type = copy.deepcopy(rec)
    wrong_type["candidates"][0]["end"] = "9"
    for sc in scorers:
        with pytest.raises(DataError, match="run ner-spans first"):
            list(sc.score_records([copy.deepcopy(no_cands)]))
        with pytest.raises(DataError, match="character and token offsets disagree"):
            list(sc.score_records([copy.deepcopy(shifted)]))
        with pytest.raises(DataError, match="needs integer"):
            list(sc.score_records([copy.deepcopy(wrong_type)]))


def test_a_model_with_the_old_cache_argument_keeps_it(causal_lm):
    """transformers before the rename: the base model takes and returns ``past_key_values``."""
    import copy

    from transformers import LlamaModel

    from nertools.xner.causal import CausalDivergenceScorer

    class Out(dict):  # an output that knows only the old name
        __getattr__ = dict.__getitem__

    class OldStyle(LlamaModel):
        def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                    use_cache=None):
            out = super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  cache=past_key_values, use_cache=use_cache)
            return Out(last_hidden_state=out.last_hidden_state, past_key_values=out.cache)

    old = copy.deepcopy(causal_lm.model)
    old.model.__class__ = OldStyle
    old_lm = M.LoadedLM(model=old, tokenizer=causal_lm.tokenizer, kind=M.CAUSAL, device=causal_lm.device,
                        dtype=causal_lm.dtype, name="old-style")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        sc = CausalDivergenceScorer(old_lm, _seeds(), rows="all", progress=False)
        got = [c["scores"] for r in sc.score_records(_records()) for c in r["candidates"]]
    assert sc._cache_arg == "past_key_values"
    new = CausalDivergenceScorer(causal_lm, _seeds(), rows="all", progress=False)
    assert new._cache_arg == "cache"
    assert got == [c["scores"] for r in new.score_records(_records()) for c in r["candidates"]]
