"""Parsing annotation answers into items, and placing items on the record's tokens.

An *item* is one thing the model said: ``{"text", "label", ["description"], "line", "status",
"occurrences"}``. Every parsed item is kept (auditable); ``status`` says what became of it:

``placed``          found in the text; at least one occurrence is in ``spans``
``overlap``         found, but every occurrence overlaps a span chosen before it
``not_found``       its words do not occur in the text (an invented or altered entity)
``unknown_label``   its label is not one the prompt asked for
``input_markup``    the ``[text](LABEL)`` markup itself occurs in the input (copied, not annotated)

Positions come only from an exact, case-sensitive match of the item's words against the
record's tokens (all occurrences): nothing in the answer or the corpus can put a span at an
offset whose text differs from the item's, or off token boundaries. Opt-in
(``case_fallback``, ``ner-annotate --case-fallback``): an item with no exact occurrence is
looked up once more ignoring case (``str.lower`` on both sides, token by token: lower-cased
corpora such as the MIT sets, where a model writes "Pizza Hut" for "pizza hut"); such an
item carries ``"match": "ignore_case"`` and is counted apart (``ignore_case`` in the counts).
The span still covers the record's own tokens, in the record's spelling.

The ``spans`` selection (non-overlapping): occurrences are taken longest first (in tokens),
ties broken by the item's order in the answer, then left to right; an occurrence that shares
a token with one already taken is skipped.

Robustness to small models: duplicated lines/items are dropped (first kept), a line that just
echoes the input sentence is ignored, NuNER lines with two fields (no description) are
accepted, lines that do not parse are skipped, reading stops where the model starts a new
input of its own after its answer (a ``Text:``/``Input:``/``Sentence:`` line, or the prompt
again), at most ``max_items`` items are read, and the last line of an answer stopped by the
length limit (cut mid-line) is not read as a line item.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import orjson

from nertools.llm.parsing import answer_lines

BRACKET = re.compile(r"\[([^\[\]\n]{1,200})\]\(([^()\n]{1,100})\)")
_CONTINUATION = re.compile(r"(?:text|input|sentence)\s*:|the goal is to create", re.IGNORECASE)
_LABEL_WORD = re.compile(r"\w[\w .\-/&']*")
NONE_WORDS = {"none", "==none==", "n/a", "na", "-", "no entities", "nothing", "null"}
DEFAULT_MAX_ITEMS = 30


def _clean(s: str) -> str:
    s = " ".join(s.split())
    return s.strip().strip("\"'`").strip()


def _dedupe(items: list[dict], max_items: int) -> list[dict]:
    out, seen = [], set()
    for it in items:
        key = (it["text"], it["label"])
        if key in seen or not it["text"] or not it["label"]:
            continue
        seen.add(key)
        out.append(it)
        if len(out) >= max_items:
            break
    return out


def parse_nuner(answer: str, sentence: str = "", max_items: int = DEFAULT_MAX_ITEMS) -> list[dict]:
    """``entity <> concept [<> description]`` lines."""
    items = []
    echo = _clean(sentence)
    for lineno, line in answer_lines(answer):
        if items and _CONTINUATION.match(line):
            break  # the model goes on with a new input of its own
        if "<>" not in line or _clean(line) == echo:
            continue
        fields = [_clean(f) for f in line.split("<>")]
        if len(fields) < 2 or not fields[0] or not fields[1]:
            continue
        it: dict[str, Any] = {"text": fields[0], "label": fields[1]}
        desc = " <> ".join(f for f in fields[2:] if f)
        if desc:
            it["description"] = desc
        it["line"] = lineno
        items.append(it)
    return _dedupe(items, max_items)


def parse_brackets(answer: str, sentence: str = "", max_items: int = DEFAULT_MAX_ITEMS) -> list[dict]:
    """``[entity](LABEL)`` markup anywhere in the answer."""
    items = []
    for lineno, line in enumerate(answer.splitlines(), 1):
        for m in BRACKET.finditer(line):
            items.append({"text": _clean(m.group(1)), "label": _clean(m.group(2)), "line": lineno})
    return _dedupe(items, max_items)


def parse_label_lines(answer: str, sentence: str = "", max_items: int = DEFAULT_MAX_ITEMS,
                      labels: Sequence[str] | None = None) -> list[dict]:
    """``LABEL: entity, entity`` lines (``NONE`` and empty lists allowed). With ``labels``,
    a label is matched case-insensitively and written as given there."""
    canon = {lab.lower(): lab for lab in labels or ()}
    items = []
    echo = _clean(sentence)
    for lineno, line in answer_lines(answer):
        if items and _CONTINUATION.match(line):
            break  # the model goes on with a new example of its own
        if ":" not in line or _clean(line) == echo:
            continue
        lab, rest = line.split(":", 1)
        lab = _clean(lab)
        if not _LABEL_WORD.fullmatch(lab) or len(lab) > 60 or lab.lower() in ("text", "answer", "sentence", "input", "output"):
            continue
        lab = canon.get(lab.lower(), lab)
        for part in rest.split(","):
            t = _clean(part)
            if t and t.lower() not in NONE_WORDS:
                items.append({"text": t, "label": lab, "line": lineno})
    return _dedupe(items, max_items)


def parse_json_items(answer: str, max_items: int = DEFAULT_MAX_ITEMS) -> list[dict] | None:
    """Items from a structured-output answer ``{"entities": [{"text", "label"[, "description"]}]}``
    (``entity``/``concept`` accepted as field names); ``None`` when the answer is not such JSON."""
    s = answer.strip()
    if s.startswith("```"):
        s = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", s)
    if not s.startswith("{"):
        return None
    try:
        obj = orjson.loads(s)
    except orjson.JSONDecodeError:
        return None
    ents = obj.get("entities") if isinstance(obj, dict) else None
    if not isinstance(ents, list):
        return None
    items = []
    for i, e in enumerate(ents):
        if not isinstance(e, dict):
            continue
        text = e.get("text", e.get("entity"))
        label = e.get("label", e.get("concept"))
        if not isinstance(text, str) or not isinstance(label, str):
            continue
        it: dict[str, Any] = {"text": _clean(text), "label": _clean(label)}
        if isinstance(e.get("description"), str) and e["description"].strip():
            it["description"] = _clean(e["description"])
        it["line"] = 0
        it["index"] = i
        items.append(it)
    return _dedupe(items, max_items)


def cut_truncated_line(answer: str) -> str:
    """``answer`` without its last line: an answer stopped by the length limit ends in a line
    that was cut (``Shaun Pollock <> England player <``), whose fields cannot be trusted."""
    return answer.rsplit("\n", 1)[0] if "\n" in answer else ""


def parse_answer(answer: str, parser: str, *, sentence: str = "", labels: Sequence[str] | None = None,
                 max_items: int = DEFAULT_MAX_ITEMS, truncated: bool = False) -> tuple[list[dict], str]:
    """``(items, format read)``. A JSON answer (structured output) is read as JSON; otherwise the
    parser's text format; ``auto`` tries brackets, then ``<>`` lines, then ``LABEL:`` lines.

    ``truncated``: the answer was stopped by the length limit (``finish_reason`` "length"); its
    last line is cut before line formats (``<>`` and ``LABEL:`` lines) are read. Bracket markup
    needs its closing ``)`` and is read from the whole answer."""
    js = parse_json_items(answer, max_items)
    if js is not None:
        return js, "json"
    if truncated and parser != "brackets":
        whole, answer = answer, cut_truncated_line(answer)
        if parser == "auto":
            items = parse_brackets(whole, sentence, max_items)
            if items:
                return items, "brackets"
    if parser == "nuner":
        return parse_nuner(answer, sentence, max_items), "nuner"
    if parser == "brackets":
        return parse_brackets(answer, sentence, max_items), "brackets"
    if parser == "labels":
        return parse_label_lines(answer, sentence, max_items, labels), "labels"
    for name, fn in (("brackets", parse_brackets), ("nuner", parse_nuner)):
        items = fn(answer, sentence, max_items)
        if items:
            return items, name
    return parse_label_lines(answer, sentence, max_items, labels), "labels"


# --------------------------------------------------------------------------- alignment

def find_occurrences(entity: str, tokens: Sequence[dict], *, ignore_case: bool = False) -> list[tuple[int, int]]:
    """Every ``(token_start, token_end)`` (inclusive) whose tokens spell ``entity`` exactly
    (case-sensitive unless ``ignore_case``: then both sides are compared ``str.lower``-ed;
    whitespace in ``entity`` exactly where the text has it between tokens, except that tokens
    which touch in the text may be written with a space between them)."""
    fold = str.lower if ignore_case else (lambda x: x)
    chars = []           # the entity's characters without whitespace
    space_before = set()  # indices into chars that follow whitespace
    for ch in entity.strip():
        if ch.isspace():
            space_before.add(len(chars))
        else:
            chars.extend(fold(ch))
    target = "".join(chars)
    if not target:
        return []
    out = []
    n = len(tokens)
    texts = [fold(t["text"]) for t in tokens] if ignore_case else [t["text"] for t in tokens]
    for i in range(n):
        t0 = texts[i]
        if not target.startswith(t0) or not t0:
            continue
        pos = len(t0)
        j = i
        ok = True
        while pos < len(target):
            j += 1
            if j >= n:
                ok = False
                break
            tj = texts[j]
            if not tj or not target.startswith(tj, pos):
                ok = False
                break
            pos += len(tj)
        if not ok or pos != len(target):
            continue
        boundaries = set()
        spaced = set()  # boundaries where the text has whitespace: the entity must too
        p = 0
        for k in range(i, j + 1):
            p += len(texts[k])
            boundaries.add(p)
            if k < j and tokens[k + 1]["start"] > tokens[k]["end"]:
                spaced.add(p)
        if space_before <= boundaries and spaced <= space_before:
            out.append((i, j))
    return out


def place_items(items: list[dict], record: dict, *, labels: Sequence[str] | None = None,
                case_fallback: bool = False) -> list[dict]:
    """Set each item's ``status`` and ``occurrences``; return the non-overlapping ``spans``
    (see the module docstring for the rule; ``case_fallback``: the case-insensitive second
    look-up of items with no exact occurrence)."""
    tokens = record["tokens"]
    text = record["text"]
    allowed = set(labels) if labels else None
    cands = []
    for order, it in enumerate(items):
        it.pop("occurrences", None)
        it.pop("match", None)
        if allowed is not None and it["label"] not in allowed:
            it["status"] = "unknown_label"
            continue
        if f"[{it['text']}]({it['label']})" in text:
            it["status"] = "input_markup"
            continue
        occ = find_occurrences(it["text"], tokens)
        if not occ and case_fallback:
            occ = find_occurrences(it["text"], tokens, ignore_case=True)
            if occ:
                it["match"] = "ignore_case"
        if not occ:
            it["status"] = "not_found"
            continue
        it["occurrences"] = [[a, b] for a, b in occ]
        it["status"] = "overlap"
        for a, b in occ:
            cands.append((-(b - a + 1), order, a, b, it))
    cands.sort(key=lambda c: c[:4])
    taken = [False] * len(tokens)
    spans = []
    for _, _, a, b, it in cands:
        if any(taken[a:b + 1]):
            continue
        for k in range(a, b + 1):
            taken[k] = True
        it["status"] = "placed"
        spans.append({"start": tokens[a]["start"], "end": tokens[b]["end"], "token_start": a,
                      "token_end": b, "label": it["label"]})
    spans.sort(key=lambda s: (s["start"], s["end"]))
    return spans


def item_counts(items: Sequence[dict]) -> dict[str, int]:
    counts = {"items": len(items), "placed": 0, "overlap": 0, "not_found": 0, "unknown_label": 0,
              "input_markup": 0}
    for it in items:
        counts[it["status"]] = counts.get(it["status"], 0) + 1
        if it.get("match") == "ignore_case":
            counts["ignore_case"] = counts.get("ignore_case", 0) + 1
    return counts

