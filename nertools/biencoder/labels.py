"""Labels for the bi-encoder: label/description files, verbalisation, the mentions of a record.

A label file (``--label-desc`` for training, ``ner-tag --labels-file`` for tagging) is TSV
``label<TAB>description[<TAB>name, name, ...]`` or JSONL ``{"label", "description", "names"}``
(``description`` and ``names`` optional); ``#`` lines and blank lines are skipped. A file with
no entry, a label given twice, or an empty label is refused (exit 65, naming file:line).

Verbalisation (the text the label encoder reads, LITSET's ``sampled_desc``):

* ``description``: the label's description, else its names;
* ``names``: ``n ~ Geometric(0.5)`` of its type names (capped at how many it has) sampled
  without replacement, joined with ``", "``; a label without names is named by
  :func:`nertools.core.labels.default_label_word` (``PER`` -> ``person``, ``Restaurant_Name``
  -> ``restaurant name``);
* ``mixed``: with p = 0.5 the description, else names (each falls back to the other).

At evaluation and tagging time verbalisation is deterministic: the description (``description``,
``mixed``) or all names joined with ``", "`` (``names``).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from nertools.core.labels import default_label_word
from nertools.errors import DataError, UsageError

VERBALIZE = ("description", "names", "mixed")
#: What the label encoder reads for the "outside" class of the labels objective.
OUTSIDE_TEXT = "outside"


@dataclass
class LabelInfo:
    label: str
    description: str | None = None
    names: list[str] = field(default_factory=list)

    def all_names(self) -> list[str]:
        return list(self.names) or [default_label_word(self.label)]


def read_label_file(path: str | os.PathLike) -> list[LabelInfo]:
    """The entries of a label file (see the module doc), in file order."""
    from nertools.core.specfile import read_small_table

    seen: set[str] = set()

    def make(label, description, names) -> LabelInfo:
        label = str(label).strip() if label is not None else ""
        if not label:
            raise DataError("empty label")
        if label in seen:
            raise DataError(f"label {label!r} given twice")
        seen.add(label)
        description = " ".join(str(description).split()) if description else None
        if isinstance(names, str):
            names = names.split(",")
        names = [" ".join(str(n).split()) for n in (names or []) if str(n).strip()]
        return LabelInfo(label, description or None, names)

    def from_json(obj: dict) -> LabelInfo:
        names = obj.get("names")
        if names is not None and not isinstance(names, (list, str)):
            raise DataError("\"names\" must be a list of strings")
        return make(obj.get("label"), obj.get("description"), names)

    def from_fields(fields: list[str]) -> LabelInfo:
        if len(fields) > 3:
            raise DataError(f"expected label<TAB>description[<TAB>names], got {len(fields)} columns")
        fields = fields + [None] * (3 - len(fields))
        return make(*fields)

    return read_small_table(path, from_json, from_fields, what="labels")


def labels_from_option(spec: Sequence[str]) -> list[LabelInfo]:
    """``--labels person,location`` or ``PER=person,LOC=location``: label (= the text the label
    encoder reads, unless ``LABEL=TEXT`` names both). A repeated label is a usage error."""
    out, seen = [], set()
    for item in spec:
        label, _, text = item.partition("=")
        label, text = label.strip(), text.strip()
        if not label or ("=" in item and not text):
            raise UsageError(f"--labels {item!r}: expected LABEL or LABEL=TEXT")
        if label in seen:
            raise UsageError(f"--labels: label {label!r} given twice")
        seen.add(label)
        out.append(LabelInfo(label, None, [text or label]))
    if not out:
        raise UsageError("--labels: no labels given")
    return out


def verbalize(info: LabelInfo, mode: str, rng: random.Random | None = None) -> str:
    """The text of ``info`` for the label encoder (see the module doc); ``rng`` None: deterministic."""
    if mode not in VERBALIZE:
        raise UsageError(f"--verbalize {mode!r}: choose one of {', '.join(VERBALIZE)}")
    names = info.all_names()
    if mode == "mixed":
        want_desc = rng is None or rng.random() < 0.5
    else:
        want_desc = mode == "description"
    if want_desc and info.description:
        return info.description
    if rng is None:
        return ", ".join(names)
    n = 1
    while n < len(names) and rng.random() >= 0.5:  # n ~ Geometric(0.5), capped
        n += 1
    return ", ".join(rng.sample(names, n))


# --------------------------------------------------------------------------- mentions


@dataclass(frozen=True)
class Mention:
    """Words ``start..end`` (inclusive) of a record, labelled ``label`` (maybe with a description)."""

    start: int
    end: int
    label: str
    description: str | None = None


def record_mentions(record: dict) -> list[Mention]:
    """The labelled mentions of a record: from ``ner-annotate`` output, every item placed or
    overlapping (all its occurrences, overlapping ones included) with its description; else
    the record's ``spans`` (a span's optional ``description`` is kept)."""
    ann = record.get("annotation")
    items = ann.get("items") if isinstance(ann, dict) else None
    out: list[Mention] = []
    if isinstance(items, list) and items:
        n = len(record["tokens"])
        for it in items:
            if not isinstance(it, dict) or it.get("status") not in ("placed", "overlap"):
                continue
            label = str(it.get("label") or "").strip()
            if not label:
                continue
            desc = it.get("description")
            desc = " ".join(str(desc).split()) if isinstance(desc, str) and desc.strip() else None
            for occ in it.get("occurrences") or []:
                if (isinstance(occ, (list, tuple)) and len(occ) == 2 and all(isinstance(x, int) for x in occ)
                        and 0 <= occ[0] <= occ[1] < n):
                    out.append(Mention(occ[0], occ[1], label, desc))
        return out
    for s in record.get("spans") or []:
        desc = s.get("description")
        out.append(Mention(s["token_start"], s["token_end"], s["label"],
                           desc if isinstance(desc, str) and desc.strip() else None))
    return out


def label_inventory(records: Iterable[dict], key, given: Sequence[LabelInfo] = ()) -> dict[str, LabelInfo]:
    """Every label of ``records`` (``key`` maps a raw label to its identity), in first-seen
    order, with descriptions: a ``given`` entry (the --label-desc file) wins, else the first
    description the data carries."""
    by_label = {key(i.label): i for i in given}
    inv: dict[str, LabelInfo] = {}
    for r in records:
        for m in record_mentions(r):
            k = key(m.label)
            if k not in inv:
                g = by_label.get(k)
                inv[k] = LabelInfo(k, g.description if g else None, list(g.names) if g else [])
            if inv[k].description is None and m.description:
                inv[k].description = m.description
    return inv
