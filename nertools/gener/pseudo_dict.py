"""GeNER's pseudo-dictionary: retrieved answers normalised by rules 1-7 and counted."""

from __future__ import annotations

from typing import Iterable


from nertools.gener.phrase_rules import NormalizationRules, normalize_phrase, type_word_forms
from nertools.core.labels import default_label_word
from nertools.gener.questions import Question


def pseudo_dictionary(answers: Iterable[tuple[str, Question]],
                      rules: NormalizationRules = NormalizationRules()) -> list[tuple[str, str, int]]:
    """Normalise ``(phrase, question)`` answers by rules 1-7 and count them per label:
    ``[(phrase, label, count)]``, most frequent first (ties: first seen)."""
    counts: dict[tuple[str, str], int] = {}
    forms_cache: dict[tuple[str, ...], frozenset[str]] = {}
    for phrase, q in answers:
        words = (q.type_word, default_label_word(q.label))
        forms = forms_cache.get(words)
        if forms is None:
            forms = forms_cache[words] = type_word_forms(words)
        for p in normalize_phrase(phrase, rules, forms):
            counts[(p, q.label)] = counts.get((p, q.label), 0) + 1
    items = list(counts.items())
    order = {k: i for i, (k, _) in enumerate(items)}
    items.sort(key=lambda kv: (-kv[1], order[kv[0]]))
    return [(p, lab, c) for (p, lab), c in items]
