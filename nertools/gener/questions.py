"""GeNER's "Which [TYPE]?" questions: building, reading, and asking them (``ner-retrieve query``).

Two backends answer a list of questions, each one function returning ``(records, dictionary)``:
the records ``ner-retrieve query`` writes to stdout and the pseudo-dictionary
``[(phrase, label, count)]`` it writes with ``--dict-out``:

* :func:`query_dense` -- a phrase index built by ``ner-retrieve index``
  (:mod:`nertools.gener.phrase_index`); the records are the evidence sentences;
* :func:`query_llm` -- an OpenAI-compatible endpoint asked for entity lists; the records are
  the dictionary entries as JSONL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

from nertools.errors import DataError, UsageError
from nertools.core.labels import default_label_word
from nertools.core.specfile import read_small_table
from nertools.llm.client import LLMConfig, chat_completion
from nertools.llm.parsing import parse_entity_list
from nertools.llm.prompts import llm_prompt

if TYPE_CHECKING:
    from nertools.gener.phrase_rules import NormalizationRules

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


def _no_log(message: str) -> None:
    pass


def query_llm(cfg: LLMConfig, questions: Iterable[Question], top_k: int, *,
              rules: "NormalizationRules | None" = None,
              log: Callable[[str], None] = _no_log) -> tuple[list[dict], list[tuple[str, str, int]]]:
    """``ner-retrieve query --backend openai``: ask for ``top_k`` entities per question.

    Returns the dictionary records ``{"phrase", "label", "count", "source": "openai"}`` and the
    pseudo-dictionary (answers normalised by ``rules``, counted per label). ``log`` gets one
    line per question (and the client's retry notes).
    """
    from nertools.gener.pseudo_dict import pseudo_dictionary
    from nertools.gener.phrase_rules import NormalizationRules

    answers = []
    for q in questions:
        names = ask_llm_entities(cfg, q, top_k, log=log)
        log(f"{q.label} ({q.text!r}): {len(names)} entities")
        answers.extend((name, q) for name in names)
    entries = pseudo_dictionary(answers, rules or NormalizationRules())
    records = [{"phrase": phrase, "label": label, "count": count, "source": "openai"}
               for phrase, label, count in entries]
    return records, entries


def query_dense(index_path: str, questions: Sequence[Question], top_k: int, *,
                model: str | None = None, device: str = "auto", dtype: str = "auto",
                rules: "NormalizationRules | None" = None,
                log: Callable[[str], None] = _no_log) -> tuple[list[dict], list[tuple[str, str, int]]]:
    """``ner-retrieve query`` (dense backend): the ``top_k`` best phrases per question from the
    phrase index at ``index_path``.

    Returns the evidence records (one per sentence, best first; the retrieved phrases as
    spans) and the pseudo-dictionary of the retrieved phrases normalised by ``rules``.
    Questions are encoded with the index's encoder, or with ``model`` when given.
    """
    from nertools.gener import phrase_index as R
    from nertools.gener.phrase_rules import NormalizationRules
    from nertools.gener.pseudo_dict import pseudo_dictionary

    index = R.PhraseIndex.open(index_path)
    encoder = None
    if model and model != index.settings.model:
        log(f"encoding questions with {model!r}; the index was built with {index.settings.model!r}")
        encoder = R.load_encoder(model, device=device, dtype=dtype, max_length=index.settings.max_length)
    results = R.query_index(index, questions, top_k, encoder=encoder, device=device, dtype=dtype)
    for q, hits in zip(questions, results):
        log(f"{q.label} ({q.text!r}): {len(hits)} phrases, best {hits[0].score:.3f} {hits[0].text!r}"
            if hits else f"{q.label} ({q.text!r}): nothing found")
    all_hits = [h for hits in results for h in hits]
    records = R.evidence_records(index, sorted(all_hits, key=lambda h: -h.score))
    entries = pseudo_dictionary(((h.text, h.question) for h in all_hits), rules or NormalizationRules())
    return records, entries
