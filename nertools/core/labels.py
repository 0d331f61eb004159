"""The label vocabulary shared by every method: default natural-language words for label names."""

from __future__ import annotations



#: Label words for the usual label sets (CoNLL, OntoNotes-style, WNUT).
DEFAULT_LABEL_WORDS = {
    "PER": "person", "PERSON": "person",
    "LOC": "location", "GPE": "location",
    "ORG": "organization", "ORGANIZATION": "organization",
    "MISC": "miscellaneous",
    "corporation": "corporation", "creative-work": "creative work",
    "group": "group", "product": "product",
}


def default_label_word(label: str) -> str:
    return DEFAULT_LABEL_WORDS.get(label) or DEFAULT_LABEL_WORDS.get(label.upper()) or \
        label.replace("_", " ").replace("-", " ").lower()
