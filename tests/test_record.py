"""The record format (nertools.core.record): accepted input forms and every validation error."""

import pytest

from nertools.errors import DataError
from nertools.core.record import default_tokenize, make_tokens, normalize_record, sort_spans, tokens_from_words, whitespace_tokenize

CANONICAL = {
    "id": "s1", "text": "EU rejects German",
    "tokens": [{"text": "EU", "start": 0, "end": 2, "id": 0, "ws": True},
               {"text": "rejects", "start": 3, "end": 10, "id": 1, "ws": True},
               {"text": "German", "start": 11, "end": 17, "id": 2, "ws": False}],
    "spans": [{"start": 0, "end": 2, "token_start": 0, "token_end": 0, "label": "ORG"}],
    "meta": {"source": "x"},
}


def test_canonical_passes_unchanged_with_extra_fields():
    obj = {**CANONICAL, "candidates": [{"start": 3, "end": 10}], "answer": "accept"}
    obj["spans"] = [{**CANONICAL["spans"][0], "score": 0.5, "source": "xner"}]
    out = normalize_record(obj)
    assert out["candidates"] == obj["candidates"] and out["answer"] == "accept"
    assert out["spans"][0] == obj["spans"][0]
    assert list(out["spans"][0])[:5] == ["start", "end", "token_start", "token_end", "label"]
    assert list(out)[:5] == ["id", "text", "tokens", "spans", "meta"]
    assert out["tokens"] == CANONICAL["tokens"]


def test_text_alone_uses_the_default_tokenizer():
    out = normalize_record({"text": "Jean-Luc didn't visit U.S. (2x)"}, default_id="7")
    assert [t["text"] for t in out["tokens"]] == ["Jean-Luc", "didn't", "visit", "U", ".", "S",
                                                 ".", "(", "2x", ")"]
    assert out["id"] == "7" and out["meta"] == {} and out["spans"] == []
    assert out["tokens"][0]["ws"] is True and out["tokens"][3]["ws"] is False
    assert default_tokenize("a  b") == [(0, 1), (3, 4)]
    assert whitespace_tokenize(" a,b c") == [(1, 4), (5, 6)]


def test_token_strings_with_and_without_text():
    out = normalize_record({"tokens": ["EU", "rejects", "German"],
                            "spans": [{"token_start": 1, "token_end": 2, "label": "X"}]})
    assert out["text"] == "EU rejects German"
    assert out["spans"][0]["start"] == 3 and out["spans"][0]["end"] == 17
    out = normalize_record({"text": "EU  rejects\tGerman", "tokens": ["EU", "rejects", "German"]})
    assert [(t["start"], t["end"]) for t in out["tokens"]] == [(0, 2), (4, 11), (12, 18)]
    with pytest.raises(DataError, match="token 1 'rejected' does not occur"):
        normalize_record({"text": "EU rejects", "tokens": ["EU", "rejected"]})
    text, tokens = tokens_from_words(["a", "bc"])
    assert text == "a bc" and tokens == make_tokens(text, [(0, 1), (2, 4)])


def test_token_objects_without_text_rebuild_it():
    out = normalize_record({"tokens": [{"text": "New", "ws": True}, {"text": "York", "ws": False},
                                       {"text": "!"}]})
    assert out["text"] == "New York!"


def test_spans_by_characters_tokens_or_both():
    base = {"text": "EU rejects German"}
    by_char = normalize_record({**base, "spans": [{"start": 11, "end": 17, "label": "MISC"}]})
    by_tok = normalize_record({**base, "spans": [{"token_start": 2, "token_end": 2, "label": "MISC"}]})
    both = normalize_record({**base, "spans": [{"start": 11, "end": 17, "token_start": 2,
                                                "token_end": 2, "label": "MISC"}]})
    assert by_char["spans"] == by_tok["spans"] == both["spans"]
    assert by_char["spans"][0] == {"start": 11, "end": 17, "token_start": 2, "token_end": 2,
                                   "label": "MISC"}


def test_sort_spans():
    spans = [{"start": 5, "end": 6, "label": "B"}, {"start": 0, "end": 3, "label": "A"}]
    assert [s["label"] for s in sort_spans(spans)] == ["A", "B"]


BAD = [
    ([1, 2], "must be a JSON object"),
    ({"id": "x"}, "neither 'text' nor 'tokens'"),
    ({"text": 5}, "'text' is not a string"),
    ({"text": "a", "tokens": "a"}, "'tokens' must be a list"),
    ({"tokens": ["a", 1]}, "mixes strings"),
    ({"tokens": [5]}, "list of strings or of token objects"),
    ({"tokens": []}, "'tokens' is empty and there is no 'text'"),
    ({"text": "ab", "tokens": [{"text": "b", "start": 0, "end": 1}]}, "does not match text"),
    ({"text": "ab", "tokens": [{"start": 1, "end": 2}, {"start": 0, "end": 1}]}, "out of order"),
    ({"text": "ab", "tokens": [{"start": 0, "end": 3}]}, "out of order or out of range"),
    ({"text": "ab", "tokens": [{"start": "0", "end": 1}]}, "integer 'start'/'end'"),
    ({"text": "a b", "spans": {}}, "'spans' must be a list"),
    ({"text": "a b", "spans": ["x"]}, "span 0 is not an object"),
    ({"text": "a b", "spans": [{"start": 0, "end": 1}]}, "empty or missing 'label'"),
    ({"text": "a b", "spans": [{"start": 0, "end": 1, "label": " "}]}, "empty or missing 'label'"),
    ({"text": "a b", "spans": [{"start": 0, "end": 9, "label": "X"}]}, "out of range or empty"),
    ({"text": "a b", "spans": [{"start": 2, "end": 2, "label": "X"}]}, "out of range or empty"),
    ({"text": "a b", "spans": [{"start": -1, "end": 1, "label": "X"}]}, "out of range or empty"),
    ({"text": "ab c", "spans": [{"start": 0, "end": 1, "label": "X"}]}, "not on token boundaries"),
    ({"text": "a b", "spans": [{"start": 0, "end": "1", "label": "X"}]}, "must be integers"),
    ({"text": "a b", "spans": [{"start": 0, "end": 1, "token_start": 1, "token_end": 1,
                                "label": "X"}]}, "disagree"),
    ({"text": "a b", "spans": [{"token_start": 1, "token_end": 2, "label": "X"}]},
     "out of range \\(2 tokens; token_end is inclusive\\)"),
    ({"text": "a b", "spans": [{"token_start": 1, "token_end": 0, "label": "X"}]}, "out of range"),
    ({"text": "a b", "spans": [{"token_start": 0, "token_end": None, "label": "X"}]},
     "must be integers"),
    ({"text": "a b", "spans": [{"label": "X"}]}, "neither character nor token offsets"),
    ({"text": "a b", "meta": []}, "'meta' must be an object"),
]


@pytest.mark.parametrize("obj, message", BAD)
def test_validation_errors(obj, message):
    with pytest.raises(DataError, match=message) as e:
        normalize_record(obj)
    assert e.value.path is None and e.value.line is None   # the reader adds them


def test_unknown_label():
    obj = {"text": "a b", "spans": [{"start": 0, "end": 1, "label": "X"}]}
    assert normalize_record(obj, labels=["X"])["spans"][0]["label"] == "X"
    with pytest.raises(DataError, match="unknown label 'X' \\(known: LOC, PER\\)"):
        normalize_record(obj, labels=["PER", "LOC"])


def test_data_error_location():
    e = DataError("boom", path="f.jsonl", line=3)
    assert str(e) == "f.jsonl:3: boom"
    assert str(DataError("boom").located("g", 2)) == "g:2: boom"
    assert str(DataError("boom", path="a", line=1).located("g", 2)) == "a:1: boom"
    assert str(DataError("boom", line=4)) == "line 4: boom"
    assert str(DataError("boom", path="p")) == "p: boom"
