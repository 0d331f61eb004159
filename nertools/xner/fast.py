"""X-NER fast scoring: a cascade of a cheap score and the exact test, and int8 models on CPU.

The exact 2-way test (sentence test + template test) is what ``ner-divscore`` runs by default.
Most candidates of a corpus are clearly not entities of a label, and only the best-ranked ones
matter to ``ner-pseudo --top-k``. The **cascade** (:func:`cascade_scores`) therefore

1. scores every candidate with a cheap method (``1way``: the sentence test alone; ``cosine``:
   1 - cosine of hidden states), with the same model;
2. per label, keeps the ``keep`` fraction of candidates the cheap score ranks best
   (:func:`keep_count` = ceil(keep x candidates), at least one; ties broken by input order);
3. runs the exact method (normally ``2way``) on the candidates kept for at least one label,
   and writes, per label, the exact score on the candidates kept for that label;
4. gives every other candidate a score that ranks it after every re-scored one, in the
   order of its cheap score: ``M + GAP + (cheap - C)``, where ``M`` is the largest finite
   exact score kept for the label, ``C`` the smallest finite cheap score not kept, and
   ``GAP`` = :data:`GAP` x max(1, |M|). A candidate whose cheap score is not finite keeps the
   non-finite sentinel. Scores stay "lower = more like the seed" and comparable within a
   label; a rest score is not a divergence of the exact test (only its rank means anything).

The cascade ranks over everything it is given, so it reads the whole input before it writes
(memory grows with the input, unlike the exact mode, which streams); ``block`` (records)
ranks each block of that many records on its own instead (the fraction then holds per block).

:func:`quantize_lm` replaces the linear layers of a CPU float32 model by int8 dynamically
quantised ones (``torch.ao.quantization.quantize_dynamic``): ``int8`` quantises the
transformer body and keeps the LM head (the layer whose output distributions are compared)
in float32; ``int8-all`` quantises the head as well. Measured (README): as fast as bfloat16 on
this CPU but it reorders the ranking (12.5% of the exact top-K kept), so bfloat16 is the
precision to trade; int8 stays available for CPUs without bfloat16 arithmetic.
"""

from __future__ import annotations

import math
from itertools import islice
from typing import Iterable, Iterator, Sequence

from nertools.core.format_doc import NON_FINITE_SCORE, settle_scores
from nertools.errors import UsageError

#: Cheap methods a cascade can rank with.
CASCADE_METHODS = ("1way", "cosine")
#: Fraction of candidates per label that the cascade re-scores exactly by default (from
#: benchmarks/xner_fastmode.py, 1,000 CoNLL train sentences, K = 80, with --dtype bfloat16:
#: 0.2 keeps 96.6% (SmolLM2) / 97.5% (gemma-3-270m) of the exact top-K with P@K within 2 / 4
#: points; 0.1 keeps 95.0 / 92.8% but costs gemma's ORG 11 points of raw P@K; README, "Fast
#: scoring mode").
DEFAULT_CASCADE_KEEP = 0.2
#: Relative gap between the worst re-scored candidate and the best candidate that was not.
GAP = 1e-6
#: Candidate key the cascade sets on its copies for the exact pass: the labels to score (a
#: scorer that knows it, the causal one, computes only those; others score every label).
ONLY_LABELS_KEY = "_only_labels"
#: ``--quantize`` choices.
QUANTIZE = ("none", "int8", "int8-all")


def check_keep(keep: float, *, option: str = "--cascade-keep") -> float:
    """``keep`` as a float in (0, 1], else a :class:`~nertools.errors.UsageError`."""
    try:
        value = float(keep)
    except (TypeError, ValueError):
        raise UsageError(f"{option} must be a number in (0, 1], not {keep!r}") from None
    if not (0.0 < value <= 1.0):  # also rejects NaN
        raise UsageError(f"{option} must be in (0, 1], not {keep!r}")
    return value


def keep_count(n: int, keep: float) -> int:
    """How many of ``n`` candidates a label keeps: ceil(keep x n), at least 1 (0 when n = 0)."""
    if n <= 0:
        return 0
    # round first so that 0.1 x 30 (3.0000000000000004 in binary) keeps 3, not 4
    return min(n, max(1, math.ceil(round(keep * n, 9))))


def _finite(v: float) -> bool:
    return math.isfinite(v) and v < NON_FINITE_SCORE


def select_kept(cheap: Sequence[Sequence[dict]], labels: Sequence[str], keep: float) -> dict[str, set]:
    """Per label, the set of ``(record, candidate)`` indices whose cheap score ranks in the best
    :func:`keep_count` (lower = better; ties by input order)."""
    flat = [(ri, ci) for ri, rec in enumerate(cheap) for ci in range(len(rec))]
    kept = {}
    for lab in labels:
        order = sorted(flat, key=lambda rc: (cheap[rc[0]][rc[1]][lab], rc[0], rc[1]))
        kept[lab] = set(order[:keep_count(len(flat), keep)])
    return kept


def combine(cheap: Sequence[Sequence[dict]], exact: dict[tuple[int, int], dict], kept: dict[str, set],
            labels: Sequence[str]) -> list[list[dict]]:
    """Per record, per candidate, the cascade's ``{label: score}`` (see the module doc, step 4).

    ``exact`` maps ``(record, candidate)`` to the exact scores of a candidate kept for at
    least one label."""
    out = [[{} for _ in rec] for rec in cheap]
    for lab in labels:
        keep = kept[lab]
        exact_vals = [exact[rc][lab] for rc in keep]
        finite = [v for v in exact_vals if _finite(v)]
        top = max(finite) if finite else 0.0
        rest = [cheap[ri][ci][lab] for ri, rec in enumerate(cheap) for ci in range(len(rec))
                if (ri, ci) not in keep and _finite(cheap[ri][ci][lab])]
        low = min(rest) if rest else 0.0
        gap = GAP * max(1.0, abs(top))
        for ri, rec in enumerate(cheap):
            for ci in range(len(rec)):
                if (ri, ci) in keep:
                    out[ri][ci][lab] = exact[(ri, ci)][lab]
                else:
                    v = cheap[ri][ci][lab]
                    out[ri][ci][lab] = top + gap + (v - low) if _finite(v) else NON_FINITE_SCORE
    return out


def _copy(rec: dict, indices: Iterable[int] | None = None) -> dict:
    cands = rec.get("candidates") or []
    if indices is None:
        indices = range(len(cands))
    return dict(rec, candidates=[dict(cands[ci]) for ci in indices])


def cascade_scores(records: Iterable[dict], cheap_scorer, exact_scorer, labels: Sequence[str], *,
                   keep: float = DEFAULT_CASCADE_KEEP, block: int | None = None,
                   stats: dict | None = None) -> Iterator[dict]:
    """Yield ``records`` in order with the cascade's per-label ``scores`` on every candidate.

    ``cheap_scorer`` and ``exact_scorer`` are scorers (``score_records``) of the same seeds;
    ``labels`` their labels. ``block``: rank each block of that many records separately
    (``None``: the whole input). ``stats`` (a dict) receives counts: candidates, exactly
    re-scored candidates, kept pairs.
    """
    keep = check_keep(keep, option="keep")
    it = iter(records)
    while True:
        part = list(islice(it, block)) if block else list(it)
        if not part:
            return
        yield from _cascade_block(part, cheap_scorer, exact_scorer, labels, keep, stats)
        if not block:
            return


def _cascade_block(records: list[dict], cheap_scorer, exact_scorer, labels, keep, stats) -> Iterator[dict]:
    cheap = [[c["scores"] for c in rec["candidates"]]
             for rec in cheap_scorer.score_records(_copy(r) for r in records)]
    kept = select_kept(cheap, labels, keep)
    union: dict[int, list[int]] = {}
    wanted: dict[tuple[int, int], list[str]] = {}
    for lab in labels:
        for rc in kept[lab]:
            wanted.setdefault(rc, []).append(lab)
    for rc in sorted(wanted):
        union.setdefault(rc[0], []).append(rc[1])
    rows = sorted(union)
    exact: dict[tuple[int, int], dict] = {}

    def subset():
        for ri in rows:
            rec = _copy(records[ri], union[ri])
            for ci, cand in zip(union[ri], rec["candidates"]):
                cand[ONLY_LABELS_KEY] = wanted[(ri, ci)]
            yield rec

    for ri, rec in zip(rows, exact_scorer.score_records(subset())):
        for ci, cand in zip(union[ri], rec["candidates"]):
            exact[(ri, ci)] = cand["scores"]
    final = combine(cheap, exact, kept, labels)
    if stats is not None:
        stats["candidates"] = stats.get("candidates", 0) + sum(len(r) for r in cheap)
        stats["rescored"] = stats.get("rescored", 0) + len(exact)
        stats["kept_pairs"] = stats.get("kept_pairs", 0) + sum(len(k) for k in kept.values())
    for ri, rec in enumerate(records):
        for cand, new in zip(rec.get("candidates") or [], final[ri]):
            scores = dict(cand.get("scores") or {})
            scores.update(new)
            settle_scores(scores)
            cand["scores"] = scores
        yield rec


def quantize_lm(lm, mode: str = "int8"):
    """``lm`` (a :class:`~nertools.runtime.models.LoadedLM`) with int8 dynamically quantised
    linear layers (see the module doc); ``"none"`` returns it unchanged. CPU and float32 only
    (a :class:`~nertools.errors.UsageError` otherwise: on a GPU use ``--dtype bfloat16``)."""
    if mode in (None, "", "none"):
        return lm
    if mode not in QUANTIZE:
        raise UsageError(f"unknown --quantize {mode!r} (choose from {', '.join(QUANTIZE)})")
    import torch

    if lm.device.type != "cpu":
        raise UsageError(f"--quantize {mode} runs on CPU only (this model is on {lm.device}); "
                         "on a GPU use --dtype bfloat16 or float16")
    if lm.dtype != torch.float32:
        raise UsageError(f"--quantize {mode} needs a float32 model, not {lm.dtype} (leave --dtype at auto)")
    import warnings

    with warnings.catch_warnings():
        # torch 2.10+ marks torch.ao.quantization deprecated (in favour of torchao, not a
        # dependency here); it still works, and the warning would repeat on every load
        warnings.simplefilter("ignore")
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError as e:  # pragma: no cover - every torch this project supports has it
            raise UsageError(f"--quantize {mode}: this torch has no dynamic quantisation ({e})") from None
        return _quantize(lm, mode, quantize_dynamic)


def _quantize(lm, mode, quantize_dynamic):
    import torch
    from dataclasses import replace

    model = lm.model
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if mode == "int8" and head is not None:
        names = {name for name, mod in model.named_modules()
                 if isinstance(mod, torch.nn.Linear) and mod is not head}
        qmodel = quantize_dynamic(model, names, dtype=torch.qint8, inplace=True)
    else:
        qmodel = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return replace(lm, model=qmodel)

