"""``ner-retrieve query``: answer "Which [TYPE]?" questions and build the pseudo-dictionary.

Two backends, each one function returning ``(records, dictionary)``: the records
``ner-retrieve query`` writes to stdout and the pseudo-dictionary ``[(phrase, label, count)]``
it writes with ``--dict-out``:

* :func:`query_dense` -- a phrase index built by ``ner-retrieve index``
  (:mod:`nertools.gener.phrase_index`); the records are the evidence sentences;
* :func:`query_llm` -- an OpenAI-compatible endpoint asked for entity lists
  (:func:`nertools.gener.questions.ask_llm_entities`); the records are the dictionary entries.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from nertools.gener import phrase_index as R
from nertools.gener.phrase_rules import NormalizationRules
from nertools.gener.pseudo_dict import pseudo_dictionary
from nertools.gener.questions import Question, ask_llm_entities
from nertools.llm.client import LLMConfig


def _no_log(message: str) -> None:
    pass


def query_llm(cfg: LLMConfig, questions: Iterable[Question], top_k: int, *,
              rules: NormalizationRules | None = None,
              log: Callable[[str], None] = _no_log) -> tuple[list[dict], list[tuple[str, str, int]]]:
    """``ner-retrieve query --backend openai``: ask for ``top_k`` entities per question.

    Returns the dictionary records ``{"phrase", "label", "count", "source": "openai"}`` and the
    pseudo-dictionary (answers normalised by ``rules``, counted per label). ``log`` gets one
    line per question (and the client's retry notes).
    """
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
                rules: NormalizationRules | None = None,
                log: Callable[[str], None] = _no_log) -> tuple[list[dict], list[tuple[str, str, int]]]:
    """``ner-retrieve query`` (dense backend): the ``top_k`` best phrases per question from the
    phrase index at ``index_path``.

    Returns the evidence records (one per sentence, best first; the retrieved phrases as
    spans) and the pseudo-dictionary of the retrieved phrases normalised by ``rules``.
    Questions are encoded with the index's encoder, or with ``model`` when given.
    """
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
