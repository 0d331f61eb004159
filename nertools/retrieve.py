"""Deprecated import path: the contents moved to nertools.gener.phrase_index, nertools.gener.pseudo_dict, nertools.gener.questions, nertools.llm.client, nertools.llm.parsing, nertools.llm.prompts.

Kept for one release."""
import warnings
from nertools.gener.phrase_index import (BuildReport, DEFAULT_MODEL, Encoder, Hit, INDEX_FORMAT, INDEX_VERSION, IndexSettings, MANIFEST, PhraseIndex, SPAN_REPRS, _NoProgress, _atomic_write_json, _corrupt, _expected_end, _progress, _save_npy, build_index, candidate_ranges, corpus_fingerprint, evidence_records, load_encoder, load_manifest, query_index)  # noqa: F401
from nertools.gener.pseudo_dict import (pseudo_dictionary)  # noqa: F401
from nertools.gener.questions import (QUESTION_TEMPLATE, Question, _type_word_of, ask_llm_entities, default_question, make_question, read_questions)  # noqa: F401
from nertools.llm.client import (LLMConfig, _cache_key, chat_completion, default_cache_dir)  # noqa: F401
from nertools.llm.parsing import (parse_entity_list)  # noqa: F401
from nertools.llm.prompts import (llm_prompt)  # noqa: F401

warnings.warn("nertools.retrieve moved to nertools.gener.phrase_index, nertools.gener.pseudo_dict, nertools.gener.questions, nertools.llm.client, nertools.llm.parsing, nertools.llm.prompts", DeprecationWarning, stacklevel=2)
