"""Seed entities: one example entity per label (X-NER's extremely weak supervision).

A seed is written ``LABEL=TEXT`` on the command line (``PER="Masaki Yoshida"``), or one per
line in a seeds file: ``LABEL<TAB>TEXT[<TAB>LABEL WORD]`` or JSONL
``{"label": "PER", "seed": "Masaki Yoshida", "label_word": "person"}``. The label word is
what templates say for the label ("The person name: ..."); it defaults from
:data:`DEFAULT_LABEL_WORDS`, else the label in lower case with ``_`` and ``-`` as spaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from nertools.errors import DataError, UsageError
from nertools.core.labels import default_label_word, parse_key_value
from nertools.core.specfile import read_small_table


@dataclass(frozen=True)
class Seed:
    label: str
    text: str
    label_word: str

    @classmethod
    def make(cls, label: str, text: str, label_word: str | None = None) -> "Seed":
        label, text = label.strip(), text.strip()
        if not label:
            raise DataError("seed has an empty label")
        if not text:
            raise DataError(f"seed for label {label!r} is empty")
        return cls(label, text, (label_word or "").strip() or default_label_word(label))


def parse_seed(spec: str, *, option: str = "--seed") -> Seed:
    """Parse ``LABEL=TEXT`` (quotes around TEXT are stripped); a malformed one is a
    :class:`~nertools.errors.UsageError`."""
    label, text = parse_key_value(spec, option=option, form="LABEL=TEXT")
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    try:
        return Seed.make(label, text)
    except DataError as e:
        raise UsageError(f"{option} {spec!r}: {e.message}") from None


def _seed_from_fields(parts: list[str]) -> Seed:
    if len(parts) < 2:
        raise DataError("expected LABEL<TAB>SEED[<TAB>LABEL WORD]")
    return Seed.make(parts[0], parts[1], parts[2] if len(parts) > 2 else None)


def _seed_from_json(obj: dict) -> Seed:
    return Seed.make(str(obj.get("label", "")), str(obj.get("seed", obj.get("text", ""))),
                     obj.get("label_word"))


def read_seeds_file(path: str) -> list[Seed]:
    """Seeds, one per line: ``LABEL<TAB>SEED[<TAB>LABEL WORD]`` or JSONL
    ``{"label", "seed", "label_word"}``; ``#`` comments; ``-`` and ``.gz`` work."""
    return read_small_table(path, _seed_from_json, _seed_from_fields, what="seeds")


def collect_seeds(specs: Iterable[str] = (), files: Iterable[str] = (), *, several: bool = False) -> list[Seed]:
    """Seeds from ``LABEL=TEXT`` options and seeds files, in the order given.

    A label given twice is an error unless ``several`` (``ner-divscore``: several seeds per
    label, :mod:`nertools.xner.multiseed`); the same seed twice, or one label with two label
    words, is always an error. Giving no seed at all is a :class:`~nertools.errors.UsageError`."""
    seeds = [parse_seed(s) for s in specs]
    for f in files:
        seeds.extend(read_seeds_file(f))
    if not seeds:
        raise UsageError("no seeds given (use --seed LABEL=TEXT or --seeds FILE)")
    seen: dict[str, Seed] = {}
    pairs = set()
    for s in seeds:
        first = seen.setdefault(s.label, s)
        if first is not s and not several:
            raise DataError(f"label {s.label!r} has more than one seed")
        if (s.label, s.text) in pairs:
            raise DataError(f"seed {s.text!r} is given twice for label {s.label!r}")
        if first.label_word != s.label_word:
            raise DataError(f"label {s.label!r} has two label words ({first.label_word!r}, {s.label_word!r})")
        pairs.add((s.label, s.text))
    return seeds


#: The X-NER paper's seeds (Appendix A), by data set.
PAPER_SEEDS = {
    "conll2003": {"PER": "Masaki Yoshida", "LOC": "Singapore", "ORG": "Boston Celtics", "MISC": "Japanese"},
    "wnut17": {"person": "Masaki Yoshida", "location": "Singapore", "creative-work": "#BattlestarGalactica",
               "group": "Boston Celtics", "corporation": "Microsoft", "product": "iPhone"},
    "mit_restaurant": {"Restaurant_Name": "McDonald's", "Location": "nearby", "Dish": "chicken sandwich",
                       "Price": "cheap", "Rating": "five star", "Cuisine": "Japanese"},
}
