"""doccano JSONL (see :mod:`nertools.formats.convert`)."""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from nertools.errors import DataError
from nertools.core.record import default_tokenize, normalize_record
from nertools.formats.common import _int_id


# --------------------------------------------------------------------------- doccano

def _split_offsets(offsets: list[tuple[int, int]], cuts: list[int]) -> list[tuple[int, int]]:
    """Split token offsets at each character position in ``cuts`` (sorted)."""
    out = []
    for s, e in offsets:
        i = bisect_right(cuts, s)
        while i < len(cuts) and cuts[i] < e:
            out.append((s, cuts[i]))
            s = cuts[i]
            i += 1
        out.append((s, e))
    return out


def doccano_to_record(obj: Any, default_id: str | None = None) -> dict:
    """A canonical record from a doccano line (see the module doc)."""
    if not isinstance(obj, dict):
        raise DataError(f"a record must be a JSON object, got {type(obj).__name__}")
    text = obj.get("text")
    if not isinstance(text, str):
        raise DataError("doccano record has no 'text' string")
    key = next((k for k in ("label", "labels", "entities") if k in obj), None)
    raw = obj.get(key, []) if key else []
    if not isinstance(raw, list):
        raise DataError(f"'{key}' must be a list")
    spans = []
    for i, item in enumerate(raw):
        if isinstance(item, (list, tuple)) and len(item) == 3:
            s, e, label = item
        elif isinstance(item, dict):
            s, e, label = item.get("start_offset"), item.get("end_offset"), item.get("label")
        else:
            raise DataError(f"{key} {i} must be [start, end, label]")
        if not (_int_id(s) and _int_id(e)) or not 0 <= s < e <= len(text):
            raise DataError(f"{key} {i} [{s}, {e}) is out of range or empty "
                            f"(text length {len(text)})")
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s == e:
            raise DataError(f"{key} {i} covers only whitespace")
        spans.append({"start": s, "end": e, "label": label})
    cuts = sorted({x for sp in spans for x in (sp["start"], sp["end"])})
    rest = {k: v for k, v in obj.items() if k not in ("text", "label", "labels", "entities")}
    rest.update(text=text, spans=spans)
    return normalize_record(rest, default_id=default_id,
                            tokenizer=lambda t: _split_offsets(default_tokenize(t), cuts))


def record_to_doccano(rec: dict) -> dict:
    return {"id": rec.get("id"), "text": rec["text"],
            "label": [[s["start"], s["end"], s["label"]] for s in rec["spans"]]}
