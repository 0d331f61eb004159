"""Annotation prompts: NuNER's open-concept prompt, X-NER's InstructMine prompt, a label-list
prompt with optional definitions and few-shot examples, and user templates.

A :class:`PromptTemplate` is a list of chat turns whose texts may hold placeholders. Rendering
substitutes them in one pass (:func:`fill`), so text from the corpus can never introduce a
placeholder of its own. Placeholders of a user template (``--prompt-file``):

``{sentence}``     the record's text (required)
``{labels}``       the label names, comma-separated
``{definitions}``  one ``LABEL: definition`` line per label (the name alone without one)
``{examples}``     the few-shot examples (``--examples``), each ``Text: ...`` then the answer lines
``{seeds}``        one ``[seed](LABEL)`` line per seed (``--seed``/``--seeds``)
``{{`` ``}}``      literal braces

A user template is plain text (the user turn), or several turns, each starting with a line
``### system``, ``### user`` or ``### assistant`` (assistant turns are demonstrations).

The prompt's identity (``name`` and the sha256 of its turns with the placeholders unfilled,
its parser and label set) is stored with every annotated record.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Sequence

import orjson

from nertools.errors import DataError, NertoolsError

PLACEHOLDERS = ("sentence", "labels", "definitions", "examples", "seeds")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_]+)\}")

#: NuNER Figure 2, verbatim (``Input:`` on its own line, as methods-spec §2.2 recommends).
NUNER_PROMPT = (
    "The goal is to create a dataset for entity recognition. Label as many entities, concepts, and "
    "ideas as possible in the input text. Invent new entity types that may not exist in traditional "
    "NER Tasks such as more abstract concepts and ideas. Make sure the entity concept is not part of "
    "speech but something more meaningful. Avoid finding meaningless entities.\n\n"
    "Output format (separate entities with new line): entity from the text <> entity concept <> "
    "description of entity group/concept\nInput:\n\n{sentence}")

#: NuNER Figure 3: the sentence and its GPT-3.5 annotation, used as a demonstration turn.
NUNER_DEMO_SENTENCE = ("Steven Means has signed a one-year contract extension with the Falcons after "
                       "making four starts in 2018.")
NUNER_DEMO_ANSWER = ("Steven Means <> NFL player <> professional athlete\n"
                     "Falcons <> NFL team <> professional sports team\n"
                     "2018 <> year <> unit of time")

#: X-NER Table 8 (InstructMine), verbatim; ``{seeds}`` is one ``[seed](LABEL)`` line per type.
INSTRUCTMINE_PROMPT = ("Based on these examples:\n\n{seeds}\n\n"
                       "Bracket and label the named entities in the sentence:\n\n{sentence}")

LABELS_SYSTEM = "You are an expert named entity recognition system."
LABELS_PROMPT = (
    "Find the named entities of these types in the text: {labels}.\n\n"
    "{definitions_block}"
    "Answer with one line per type that occurs, in the form\n"
    "LABEL: entity, entity\n"
    "using the exact words of the text. Write nothing else. If no entity occurs, answer NONE.\n\n"
    "{examples_block}"
    "Text: {sentence}")

PARSERS = ("nuner", "brackets", "labels", "auto")


def fill(template: str, values: dict[str, str]) -> str:
    """Substitute ``{name}`` placeholders in one pass (``{{``/``}}`` are literal braces).
    Values are inserted verbatim and never scanned for placeholders."""

    def sub(m: re.Match) -> str:
        tok = m.group(0)
        if tok == "{{":
            return "{"
        if tok == "}}":
            return "}"
        name = m.group(1)
        if name not in values:
            raise NertoolsError(f"prompt placeholder {{{name}}} has no value")
        return values[name]

    return _PLACEHOLDER.sub(sub, template)


def placeholders_in(template: str) -> set[str]:
    return {m.group(1) for m in _PLACEHOLDER.finditer(template) if m.group(1)}


@dataclass(frozen=True)
class Example:
    """A few-shot example: a sentence and its entities ``(text, label)``."""

    text: str
    entities: tuple[tuple[str, str], ...]


@dataclass
class PromptTemplate:
    name: str
    turns: list[tuple[str, str]]             # (role, text with placeholders)
    parser: str                              # nuner | brackets | labels | auto
    labels: list[str] | None = None          # allowed labels (None: open concepts)
    values: dict[str, str] = field(default_factory=dict)  # static placeholder values
    examples: list[Example] = field(default_factory=list)
    demo_items: list[tuple[str, str]] = field(default_factory=list)  # (text, label) shown in the prompt

    def identity(self) -> dict:
        """Name, sha256 of the turns and static values, parser and labels."""
        payload = orjson.dumps({"turns": self.turns, "values": self.values, "parser": self.parser,
                                "labels": self.labels,
                                "examples": [[e.text, list(map(list, e.entities))] for e in self.examples]},
                               option=orjson.OPT_SORT_KEYS)
        return {"name": self.name, "sha256": hashlib.sha256(payload).hexdigest(), "parser": self.parser,
                "labels": self.labels}

    def render(self, sentence: str) -> list[dict]:
        """Chat messages for one sentence."""
        values = dict(self.values)
        values["sentence"] = sentence
        if "examples" not in self.values:
            values["examples"] = render_examples([e for e in self.examples if e.text != sentence], self.parser)
        return [{"role": role, "content": fill(text, values)} for role, text in self.turns]


def flatten(messages: Sequence[dict]) -> str:
    """A plain completion prompt for a model without a chat template: the system text, then each
    user turn followed by ``Answer:`` and the demonstration answer (or, last, nothing)."""
    parts = []
    for m in messages:
        if m["role"] == "system":
            parts.append(m["content"].strip() + "\n\n")
        elif m["role"] == "user":
            parts.append(m["content"].rstrip() + "\n\nAnswer:\n")
        else:
            parts.append(m["content"].strip() + "\n\n")
    return "".join(parts)


def render_answer(entities: Sequence[tuple[str, str]], parser: str, sentence: str = "") -> str:
    """The answer an example teaches, in the parser's format."""
    if parser == "brackets":
        return bracket_sentence(sentence, entities)
    if parser == "nuner":
        return "\n".join(f"{t} <> {lab}" for t, lab in entities)
    by_label: dict[str, list[str]] = {}
    for t, lab in entities:
        by_label.setdefault(lab, [])
        if t not in by_label[lab]:
            by_label[lab].append(t)
    return "\n".join(f"{lab}: {', '.join(ts)}" for lab, ts in by_label.items()) or "NONE"


def bracket_sentence(sentence: str, entities: Sequence[tuple[str, str]]) -> str:
    """``sentence`` with the first occurrence of each entity written ``[text](LABEL)``."""
    out = sentence
    for t, lab in entities:
        i = out.find(t)
        if i >= 0:
            out = out[:i] + f"[{t}]({lab})" + out[i + len(t):]
    return out


def render_examples(examples: Sequence[Example], parser: str) -> str:
    return "\n\n".join(f"Text: {e.text}\n{render_answer(e.entities, parser, e.text)}" for e in examples)


def examples_from_records(records, labels: Sequence[str] | None, n: int) -> list[Example]:
    """The first ``n`` records with at least one span (of ``labels``, when given) as examples."""
    out = []
    allowed = set(labels) if labels else None
    for rec in records:
        ents = tuple((rec["text"][s["start"]:s["end"]], s["label"]) for s in rec.get("spans") or []
                     if allowed is None or s["label"] in allowed)
        if ents:
            out.append(Example(rec["text"], ents))
            if len(out) >= n:
                break
    return out


def nuner_prompt(demonstration: bool = True) -> PromptTemplate:
    turns = []
    if demonstration:
        turns += [("user", NUNER_PROMPT.replace("{sentence}", NUNER_DEMO_SENTENCE)),
                  ("assistant", NUNER_DEMO_ANSWER)]
    turns.append(("user", NUNER_PROMPT))
    demo = [("Steven Means", "NFL player"), ("Falcons", "NFL team"), ("2018", "year")] if demonstration else []
    return PromptTemplate("nuner" if demonstration else "nuner-zero-shot", turns, "nuner", None, demo_items=demo)


def instructmine_prompt(seeds: Sequence) -> PromptTemplate:
    """``seeds``: :class:`nertools.xner.seeds.Seed` objects, one per type."""
    if not seeds:
        raise DataError("the instructmine prompt needs seeds (--seed LABEL=TEXT, --seeds FILE or --paper-seeds)")
    lines = "\n".join(f"[{s.text}]({s.label})" for s in seeds)
    return PromptTemplate("instructmine", [("user", INSTRUCTMINE_PROMPT)], "brackets",
                          [s.label for s in seeds], values={"seeds": lines},
                          demo_items=[(s.text, s.label) for s in seeds])


def labels_prompt(labels: Sequence[str], definitions: dict[str, str] | None = None,
                  examples: Sequence[Example] = ()) -> PromptTemplate:
    if not labels:
        raise DataError("the labels prompt needs labels (--label NAME or --labels FILE)")
    definitions = definitions or {}
    defs = [f"{lab}: {definitions[lab]}" for lab in labels if definitions.get(lab)]
    dblock = ("Label definitions:\n" + "\n".join(defs) + "\n\n") if defs else ""
    eblock = "Examples:\n\n{examples}\n\n" if examples else ""
    text = LABELS_PROMPT.replace("{definitions_block}", dblock.replace("{", "{{").replace("}", "}}"))
    text = text.replace("{examples_block}", eblock)
    return PromptTemplate("labels", [("system", LABELS_SYSTEM), ("user", text)], "labels", list(labels),
                          values={"labels": ", ".join(labels)}, examples=list(examples),
                          demo_items=[it for e in examples for it in e.entities])


def read_label_file(path: str) -> list[tuple[str, str]]:
    """``(label, definition)`` from ``LABEL[<TAB>DEFINITION]`` lines or JSONL
    ``{"label", "definition"}``."""
    from nertools.core.specfile import read_small_table

    def from_json(obj: dict) -> tuple[str, str]:
        lab = str(obj.get("label", "")).strip()
        if not lab:
            raise DataError("label entry has no 'label'")
        return lab, str(obj.get("definition") or obj.get("description") or "").strip()

    def from_fields(parts: list[str]) -> tuple[str, str]:
        lab = parts[0].strip()
        if not lab:
            raise DataError("empty label")
        return lab, "\t".join(parts[1:]).strip()

    return read_small_table(path, from_json, from_fields, what="labels")


def parse_template_file(text: str) -> list[tuple[str, str]]:
    """Turns of a user template: ``### system|user|assistant`` section lines, else one user turn."""
    turns: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        m = re.fullmatch(r"###\s*(system|user|assistant)\s*", line.strip(), flags=re.I)
        if m:
            turns.append((m.group(1).lower(), []))
        elif turns:
            turns[-1][1].append(line)
        else:
            turns.append(("user", [line]))
    out = [(role, "\n".join(lines).strip("\n")) for role, lines in turns]
    out = [(r, t) for r, t in out if t.strip() or r == "assistant"]
    if not out or out[-1][0] != "user":
        raise DataError("a prompt template must end with a user turn")
    return out


def file_prompt(path: str, text: str, *, parser: str, labels: Sequence[str] | None = None,
                definitions: dict[str, str] | None = None, examples: Sequence[Example] = (),
                seeds: Sequence = ()) -> PromptTemplate:
    turns = parse_template_file(text)
    used = set().union(*(placeholders_in(t) for _, t in turns))
    unknown = used - set(PLACEHOLDERS)
    if unknown:
        raise DataError(f"unknown placeholder(s) {', '.join('{' + u + '}' for u in sorted(unknown))} "
                        f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})", path=path)
    if "sentence" not in placeholders_in(turns[-1][1]):
        raise DataError("the last user turn of a prompt template needs the {sentence} placeholder", path=path)
    definitions = definitions or {}
    if seeds and not labels:
        labels = [s.label for s in seeds]
    values = {"labels": ", ".join(labels or []),
              "definitions": "\n".join(f"{lab}: {definitions[lab]}" if definitions.get(lab) else lab
                                       for lab in (labels or [])),
              "seeds": "\n".join(f"[{s.text}]({s.label})" for s in seeds)}
    for need, have in (("labels", labels), ("definitions", labels), ("seeds", seeds), ("examples", examples)):
        if need in used and not have:
            raise DataError(f"the template uses {{{need}}} but no "
                            f"{'seeds' if need == 'seeds' else 'examples' if need == 'examples' else 'labels'} were given",
                            path=path)
    name = "file:" + path.rsplit("/", 1)[-1]
    demo = [(s.text, s.label) for s in seeds] + [it for e in examples for it in e.entities]
    return PromptTemplate(name, turns, parser, list(labels) if labels else None, values=values,
                          examples=list(examples), demo_items=demo)
