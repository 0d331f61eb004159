"""The flat import paths of 0.1 keep working for one release, with a DeprecationWarning."""

import importlib
import sys

import pytest

# old path -> (new module, a name that must be reachable through the old path)
OLD_PATHS = {
    "nertools.record": ("nertools.core.record", "normalize_record"),
    "nertools.jsonl": ("nertools.core.jsonl", "RecordWriter"),
    "nertools.tags": ("nertools.core.tags", "encode"),
    "nertools.format_doc": ("nertools.core.format_doc", "EXIT_STATUSES"),
    "nertools.models": ("nertools.runtime.models", "load_lm"),
    "nertools.divergence": ("nertools.xner.masked", "MaskedDivergenceScorer"),
    "nertools.causal_divergence": ("nertools.xner.causal", "CausalDivergenceScorer"),
    "nertools.spans": ("nertools.xner.candidates", "SpanRules"),
    "nertools.seeds": ("nertools.xner.seeds", "parse_seed"),
    "nertools.pseudo": ("nertools.xner.pseudo", "pseudo_label"),
    "nertools.normalize": ("nertools.gener.phrase_rules", "normalize_phrase"),
    "nertools.dictionary": ("nertools.gener.dictionary", "Dictionary"),
    "nertools.dictmatch": ("nertools.gener.dictmatch", "DictionaryMatcher"),
    "nertools.tagger": ("nertools.tagging.tagger", "Tagger"),
    "nertools.bond": ("nertools.tagging.bond", "soft_labels"),
    "nertools.train": ("nertools.tagging.train", "train"),
    "nertools.retrieve": ("nertools.gener.phrase_index", "build_index"),
    "nertools.convert": ("nertools.formats.convert", "convert"),
    "nertools.evaluate": ("nertools.evaluation.strict", "evaluate"),
}
# names that moved out of a split module, reachable through the old path
MOVED = {
    "nertools.retrieve": {"chat_completion": "nertools.llm.client", "LLMConfig": "nertools.llm.client",
                          "make_question": "nertools.gener.questions",
                          "pseudo_dictionary": "nertools.gener.pseudo_dict",
                          "parse_entity_list": "nertools.llm.parsing"},
    "nertools.convert": {"read_conll": "nertools.formats.conll", "read_hf": "nertools.formats.hf"},
    "nertools.evaluate": {"evaluate_ranked": "nertools.evaluation.ranked"},
    "nertools.jsonl": {"read_small_table": "nertools.core.specfile"},
    "nertools.seeds": {"default_label_word": "nertools.core.labels"},
}


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_old_import_path_works_and_warns(old):
    new, name = OLD_PATHS[old]
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=old.replace(".", r"\.")):
        mod = importlib.import_module(old)
    target = importlib.import_module(new)
    assert getattr(mod, name) is getattr(target, name)
    for moved, where in MOVED.get(old, {}).items():
        assert getattr(mod, moved) is getattr(importlib.import_module(where), moved)
