"""Hugging Face token-classification JSONL (see :mod:`nertools.formats.convert`)."""

from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

from nertools.errors import DataError
from nertools.core.jsonl import ErrorPolicy, display_name, read_jsonl
from nertools.core.record import normalize_record
from nertools.core.tags import check_tag, decode, encode
from nertools.formats.common import DETECT_WINDOW, _int_id, _with_scheme


# --------------------------------------------------------------------------- hf

def _hf_tags(obj: Any, labels: Sequence[str] | None) -> list[str]:
    if not isinstance(obj, dict):
        raise DataError(f"a record must be a JSON object, got {type(obj).__name__}")
    words, tags = obj.get("tokens"), obj.get("ner_tags")
    if not isinstance(words, list) or not isinstance(tags, list):
        raise DataError("hf record needs 'tokens' and 'ner_tags' lists")
    if len(words) != len(tags):
        raise DataError(f"{len(words)} tokens but {len(tags)} ner_tags")
    out = []
    for i, t in enumerate(tags):
        if isinstance(t, str):
            out.append(t)
        elif _int_id(t):
            if labels is None:
                raise DataError("ner_tags are integers: give the id -> tag list (--labels)")
            if not 0 <= t < len(labels):
                raise DataError(f"ner_tags[{i}] = {t} is out of range ({len(labels)} labels)")
            out.append(labels[t])
        else:
            raise DataError(f"ner_tags[{i}] must be a string or an integer")
    return out


def read_hf(path: str | os.PathLike = "-", *, scheme: str = "auto",
            labels: Sequence[str] | None = None, id_prefix: str = "",
            policy: ErrorPolicy | None = None, detect_window: int = DETECT_WINDOW,
            allow_empty: bool = False) -> Iterator[dict]:
    """Canonical records from Hugging Face ``{"tokens", "ner_tags"}`` lines."""
    policy = policy or ErrorPolicy()
    name = display_name(path)

    def items():
        for lineno, obj in read_jsonl(path, policy=policy, allow_empty=True):
            try:
                yield lineno, obj, _hf_tags(obj, labels)
            except DataError as e:
                yield e.located(name, lineno)

    scheme, stream = _with_scheme(items(), lambda item: item[2], scheme, detect_window)
    good = 0
    for item in stream:
        if isinstance(item, DataError):
            policy.handle(item)
            continue
        lineno, obj, tags = item
        try:
            for t in tags:
                check_tag(t, scheme)
            rest = {k: v for k, v in obj.items() if k not in ("tokens", "ner_tags", "text")}
            rest.update(tokens=obj["tokens"], spans=[{"token_start": s, "token_end": e, "label": lab}
                                                     for s, e, lab in decode(tags)])
            rec = normalize_record(rest, default_id=f"{id_prefix}{lineno}")
        except DataError as e:
            policy.handle(e.located(name, lineno))
            continue
        good += 1
        yield rec
    if good == 0 and not allow_empty:
        raise policy.no_records(name)


def record_to_hf(rec: dict, *, scheme: str | None = None,
                 label_ids: dict[str, int] | None = None) -> dict:
    """``{"id", "tokens", "ner_tags"}``; tags as strings, or integers via ``label_ids``."""
    cm = (rec.get("meta") or {}).get("conll") or {}
    tags = encode(rec["spans"], len(rec["tokens"]), scheme or cm.get("scheme") or "BIO2")
    if label_ids is not None:
        try:
            tags = [label_ids[t] for t in tags]
        except KeyError as e:
            raise DataError(f"tag {e.args[0]!r} is not in --labels") from None
    return {"id": rec.get("id"), "tokens": [t["text"] for t in rec["tokens"]], "ner_tags": tags}
