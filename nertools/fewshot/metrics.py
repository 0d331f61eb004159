"""Word-level labels and the metrics of the few-shot papers (methods spec §1.3, §1.4).

* :func:`word_labels` — one label (or ``None``) per word of a record, from its spans (IO view;
  of overlapping spans the earlier, then the longer one wins, as a BIO tagger sees them).
* :func:`io_spans` — spans from per-word labels: consecutive words with the same label form
  one span (IO merging; adjacent same-type entities merge, which is inherent to IO).
* :func:`token_scores` — NuNER's token-level macro F1 (each word an instance; F1 per entity
  type; macro-average over the types, the ``None`` class excluded) and LITSET's token-level
  micro F1, with per-label precision/recall/F1.

Pure Python: no torch, no numpy.
"""

from __future__ import annotations

from typing import Iterable, Sequence


def word_labels(record: dict, labels: Iterable[str] | None = None) -> list[str | None]:
    """Per word of ``record``: the label of the span covering it, else ``None``.

    Spans whose label is not in ``labels`` (when given) are ignored. Overlaps are resolved as
    :meth:`nertools.tagging.tagger.LabelScheme.non_overlapping` does: by start, the longer
    first; a span overlapping one already taken is left out.
    """
    keep = None if labels is None else set(labels)
    out: list[str | None] = [None] * len(record["tokens"])
    reach = -1
    for s in sorted(record.get("spans", []), key=lambda s: (s["token_start"], -s["token_end"])):
        if keep is not None and s["label"] not in keep:
            continue
        if s["token_start"] <= reach:
            continue
        for w in range(s["token_start"], s["token_end"] + 1):
            out[w] = s["label"]
        reach = s["token_end"]
    return out


def io_spans(labels: Sequence[str | None]) -> list[tuple[int, int, str]]:
    """``(token_start, token_end, label)`` (inclusive) runs of equal non-``None`` labels."""
    spans = []
    start = None
    for i, lab in enumerate(list(labels) + [None]):
        if start is not None and lab != labels[start]:
            spans.append((start, i - 1, labels[start]))
            start = None
        if lab is not None and start is None:
            start = i
    return spans


def spans_of(record: dict, labels: Sequence[str | None], scores: Sequence[float] | None = None,
             source: str = "probe") -> list[dict]:
    """Canonical spans of ``record`` for per-word ``labels`` (IO merging); ``scores`` (per word)
    gives each span the mean score of its words."""
    toks = record["tokens"]
    out = []
    for a, b, lab in io_spans(labels):
        span = {"start": toks[a]["start"], "end": toks[b]["end"], "token_start": a, "token_end": b,
                "label": lab, "source": source}
        if scores is not None:
            span["score"] = round(sum(scores[a:b + 1]) / (b - a + 1), 6)
        out.append(span)
    return out


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def token_scores(gold: Sequence[Sequence[str | None]], pred: Sequence[Sequence[str | None]],
                 labels: Iterable[str] | None = None) -> dict:
    """Token-level scores of per-word predictions, in percent.

    Every word is one instance with one gold and one predicted class (a type or ``None``).
    Per type: precision/recall/F1 of "this word is of the type". ``macro_f1`` averages the
    per-type F1 over the types that occur in gold or in the predictions (restricted to
    ``labels`` when given; ``None`` is never a class of the average): NuNER's metric.
    ``micro_f1`` pools the counts of all types (a word predicted as the wrong type is a false
    positive of one and a false negative of the other): LITSET's code's metric.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    counts: dict[str, list[int]] = {}    # label -> [tp, fp, fn]
    words = 0
    for g_sent, p_sent in zip(gold, pred):
        if len(g_sent) != len(p_sent):
            raise ValueError(f"a sentence has {len(g_sent)} gold words but {len(p_sent)} predicted")
        words += len(g_sent)
        for g, p in zip(g_sent, p_sent):
            if g == p:
                if g is not None:
                    counts.setdefault(g, [0, 0, 0])[0] += 1
                continue
            if p is not None:
                counts.setdefault(p, [0, 0, 0])[1] += 1
            if g is not None:
                counts.setdefault(g, [0, 0, 0])[2] += 1
    wanted = sorted(counts) if labels is None else [lab for lab in labels if lab in counts]
    per_label = {}
    f1s = []
    for lab in wanted:
        tp, fp, fn = counts[lab]
        p, r, f = _prf(tp, fp, fn)
        f1s.append(f)
        per_label[lab] = {"precision": round(100 * p, 2), "recall": round(100 * r, 2), "f1": round(100 * f, 2),
                          "support": tp + fn}
    macro = 100 * sum(f1s) / len(f1s) if f1s else 0.0
    tp, fp, fn = (sum(counts[lab][i] for lab in wanted) for i in range(3))
    micro = _prf(tp, fp, fn)[2]
    return {"macro_f1": round(macro, 2), "micro_f1": round(100 * micro, 2), "per_label": per_label,
            "words": words}
