"""Label names and the name-based (zero-shot) alignment table.

:func:`label_name` renders a dataset label as natural-language words for prompts and for the
encoder (``politicalparty`` -> ``political party``, ``PER`` -> ``person``, ``WORK_OF_ART``
-> ``work of art``): a table of known labels (CoNLL-2003, OntoNotes, CrossNER, WNUT, MIT),
else CamelCase, ``_`` and ``-`` split and lower-cased.

:func:`names_table` builds a table without target gold (LAR's zero-shot setting, spec §4.7
[ours]): every label is embedded as ``"<name>: <description>"`` (built-in descriptions for
the known source labels, any given with ``descriptions=``) by a sentence encoder (mean of
the last hidden states over the sub-tokens, L2-normalised; MiniLM by default), and each
target goes to the source type with the highest cosine similarity (ties: alphabetical). A
target whose best similarity is below ``min_similarity`` goes to ``misc``. The misc source
type competes like any other only when it is among the source labels with a description;
the similarities are kept in the table (``similarity``), and each source type's ``default``
target (used without enhanced inference) is its most similar candidate.

:func:`names_table_llm` asks an OpenAI-compatible LLM instead, one multiple-choice question
per target type ("which general type is a <target> a kind of?"); an answer that names no
option sends the target to misc (counted in the table's ``settings``).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping, Sequence

from nertools.align.table import AlignmentTable, default_targets, guess_misc
from nertools.errors import NertoolsError

#: Words for labels whose spelling does not split by rule.
KNOWN_NAMES = {
    # CoNLL-2003
    "PER": "person", "ORG": "organization", "LOC": "location", "MISC": "miscellaneous",
    # OntoNotes (spaCy's English pipelines)
    "PERSON": "person", "NORP": "nationality, religious or political group", "FAC": "facility",
    "GPE": "country, city or state", "PRODUCT": "product", "EVENT": "event", "WORK_OF_ART": "work of art",
    "LAW": "law", "LANGUAGE": "language", "DATE": "date", "TIME": "time", "PERCENT": "percent",
    "MONEY": "money", "QUANTITY": "quantity", "ORDINAL": "ordinal", "CARDINAL": "cardinal number",
    # CrossNER
    "politicalparty": "political party", "organisation": "organisation", "misc": "miscellaneous",
    "astronomicalobject": "astronomical object", "chemicalcompound": "chemical compound",
    "academicjournal": "academic journal", "chemicalelement": "chemical element",
    "musicalartist": "musical artist", "musicgenre": "music genre", "musicalinstrument": "musical instrument",
    "literarygenre": "literary genre", "programlang": "programming language",
    # WNUT, MIT
    "creative-work": "creative work", "geo-loc": "geographic location", "sportsteam": "sports team",
    "musicartist": "music artist", "tvshow": "tv show", "Restaurant_Name": "restaurant name",
}

#: Short descriptions of the source label sets nertools knows (written for the encoder).
DESCRIPTIONS = {
    "PERSON": "people, real or fictional, by name",
    "NORP": "nationalities, religious groups and political groups",
    "FAC": "buildings, airports, highways, bridges and other facilities",
    "ORG": "companies, agencies, institutions, teams, parties and other organizations",
    "GPE": "countries, cities, states and other geopolitical entities",
    "LOC": "places that are not countries or cities: mountains, rivers, seas, regions",
    "PRODUCT": "objects, devices, vehicles, software and other products",
    "EVENT": "named events: wars, battles, elections, festivals, sports events",
    "WORK_OF_ART": "titles of books, songs, albums, films, paintings and other works",
    "LAW": "named documents made into laws and treaties",
    "LANGUAGE": "any named language",
    "DATE": "absolute or relative dates or periods",
    "TIME": "times smaller than a day",
    "PERCENT": "percentages",
    "MONEY": "monetary values",
    "QUANTITY": "measurements of weight or distance",
    "ORDINAL": "first, second and other ordinal numbers",
    "CARDINAL": "numerals that are not another type",
    "PER": "people, real or fictional, by name",
    "MISC": "other named entities: nationalities, events, works, products",
}


def label_name(label: str) -> str:
    """Natural-language words for a label (lower case)."""
    if label in KNOWN_NAMES:
        return KNOWN_NAMES[label]
    if label.lower() in KNOWN_NAMES:
        return KNOWN_NAMES[label.lower()]
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", label)
    words = re.sub(r"[_\-\s]+", " ", words).strip()
    return words.lower() or label


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", " ", text.lower()).strip()


def match_option(answer: str | None, options: Sequence[str]) -> str | None:
    """The option an answer names: equal after lower-casing and dropping punctuation, as the
    raw label or its rendered name; else the only option whose name the answer contains as
    whole words (an option whose name is inside a longer matching one does not count); else
    ``None`` (outside the options)."""
    if answer is None:
        return None
    a = _norm(answer)
    if not a:
        return None
    for o in options:
        if a in (_norm(o), _norm(label_name(o))):
            return o
    hits = [o for o in options if re.search(rf"\b{re.escape(_norm(label_name(o)))}\b", a)]
    longest = [o for o in hits if not any(o != p and _norm(label_name(o)) in _norm(label_name(p)) for p in hits)]
    return longest[0] if len(longest) == 1 else None


def label_text(label: str, descriptions: Mapping[str, str] | None = None) -> str:
    desc = (descriptions or {}).get(label) or DESCRIPTIONS.get(label)
    name = label_name(label)
    return f"{name}: {desc}" if desc else name


def embed_texts(texts: list[str], model: str = "all-minilm-l6-v2", *, device: str = "auto") -> Any:
    """L2-normalised mean-pooled sentence vectors (a torch tensor, one row per text)."""
    import torch

    from nertools.runtime.models import ENCODER, load_pretrained, resolve_device
    from nertools.runtime.progress import quiet_transformers

    quiet_transformers()
    dev = resolve_device(device)
    enc, tok = load_pretrained(model, ENCODER, subject=f"encoder {model!r}")
    enc.to(dev).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt").to(dev)
    with torch.no_grad():
        out = enc(**batch)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(vec.float(), dim=-1).cpu()


def _check_labels(source_labels: list[str], target_labels: list[str]) -> None:
    if not source_labels or not target_labels:
        raise NertoolsError("give at least one source label and one target label")
    for what, labels in (("source", source_labels), ("target", target_labels)):
        if len(set(labels)) != len(labels):
            raise NertoolsError(f"a {what} label is given twice")


def names_table(source_labels: Iterable[str], target_labels: Iterable[str], *, model: str = "all-minilm-l6-v2",
                misc: str | None = None, descriptions: Mapping[str, str] | None = None,
                min_similarity: float = 0.0, overrides: Mapping[str, str] | None = None,
                device: str = "auto", embed: Callable[[list[str]], Any] | None = None) -> AlignmentTable:
    """The name-similarity table (see the module docstring). ``embed`` replaces the encoder
    (a function from texts to normalised row vectors), for tests and other encoders."""
    sources, targets = list(source_labels), list(target_labels)
    _check_labels(sources, targets)
    misc = misc or guess_misc(sources)
    texts = [label_text(x, descriptions) for x in sources + targets]
    vecs = embed(texts) if embed is not None else embed_texts(texts, model, device=device)
    src, tgt = vecs[: len(sources)], vecs[len(sources):]
    sim = (tgt @ src.T).tolist()
    similarity = {t: {s: round(float(sim[i][j]), 6) for j, s in enumerate(sources)} for i, t in enumerate(targets)}
    assign, reason = {}, {}
    for t in targets:
        best = sorted(sources, key=lambda s: (-similarity[t][s], s))[0]
        if similarity[t][best] < min_similarity:
            best, reason[t] = misc, "min similarity"
        else:
            reason[t] = "names"
        assign[t] = best
    overrides = dict(overrides or {})
    for t, s in overrides.items():
        if t not in assign:
            raise NertoolsError(f"override names target {t!r}, which is not among the target labels")
        if s not in sources and s != misc:
            raise NertoolsError(f"override {t} -> {s}: {s!r} is not a source label")
        assign[t], reason[t] = s, "override"
    table = AlignmentTable("names", sorted(set(sources) | {misc}), targets, misc, assign, overrides=overrides,
                           similarity=similarity,
                           settings={"encoder": model if embed is None else "custom", "min_similarity": min_similarity,
                                     "texts": dict(zip(sources + targets, texts)), "reason": reason})
    table.default = default_targets(table.candidates, {}, similarity)
    return table


LLM_PROMPT = ("Which general type is a {target} a kind of? Options: {options}. "
              "Answer with one option only.")


def names_table_llm(source_labels: Iterable[str], target_labels: Iterable[str], cfg, *, misc: str | None = None,
                    overrides: Mapping[str, str] | None = None,
                    log: Callable[[str], None] | None = None) -> AlignmentTable:
    """The name-based table from an OpenAI-compatible LLM (``cfg``: an
    :class:`nertools.llm.client.LLMConfig`; answers are cached by the client)."""
    from nertools.llm.client import chat_completion

    sources, targets = list(source_labels), list(target_labels)
    _check_labels(sources, targets)
    misc = misc or guess_misc(sources)
    names = {s: label_name(s) for s in sources}
    options = ", ".join(names[s] for s in sources)
    assign, reason, answers = {}, {}, {}
    for t in targets:
        answer = chat_completion(cfg, [{"role": "user", "content": LLM_PROMPT.format(
            target=label_name(t), options=options)}], log=log)
        answers[t] = answer
        chosen = match_option(answer, [names[s] for s in sources])
        if chosen is None:
            assign[t], reason[t] = misc, "answer outside the options"
        else:
            assign[t], reason[t] = sources[[names[s] for s in sources].index(chosen)], "llm"
    for t, s in (overrides or {}).items():
        if t not in assign:
            raise NertoolsError(f"override names target {t!r}, which is not among the target labels")
        assign[t], reason[t] = s, "override"
    return AlignmentTable("names", sorted(set(sources) | {misc}), targets, misc, assign,
                          overrides=dict(overrides or {}),
                          settings={"llm": cfg.model, "answers": answers, "reason": reason})
