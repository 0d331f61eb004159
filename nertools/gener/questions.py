"""GeNER's "Which [TYPE]?" questions: building and reading them, and asking one of an LLM.

The two backends of ``ner-retrieve query`` that answer them live in :mod:`nertools.gener.query`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from nertools.errors import DataError, UsageError
from nertools.core.labels import default_label_word
from nertools.core.specfile import read_small_table
from nertools.llm.client import LLMConfig, chat_completion
from nertools.llm.parsing import parse_entity_list
from nertools.llm.prompts import llm_prompt

QUESTION_TEMPLATE = "Which {type}?"


# --------------------------------------------------------------------------- questions

@dataclass(frozen=True)
class Question:
    label: str
    text: str
    type_word: str


def default_question(label: str, type_word: str | None = None) -> Question:
    """GeNER's template: "Which [TYPE]?" with the label's type word (LOC -> "location")."""
    word = type_word or default_label_word(label)
    return Question(label, QUESTION_TEMPLATE.format(type=word), word)


def _type_word_of(question: str, label: str) -> str:
    """The type word of "Which city?" / "Which diseases are mentioned?" (for rule 7)."""
    m = re.match(r"\s*(?:which|what)\s+([\w\- ]+?)(?:\s+(?:is|are|was|were|do|does|did|has|have)\b.*)?\s*\??\s*$",
                 question, re.IGNORECASE)
    return m.group(1).strip().lower() if m else default_label_word(label)


def make_question(label: str, text: str | None = None, type_word: str | None = None) -> Question:
    label = label.strip()
    if not label:
        raise DataError("a question needs a label")
    if not text or not text.strip():
        return default_question(label, type_word)
    return Question(label, text.strip(), type_word or _type_word_of(text, label))


def read_questions(path: str) -> list[Question]:
    """Questions file: ``LABEL<TAB>QUESTION`` lines (a line with only LABEL uses the template)
    or JSONL ``{"label": "LOC", "question": "Which city?"}``; several per label are allowed."""
    return read_small_table(
        path,
        lambda obj: make_question(str(obj.get("label", "")), obj.get("question"), obj.get("type_word")),
        lambda parts: make_question(parts[0], parts[1] if len(parts) > 1 else None,
                                    parts[2] if len(parts) > 2 else None),
        what="questions")


def ask_llm_entities(cfg: LLMConfig, question: Question, n: int, *,
                     log: Callable[[str], None] | None = None) -> list[str]:
    """Up to ``n`` entity names of the question's type from an OpenAI-compatible endpoint."""
    content = chat_completion(cfg, llm_prompt(question.type_word, question.label, n), log=log)
    return parse_entity_list(content)[:n]


def collect_questions(labels: Sequence[str] = (), texts: Sequence[str] = (),
                      question_file: str | None = None,
                      type_words: Mapping[str, str] | None = None) -> list[Question]:
    """The questions of ``ner-retrieve query``: ``texts`` for the one label of ``labels``, else
    the template question of each label, then those of ``question_file``. ``type_words``
    (label -> word) sets a label's type word. Raises :class:`UsageError` when nothing or an
    impossible combination is given."""
    tw = dict(type_words or {})
    out = []
    if texts:
        if len(labels) != 1:
            raise UsageError("--question needs exactly one --label")
        out.extend(make_question(labels[0], q, tw.get(labels[0])) for q in texts)
    else:
        out.extend(make_question(lab, None, tw.get(lab)) for lab in labels)
    if question_file:
        out.extend(read_questions(question_file))
    if not out:
        raise UsageError("give --label (with or without --question) or --questions FILE")
    return out
