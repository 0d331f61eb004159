"""The annotation run: records in, annotated records out, resumable and counted.

Each output record is the input record with

* ``spans``: the non-overlapping selection of the placed items (the input's spans are replaced);
* ``annotation``: ``{"prompt": {name, sha256, parser, labels}, "backend", "model", "completion"
  (the raw answer), "format" (how it was read), "finish_reason", "items"}``: every parsed
  item with its ``status`` (see :mod:`nertools.annotate.parsing`);
* ``meta["annotate"]``: the item counts of the record (``items``, ``placed``, ``not_found``, ...).

NuNER's filter drops a record when an item's concept is literally "concept" (counted).
``case_fallback`` places items with no exact occurrence case-insensitively (marked and counted;
see :mod:`nertools.annotate.parsing`).
:func:`reparse_record` redoes the parsing of a stored answer without a model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from nertools.annotate.parsing import DEFAULT_MAX_ITEMS, item_counts, parse_answer, place_items
from nertools.annotate.prompts import PromptTemplate
from nertools.errors import DataError


@dataclass
class RunStats:
    records: int = 0          # records written
    skipped_resume: int = 0   # ids already in the output (--resume)
    dropped_concept: int = 0  # NuNER filter
    failed: int = 0           # no answer (too long, missing batch result, ...)
    items: int = 0
    placed: int = 0
    not_found: int = 0
    unknown_label: int = 0
    overlap: int = 0
    ignore_case: int = 0      # placed by the case-insensitive fallback
    cache_hits: int = 0
    seconds: float = 0.0
    first_failure: str | None = None
    fatal: str | None = None
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def hallucination_rate(self) -> float | None:
        return self.not_found / self.items if self.items else None

    def summary(self) -> str:
        rate = self.hallucination_rate
        parts = [f"{self.records} records written"]
        if self.skipped_resume:
            parts.append(f"{self.skipped_resume} already done (resume)")
        if self.dropped_concept:
            parts.append(f"{self.dropped_concept} dropped (concept \"concept\")")
        if self.failed:
            parts.append(f"{self.failed} without an answer (first: {self.first_failure})")
        parts.append(f"{self.items} items, {self.placed} placed, {self.overlap} overlapping, "
                     f"{self.unknown_label} with another label, {self.not_found} not found in the text"
                     + (f", {self.ignore_case} found ignoring case" if self.ignore_case else ""))
        if rate is not None:
            parts.append(f"hallucination rate {100 * rate:.1f}%")
        if self.cache_hits:
            parts.append(f"{self.cache_hits} cache hits")
        if self.seconds:
            n = self.records + self.dropped_concept + self.failed
            parts.append(f"{self.seconds:.1f}s ({n / self.seconds:.2f} sentences/s)")
        return "; ".join(parts)


def annotate_record(record: dict, answer: str, prompt_id: dict, *, backend: str, model: str,
                    finish_reason: str | None = None, max_items: int = DEFAULT_MAX_ITEMS,
                    case_fallback: bool = False) -> dict:
    """The annotated copy of ``record`` for a raw ``answer``."""
    items, fmt = parse_answer(answer, prompt_id["parser"], sentence=record["text"], labels=prompt_id.get("labels"),
                              max_items=max_items, truncated=finish_reason == "length")
    spans = place_items(items, record, labels=prompt_id.get("labels"), case_fallback=case_fallback)
    out = dict(record)
    out["spans"] = spans
    out["annotation"] = {"prompt": prompt_id, "backend": backend, "model": model, "completion": answer,
                         "format": fmt, "finish_reason": finish_reason, "items": items}
    meta = dict(out.get("meta") or {})
    meta["annotate"] = item_counts(items)
    out["meta"] = meta
    return out


def check_stored(record: dict) -> dict:
    """``record`` itself when it carries a stored answer (``annotation.completion`` and
    ``annotation.prompt``), else :class:`DataError`."""
    ann = record.get("annotation")
    if not isinstance(ann, dict) or not isinstance(ann.get("completion"), str) or \
            not isinstance(ann.get("prompt"), dict) or "parser" not in ann["prompt"]:
        raise DataError("record has no stored annotation (annotation.completion and annotation.prompt)")
    return record


def reparse_record(record: dict, *, max_items: int = DEFAULT_MAX_ITEMS, case_fallback: bool = False) -> dict:
    """Parse the stored answer of an annotated record again (current parser; no model)."""
    ann = check_stored(record)["annotation"]
    return annotate_record(record, ann["completion"], ann["prompt"], backend=ann.get("backend", "?"),
                           model=ann.get("model", "?"), finish_reason=ann.get("finish_reason"),
                           max_items=max_items, case_fallback=case_fallback)


def has_concept_concept(rec: dict) -> bool:
    return any(it["label"].strip().lower() == "concept" for it in rec["annotation"]["items"])


def _count(stats: RunStats, rec: dict) -> None:
    c = rec["meta"]["annotate"]
    stats.items += c["items"]
    stats.placed += c["placed"]
    stats.not_found += c["not_found"]
    stats.unknown_label += c["unknown_label"]
    stats.overlap += c["overlap"]
    stats.ignore_case += c.get("ignore_case", 0)


def annotate_stream(records: Iterable[dict], prompt: PromptTemplate | None, backend, write: Callable[[dict], None],
                    *, reparse: bool = False, skip_ids: set | frozenset = frozenset(),
                    drop_concept: bool = True, max_items: int = DEFAULT_MAX_ITEMS, case_fallback: bool = False,
                    bar=None, stats: RunStats | None = None) -> RunStats:
    """Annotate ``records`` and ``write`` each result, in input order.

    ``skip_ids``: ids already annotated (``--resume``). A fatal backend answer (endpoint down
    after its retries) stops the run after writing every answer already received; it is
    recorded in ``stats.fatal`` (the caller raises).
    """
    stats = stats or RunStats()
    t0 = time.perf_counter()
    prompt_id = prompt.identity() if prompt is not None else None

    def finish(rec: dict) -> None:
        if drop_concept and prompt_id_of(rec)["parser"] == "nuner" and has_concept_concept(rec):
            stats.dropped_concept += 1
        else:
            _count(stats, rec)
            write(rec)
            stats.records += 1
        if bar is not None:
            bar.update(1)

    def todo() -> Iterator[dict]:
        for rec in records:
            if rec.get("id") in skip_ids:
                stats.skipped_resume += 1
                continue
            yield rec

    try:
        if reparse:
            for rec in todo():
                finish(reparse_record(rec, max_items=max_items, case_fallback=case_fallback))
            return stats
        assert prompt is not None and backend is not None
        pending: dict[int, dict] = {}

        def jobs() -> Iterator[tuple[tuple[int, Any], list]]:
            for i, rec in enumerate(todo()):
                pending[i] = rec
                yield (i, rec.get("id")), prompt.render(rec["text"])

        for (i, _), ans in backend.run(jobs()):
            rec = pending.pop(i)
            if ans.cached:
                stats.cache_hits += 1
            if ans.content is None:
                if ans.fatal:
                    stats.fatal = stats.fatal or ans.error
                    continue
                stats.failed += 1
                stats.first_failure = stats.first_failure or f"id {rec.get('id')!r}: {ans.error}"
                if bar is not None:
                    bar.update(1)
                continue
            finish(annotate_record(rec, ans.content, prompt_id, backend=backend.name, model=backend.model_name,
                                   finish_reason=ans.finish_reason, max_items=max_items,
                                   case_fallback=case_fallback))
            if bar is not None:
                bar.set_postfix(cache=stats.cache_hits, failed=stats.failed, refresh=False)
        return stats
    finally:
        stats.seconds = time.perf_counter() - t0


def prompt_id_of(rec: dict) -> dict:
    return rec["annotation"]["prompt"]


# --------------------------------------------------------------------------- resumable output

# ``--resume`` onto an output without a progress journal: the shared append-only machinery
# (nertools.core.resume), re-exported here where ner-annotate's callers find it.
from nertools.core.resume import AppendWriter, done_ids  # noqa: E402,F401
