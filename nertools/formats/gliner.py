"""GLiNER JSONL (see :mod:`nertools.formats.convert`)."""

from __future__ import annotations

from typing import Any

from nertools.errors import DataError
from nertools.core.record import normalize_record


# --------------------------------------------------------------------------- gliner

def gliner_to_record(obj: Any, default_id: str | None = None) -> dict:
    """A canonical record from a GLiNER line (token spans, end inclusive)."""
    if not isinstance(obj, dict):
        raise DataError(f"a record must be a JSON object, got {type(obj).__name__}")
    words = obj.get("tokenized_text")
    if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
        raise DataError("'tokenized_text' must be a list of non-empty strings")
    ner = obj.get("ner", [])
    if not isinstance(ner, list):
        raise DataError("'ner' must be a list")
    spans = []
    for i, item in enumerate(ner):
        if not (isinstance(item, (list, tuple)) and len(item) == 3):
            raise DataError(f"ner {i} must be [token_start, token_end, label]")
        spans.append({"token_start": item[0], "token_end": item[1], "label": item[2]})
    rest = {k: v for k, v in obj.items() if k not in ("tokenized_text", "ner")}
    rest.update(tokens=words, spans=spans)
    rest.pop("text", None)
    return normalize_record(rest, default_id=default_id)


def record_to_gliner(rec: dict) -> dict:
    return {"id": rec.get("id"), "tokenized_text": [t["text"] for t in rec["tokens"]],
            "ner": [[s["token_start"], s["token_end"], s["label"]] for s in rec["spans"]]}
