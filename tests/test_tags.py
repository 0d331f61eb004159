"""Tag <-> span codecs (nertools.core.tags): examples, property tests, agreement with seqeval."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nertools.errors import DataError
from nertools.core.tags import SCHEMES, SchemeDetector, canonical_scheme, check_tag, decode, detect_scheme, encode, split_tag

LABELS = ["PER", "LOC", "creative-work"]


@st.composite
def spans_and_length(draw):
    """Random non-overlapping token spans (end inclusive) over a random length."""
    length = draw(st.integers(0, 25))
    spans, pos = [], 0
    while pos < length:
        pos += draw(st.integers(0, 3))           # gap (0: adjacent to the previous span)
        if pos >= length or draw(st.booleans()):
            break
        end = min(length - 1, pos + draw(st.integers(0, 3)))
        spans.append((pos, end, draw(st.sampled_from(LABELS))))
        pos = end + 1
    return spans, length


def any_tags(prefixes="BIESLU"):
    tag = st.one_of(st.just("O"), st.builds(lambda p, lab: f"{p}-{lab}",
                                            st.sampled_from(list(prefixes)),
                                            st.sampled_from(LABELS)))
    return st.lists(tag, max_size=30)


# ---------------------------------------------------------------- examples

def test_encode_examples():
    spans = [(0, 1, "PER"), (2, 2, "PER"), (4, 6, "LOC")]
    assert encode(spans, 7, "BIO2") == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC", "I-LOC"]
    assert encode(spans, 7, "IOB1") == ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-LOC", "I-LOC"]
    assert encode(spans, 7, "IOBES") == ["B-PER", "E-PER", "S-PER", "O", "B-LOC", "I-LOC", "E-LOC"]
    assert encode(spans, 7, "BILOU") == ["B-PER", "L-PER", "U-PER", "O", "B-LOC", "I-LOC", "L-LOC"]


def test_decode_lenient_rules():
    # I- after O starts an entity (CoNLL eval rule); I- of another type starts a new one
    assert decode(["O", "I-PER", "I-PER", "I-LOC"]) == [(1, 2, "PER"), (3, 3, "LOC")]
    # B- always starts a new entity
    assert decode(["B-PER", "B-PER", "I-PER"]) == [(0, 0, "PER"), (1, 2, "PER")]
    # E-/L- without B- is a one-token entity; after an open entity it closes it
    assert decode(["O", "E-PER", "B-LOC", "L-LOC", "I-LOC"]) == [(1, 1, "PER"), (2, 3, "LOC"),
                                                                  (4, 4, "LOC")]
    # S-/U- is always a single token, closing what is open
    assert decode(["B-PER", "S-PER", "I-PER"]) == [(0, 0, "PER"), (1, 1, "PER"), (2, 2, "PER")]
    # an entity open at the end is closed there; hyphenated types keep their hyphen
    assert decode(["O", "B-creative-work", "I-creative-work"]) == [(1, 2, "creative-work")]
    assert decode([]) == []


def test_malformed_tags_raise():
    for bad in ["B", "B-", "BX-PER", "PER", "", "o"]:
        with pytest.raises(DataError):
            split_tag(bad)
    with pytest.raises(DataError, match="not a BIO2 tag"):
        check_tag("E-PER", "BIO2")
    check_tag("E-PER", "IOBES")
    check_tag("O", "BILOU")


def test_encode_rejects_overlap_and_range():
    with pytest.raises(DataError, match="overlapping"):
        encode([(0, 2, "PER"), (2, 3, "LOC")], 5)
    with pytest.raises(DataError, match="out of range"):
        encode([(3, 5, "PER")], 5)


def test_scheme_names_and_detection():
    assert canonical_scheme("iob2") == "BIO2" and canonical_scheme("bioes") == "IOBES"
    with pytest.raises(ValueError):
        canonical_scheme("XYZ")
    assert detect_scheme([["B-PER", "I-PER", "O"], ["O", "B-LOC"]]) == "BIO2"
    assert detect_scheme([["I-PER", "I-PER", "O"], ["I-LOC", "B-LOC"]]) == "IOB1"
    assert detect_scheme([["B-PER", "E-PER", "S-LOC"]]) == "IOBES"
    assert detect_scheme([["U-PER", "O"]]) == "BILOU"
    assert detect_scheme([["O", "O"]]) == "BIO2"
    with pytest.raises(DataError):
        detect_scheme([["S-PER", "U-LOC"]])
    det = SchemeDetector()
    det.add(["B-PER", "I-PER"])
    assert det.evidence == 1


# ---------------------------------------------------------------- properties

@settings(max_examples=150, deadline=None)
@given(spans_and_length(), st.sampled_from(SCHEMES))
def test_decode_inverts_encode(data, scheme):
    spans, length = data
    tags = encode(spans, length, scheme)
    assert len(tags) == length
    for t in tags:
        check_tag(t, scheme)
    assert decode(tags) == spans
    detected = detect_scheme([tags])
    if scheme in ("IOBES", "BILOU") and spans:
        assert detected == scheme


def _valid_spans(spans, length):
    prev_end = -1
    for s, e, label in spans:
        assert 0 <= s <= e < length and s > prev_end and label in LABELS
        prev_end = e


@settings(max_examples=150, deadline=None)
@given(any_tags(), st.sampled_from(SCHEMES))
def test_decode_never_fails_and_normalises(tags, scheme):
    spans = decode(tags)
    _valid_spans(spans, len(tags))
    # re-encoding gives a well-formed sequence with the same entities
    again = encode(spans, len(tags), scheme)
    assert decode(again) == spans
    # tokens outside any entity are exactly the O tags
    covered = {i for s, e, _ in spans for i in range(s, e + 1)}
    assert covered == {i for i, t in enumerate(tags) if t != "O"}


@settings(max_examples=150, deadline=None)
@given(any_tags("BI"))
def test_decode_agrees_with_seqeval_on_bio(tags):
    from seqeval.metrics.sequence_labeling import get_entities

    expected = [(s, e, label) for label, s, e in get_entities(list(tags))]
    assert decode(tags) == sorted(expected)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=5), st.sampled_from(["O", "B-X", "I-X", "E-", "-"])),
                max_size=12))
def test_decode_on_arbitrary_strings_raises_only_data_error(tags):
    try:
        spans = decode(tags)
    except DataError:
        return
    prev_end = -1
    for s, e, label in spans:
        assert 0 <= s <= e < len(tags) and s > prev_end and label
        prev_end = e
