"""Masked-LM divergence scoring (nertools.xner.masked): official fixtures, exactness of the
fast engine against the literal re-implementation, caching/packing invariance, dtypes."""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIX = SHARED / "fixtures" / "xner-official"
TINY = FIX / "roberta-tiny-random"
SEEDS = {"PER": "Masaki Yoshida", "LOC": "Singapore", "ORG": "Boston Celtics", "MISC": "Japanese"}

pytestmark = pytest.mark.skipif(not TINY.is_dir(), reason="shared X-NER fixtures absent")


@pytest.fixture(scope="module")
def tiny_lm():
    import torch

    from nertools.runtime.models import load_lm

    torch.set_num_threads(2)
    return load_lm(str(TINY), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def tiny_lm64(tiny_lm):
    """The tiny model in float64: removes rounding noise, so exact equalities can be tested."""
    import torch

    from nertools.runtime.models import LoadedLM

    model = copy.deepcopy(tiny_lm.model).double()
    return LoadedLM(model=model, tokenizer=tiny_lm.tokenizer, kind=tiny_lm.kind, device=tiny_lm.device,
                    dtype=torch.float64, name="tiny64")


def fixture_records(n=None):
    from nertools.core.jsonl import read_records
    from nertools.xner.candidates import SpanRules, add_candidates

    recs = list(itertools.islice(read_records(str(FIX / "sentences.jsonl")), n))
    ids = [json.loads(line)["sentence_id"] for line in (FIX / "sentences.jsonl").open()]
    return list(add_candidates(recs, SpanRules())), ids


def seeds(*labels):
    from nertools.xner.seeds import Seed

    return [Seed.make(lab, SEEDS[lab]) for lab in labels or SEEDS]


def scored(lm, recs, labels=(), **kw):
    from nertools.xner.masked import MaskedDivergenceScorer

    sc = MaskedDivergenceScorer(lm, seeds(*labels), **kw)
    return list(sc.score_records(copy.deepcopy(recs))), sc


# ---------------------------------------------------------------------------------------------
# the released code's mechanics: strings and masked rows, for all 726 spans of the details file

def test_strings_and_rows_equal_the_released_details(tiny_lm):
    from nertools.xner.masked import boundary_rows, fill_template, masked_rows, wordpiece_detokenize

    tok, mask = tiny_lm.tokenizer, tiny_lm.tokenizer.mask_token_id
    sents = {json.loads(x)["sentence_id"]: json.loads(x)["tokens"] for x in (FIX / "sentences.jsonl").open()}
    n = 0
    for line in (FIX / "details.PER.fast.jsonl").open():
        d = json.loads(line)
        words, a, b = sents[d["sentence_id"]], d["start_word"], d["end_word"]
        sq, dq = d["sentence_query"], d["description_query"]
        sent = wordpiece_detokenize(words)
        new = wordpiece_detokenize(words[:a] + ["Masaki Yoshida"] + words[b:])
        x = wordpiece_detokenize(words[:a] + ["X"] + words[b:])
        assert (sent, new, x) == (sq["sent"], sq["new_sent"], sq["template"])
        assert wordpiece_detokenize(words[a:b]) == d["span"]
        ids, new_ids, x_ids = tok([sent, new, x])["input_ids"]
        left, right = boundary_rows(ids, x_ids, full=False)
        assert [list(r) for r, _ in masked_rows(ids, left, right, mask)] == sq["ids_masked"]
        assert [list(r) for r, _ in masked_rows(new_ids, left, right, mask)] == sq["new_ids_masked"]
        tpl = "The [LABEL] name: [SEED]"
        s_ids, p_ids, t_ids = tok([fill_template(tpl, "person", "Masaki Yoshida"),
                                   fill_template(tpl, "person", d["span"]),
                                   fill_template(tpl, "person", "X")])["input_ids"]
        left, right = boundary_rows(s_ids, t_ids, full=True)
        assert [list(r) for r, _ in masked_rows(s_ids, left, right, mask)] == dq["ids_masked"]
        assert [list(r) for r, _ in masked_rows(p_ids, left, right, mask)] == dq["new_ids_masked"]
        n += 1
    assert n == 726


# ---------------------------------------------------------------------------------------------
# official scores. The fixture numbers are KL divergences of ~1e-4 between nearly identical
# distributions of a random model; the released code sums them in float32 over 50k words, which
# leaves ~1e-7 of rounding noise in every fixture score (a literal float32 replay of the released
# loop here agrees with them to rtol 1e-4 on only ~3% of the spans). The test therefore allows
# that noise as an absolute tolerance (1e-6, 20x below the median score) next to rtol 1e-4, and
# asserts the ranking of the scores above the noise floor; exactness is tested noise-free against the reference below.

def _spearman(a, b) -> float:
    import numpy as np

    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _check_against(path: Path, out, ids, label):
    expected = {(d["sentence_id"], d["start_word"], d["end_word"]): d["score"]
                for d in map(json.loads, path.open())}
    n = 0
    got, want = [], []
    for sid, rec in zip(ids, out):
        for c in rec["candidates"]:
            key = (sid, c["token_start"], c["token_end"] + 1)
            if key not in expected:
                continue
            got.append(c["scores"][label])
            want.append(expected[key])
            assert math.isclose(got[-1], want[-1], rel_tol=1e-4, abs_tol=1e-6), (key, got[-1], want[-1])
            n += 1
    # above the noise floor the ranking is the released one
    above = [(g, w) for g, w in zip(got, want) if w > 2e-5]
    assert len(above) > 10 and _spearman(*zip(*above)) > 0.99
    return n


@pytest.mark.parametrize("label", ["PER", "LOC", "ORG", "MISC"])
def test_official_fast_matches_fixture(tiny_lm, label):
    recs, ids = fixture_records(4)
    out, _ = scored(tiny_lm, recs, (label,), method="official")
    assert _check_against(FIX / f"official.{label}.fast.jsonl", out, ids, label) == \
        sum(len(r["candidates"]) for r in recs)


@pytest.mark.parametrize("label,fname", [("PER", "official.PER.default.jsonl"),
                                         ("LOC", "official.LOC.default.first10.jsonl"),
                                         ("ORG", "official.ORG.default.first10.jsonl"),
                                         ("MISC", "official.MISC.default.first10.jsonl")])
def test_official_full_context_matches_fixture(tiny_lm, label, fname):
    recs, ids = fixture_records(2)
    out, _ = scored(tiny_lm, recs, (label,), method="official", context="full")
    assert _check_against(FIX / fname, out, ids, label) > 20


# ---------------------------------------------------------------------------------------------
# the fast engine computes exactly what the literal re-implementation computes

@pytest.mark.parametrize("method,context", [("official", "neighbours"), ("official", "full"),
                                            ("2way", "neighbours"), ("1way", "full")])
def test_engine_equals_reference(tiny_lm64, method, context):
    from reference.xner_reference import reference_record_scores

    recs, _ = fixture_records(1)
    out, sc = scored(tiny_lm64, recs, ("ORG",), method=method, context=context,
                     batch_tokens=300, kl_dtype="float64")
    for rec in out:
        for seed in sc.seeds:
            ref = reference_record_scores(tiny_lm64.model, tiny_lm64.tokenizer, rec, seed.text,
                                          seed.label_word, official=method == "official",
                                          template=None if method == "1way" else sc.template,
                                          full_context=context == "full")
            got = [c["scores"][seed.label] for c in rec["candidates"]]
            assert got == pytest.approx(ref, rel=1e-7, abs=0)  # float32 would differ by ~1e-3


def test_packing_chunking_and_caching_do_not_change_scores(tiny_lm64):
    recs, _ = fixture_records(1)
    a, sc_a = scored(tiny_lm64, recs, ("PER", "MISC"), method="2way", kl_dtype="float64",
                     batch_tokens=10_000, chunk_tokens=10_000)
    b, sc_b = scored(tiny_lm64, recs, ("PER", "MISC"), method="2way", kl_dtype="float64",
                     batch_tokens=40, chunk_tokens=1)
    assert sc_b.runner.rows_run > 0
    for ra, rb in zip(a, b):
        for ca, cb in zip(ra["candidates"], rb["candidates"]):
            for lab in ("PER", "MISC"):
                assert ca["scores"][lab] == pytest.approx(cb["scores"][lab], rel=1e-7)
    # a second pass through the same scorer reuses the template cache and gives the same numbers
    rows_before = sc_a.runner.rows_run
    again = list(sc_a.score_records(copy.deepcopy(recs)))
    assert sc_a.runner.rows_run - rows_before < rows_before  # template rows came from the cache
    flat = [v for r in again for c in r["candidates"] for v in c["scores"].values()]
    assert flat == pytest.approx([v for r in a for c in r["candidates"] for v in c["scores"].values()])


def test_batches_respect_budget_and_padding_rule():
    from nertools.xner.masked import RowRunner

    lengths = [30] * 20 + [31] * 5 + [40] * 20 + [10] * 3
    runner = RowRunner(None, 1, "cpu", batch_tokens=10_000, max_padding=0.1, min_rows_per_batch=2)
    batches = list(runner.batches(lengths))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    # 31 is within 10% of 30 and joins its batch; 30 and 40 start new ones
    assert [sorted({lengths[i] for i in b}) for b in batches] == [[10], [30, 31], [40]]
    # a batch with fewer than min_rows_per_batch rows takes longer rows anyway
    few = list(RowRunner(None, 1, "cpu", batch_tokens=10_000, min_rows_per_batch=16).batches(lengths))
    assert [sorted({lengths[i] for i in b}) for b in few][0] == [10, 30]
    tight = list(RowRunner(None, 1, "cpu", batch_tokens=100, max_padding=1.0).batches(lengths))
    assert all(len(b) * max(lengths[i] for i in b) <= 100 for b in tight)
    loose = list(RowRunner(None, 1, "cpu", batch_tokens=10_000, max_padding=1.0).batches(lengths))
    assert len(loose) == 1


def test_rows_are_never_computed_twice(tiny_lm):
    recs, _ = fixture_records(2)
    n_spans = sum(len(r["candidates"]) for r in recs)
    _, sc = scored(tiny_lm, recs, ("PER",), method="official")
    # released strategy: 2 + 4 rows per span on each side = 12 rows per span
    assert sc.runner.rows_run < 0.75 * 12 * n_spans


def test_bfloat16_on_cpu_is_finite_and_close(tiny_lm):
    import torch

    from nertools.runtime.models import LoadedLM

    recs, _ = fixture_records(2)
    lm16 = LoadedLM(model=copy.deepcopy(tiny_lm.model).to(torch.bfloat16), tokenizer=tiny_lm.tokenizer,
                    kind=tiny_lm.kind, device=tiny_lm.device, dtype=torch.bfloat16, name="bf16")
    for method in ("2way", "prompt", "cosine"):
        out, _ = scored(lm16, recs, ("PER", "LOC"), method=method)
        vals = [v for r in out for c in r["candidates"] for v in c["scores"].values()]
        assert vals and all(math.isfinite(v) for v in vals), method


def test_order_and_fields_are_kept(tiny_lm):
    recs, _ = fixture_records(5)
    recs[1]["candidates"] = []
    for i, r in enumerate(recs):
        r["id"], r["meta"], r["extra"] = f"r{i}", {"i": i}, [i]
        for c in r["candidates"]:
            c["mine"] = True
    out, _ = scored(tiny_lm, recs, ("PER",), method="1way", chunk_tokens=20)
    assert [r["id"] for r in out] == [f"r{i}" for i in range(5)]
    assert out[1]["candidates"] == []
    for i, r in enumerate(out):
        assert r["extra"] == [i] and r["meta"] == {"i": i}
        assert all(c["mine"] and set(c["scores"]) == {"PER"} for c in r["candidates"])


def test_prompt_and_cosine_equal_a_naive_computation(tiny_lm):
    import torch

    recs, _ = fixture_records(1)
    rec = recs[0]
    out, _ = scored(tiny_lm, [rec], ("PER", "LOC"), method="prompt")
    tok, model = tiny_lm.tokenizer, tiny_lm.model
    c = out[0]["candidates"][3]
    text = f"{rec['text']}, {c['text']} is a {tok.mask_token} entity."
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0]
    pos = enc["input_ids"][0].tolist().index(tok.mask_token_id)
    lp = torch.log_softmax(logits[pos], -1)
    word = tok(" person", add_special_tokens=False)["input_ids"][0]
    assert c["scores"]["PER"] == pytest.approx(-lp[word].item(), rel=1e-4)

    out, _ = scored(tiny_lm, [rec], ("PER",), method="cosine")
    c = out[0]["candidates"][0]
    enc = tok(rec["text"], return_offsets_mapping=True, return_tensors="pt")
    offs = enc.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        h = model.base_model(**enc).last_hidden_state[0]
        hs = model.base_model(**tok(SEEDS["PER"], return_tensors="pt")).last_hidden_state[0, 1:-1].mean(0)
    sel = [i for i, (a, b) in enumerate(offs) if b > a and a < c["end"] and b > c["start"]]
    cos = torch.nn.functional.cosine_similarity(h[sel].mean(0), hs, dim=0).item()
    assert c["scores"]["PER"] == pytest.approx(1 - cos, abs=1e-5)


def test_errors(tiny_lm):
    from nertools.xner.masked import MaskedDivergenceScorer
    from nertools.errors import DataError, NertoolsError

    recs, _ = fixture_records(1)
    bad = copy.deepcopy(recs[0])
    del bad["candidates"]
    sc = MaskedDivergenceScorer(tiny_lm, seeds("PER"), method="1way")
    with pytest.raises(DataError, match="ner-spans"):
        list(sc.score_records([bad]))
    bad = copy.deepcopy(recs[0])
    bad["candidates"][0]["token_end"] = 99
    with pytest.raises(DataError, match="out of range"):
        list(sc.score_records([bad]))
    with pytest.raises(NertoolsError, match="unknown method"):
        MaskedDivergenceScorer(tiny_lm, seeds("PER"), method="nope")
    with pytest.raises(NertoolsError, match=r"\[SEED\]"):
        MaskedDivergenceScorer(tiny_lm, seeds("PER"), method="2way", template="The [LABEL]")
