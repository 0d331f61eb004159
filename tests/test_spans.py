"""ner-spans: candidate generation (the released X-NER rules) and the library API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nertools.core.record import normalize_record
from nertools.xner.candidates import PUNCTUATION, SpanRules, SpanStats, add_candidates, candidates_for_record, load_stopwords

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIX = SHARED / "fixtures" / "xner-official"


def rec(text: str) -> dict:
    return normalize_record({"tokens": text.split()})


def texts(record, rules=None):
    return [c["text"] for c in candidates_for_record(record, rules or SpanRules())]


def test_shipped_stoplist_is_the_179_word_nltk_list():
    words = load_stopwords()
    assert len(words) == 179
    assert {"the", "of", "wouldn't", "y", "ain"} <= words


@pytest.mark.skipif(not FIX.is_dir(), reason="shared fixtures absent")
@pytest.mark.parametrize("label", ["PER", "LOC", "ORG", "MISC"])
def test_candidates_equal_the_released_code(label):
    expected = {(d["sentence_id"], d["start_word"], d["end_word"], d["span"])
                for d in map(json.loads, (FIX / f"official.{label}.fast.jsonl").open())}
    got = set()
    from nertools.xner.masked import wordpiece_detokenize
    for line in (FIX / "sentences.jsonl").open():
        s = json.loads(line)
        r = normalize_record({"tokens": s["tokens"]})
        for c in candidates_for_record(r, SpanRules()):
            a, b = c["token_start"], c["token_end"] + 1
            got.add((s["sentence_id"], a, b, wordpiece_detokenize(s["tokens"][a:b])))
    assert got == expected


def test_official_order_offsets_and_rules():
    r = rec("EU rejects German call to boycott British lamb .")
    cands = candidates_for_record(r, SpanRules())
    # longest first, then left to right; "to" is a stop word, the final "." never included
    assert [c["text"] for c in cands][:3] == ["EU rejects German", "rejects German call", "boycott British lamb"]
    assert all("." not in c["text"] and " to " not in f" {c['text']} " for c in cands)
    for c in cands:
        assert r["text"][c["start"]:c["end"]] == c["text"]
        assert r["tokens"][c["token_start"]]["start"] == c["start"]
        assert r["tokens"][c["token_end"]]["end"] == c["end"]
    assert len(cands) == 3 + 5 + 7  # 3-grams, 2-grams, 1-grams


def test_digits_punctuation_and_options():
    r = rec("Peter Blackburn scored 3 goals in 1996 ( BSE )")
    assert "3" not in " ".join(texts(r))
    assert "goals" in texts(r) and "BSE" in texts(r) and "(" not in texts(r)
    assert "3 goals" in texts(r, SpanRules(allow_digits=True))
    assert max(len(t.split()) for t in texts(r, SpanRules(max_length=1))) == 1
    assert "Peter Blackburn scored 3" in texts(r, SpanRules(max_length=4, allow_digits=True))
    # a final "." is excluded only when it is exactly "." and last
    assert texts(rec("Hello world !"), SpanRules(punctuation=frozenset(), stopwords=frozenset()))[0] == "Hello world !"
    assert "world" in texts(rec("Hello world ."))
    assert set(PUNCTUATION) >= {"--", "@", "*"}


def test_stopword_file_and_length_cap(tmp_path):
    f = tmp_path / "stop.txt"
    f.write_text("# my list\ngerman\n")
    r = rec("EU rejects German call")
    got = texts(r, SpanRules(stopwords=load_stopwords(str(f))))
    assert "German" not in got and "call" in got
    stats = SpanStats()
    out = list(add_candidates([rec("a b c d"), rec("Alpha Beta")], SpanRules(max_tokens=3), stats))
    assert out[0]["candidates"] == [] and len(out[1]["candidates"]) == 3
    assert stats.capped == 1 and stats.records == 2 and stats.candidates == 3


def test_keeps_other_fields_and_replaces_old_candidates():
    r = normalize_record({"id": "x", "tokens": ["Masaki", "Yoshida"], "meta": {"k": 1}, "extra": [1],
                          "candidates": [{"junk": True}]})
    (out,) = add_candidates([r], SpanRules())
    assert out["extra"] == [1] and out["meta"] == {"k": 1} and out["id"] == "x"
    assert [c["text"] for c in out["candidates"]] == ["Masaki Yoshida", "Masaki", "Yoshida"]
