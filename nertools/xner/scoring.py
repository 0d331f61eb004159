"""X-NER span scoring with either kind of language model: what ``ner-divscore`` runs.

:func:`divscore` is the command's library form: records with candidates (``ner-spans``) in,
the same records with ``"scores": {label: float}`` on every candidate out (lower = more like
the seed). :func:`make_scorer` picks the scorer for a loaded model's kind
(:class:`~nertools.xner.masked.MaskedDivergenceScorer` or
:class:`~nertools.xner.causal.CausalDivergenceScorer`); options left at ``None`` take that
scorer's own default (:func:`scorer_default`), so the defaults live in the scorers only.

    from nertools.core.jsonl import read_records
    from nertools.xner.scoring import divscore
    from nertools.xner.seeds import collect_seeds

    seeds = collect_seeds(["PER=Masaki Yoshida", "LOC=Singapore"])
    for rec in divscore(read_records("candidates.jsonl"), seeds, model="smollm2-135m"):
        ...
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any, Iterable, Iterator, Mapping, Sequence

from nertools.errors import UsageError
from nertools.runtime.models import CAUSAL, MASKED
from nertools.xner import causal, fast, masked
from nertools.xner.multiseed import DEFAULT_COMBINE, SeedGroups
from nertools.xner.seeds import Seed

#: Every method of either scorer (the causal one has all but ``official``).
METHODS = masked.METHODS
CONTEXTS = masked.CONTEXTS
CAUSAL_ROWS = causal.ROWS
DEFAULT_MODEL = "roberta-large"

_SCORERS = {MASKED: masked.MaskedDivergenceScorer, CAUSAL: causal.CausalDivergenceScorer}


def scorer_default(kind: str, option: str) -> Any:
    """The default of scorer option ``option`` (e.g. ``"batch_tokens"``) for a model ``kind``.

    The causal scorer's temperature default depends on the method; this returns that of the
    divergence methods (:data:`nertools.xner.causal.DEFAULT_TEMPERATURE`).
    """
    if kind == CAUSAL and option == "temperature":
        return causal.DEFAULT_TEMPERATURE
    return inspect.signature(_SCORERS[kind]).parameters[option].default


def with_label_words(seeds: Sequence[Seed], label_words: Mapping[str, str] | None,
                     *, option: str = "--label-word") -> list[Seed]:
    """``seeds`` with the label words of ``label_words`` (label -> word) put in.

    A word for a label without a seed is a :class:`~nertools.errors.UsageError`.
    """
    label_words = dict(label_words or {})
    known = {s.label for s in seeds}
    unknown = sorted(set(label_words) - known)
    if unknown:
        raise UsageError(f"{option} for label(s) without a seed: {', '.join(unknown)} "
                         f"(seeded labels: {', '.join(sorted(known))})")
    return [replace(s, label_word=label_words.get(s.label, s.label_word)) for s in seeds]


#: The methods whose ``template`` is the template test's, which needs a ``[SEED]`` slot.
TEMPLATE_METHODS = ("2way", "official")


def check_template(method: str, template: str | None, *, option: str = "--template") -> None:
    """A template for the template test (``method`` 2way or official) must contain ``[SEED]``:
    otherwise a :class:`~nertools.errors.UsageError`, found before any model is loaded."""
    if template is not None and method in TEMPLATE_METHODS and "[SEED]" not in template:
        raise UsageError(f"{option} {template!r} has no [SEED] slot (the seed or span goes there)")


def make_scorer(lm, seeds: Sequence[Seed], *, method: str = "2way", template: str | None = None,
                temperature: float | None = None, batch_tokens: int | None = None,
                context: str = "neighbours", causal_rows: str = "next", start_token: str | None = "auto",
                progress: bool = False):
    """The scorer for ``lm``'s kind (a :class:`~nertools.runtime.models.LoadedLM`).

    ``template`` is the template test's template, or the prompt with ``method="prompt"``;
    ``context`` applies to masked LMs, ``causal_rows`` and ``start_token`` to causal LMs.
    ``None`` means the scorer's default (:func:`scorer_default`).
    """
    check_template(method, template)
    if lm.kind == CAUSAL:
        if method == "official":
            raise UsageError("--method official reproduces the released masked-LM code; "
                             "use a masked LM (e.g. roberta-large) or another method")
        kwargs: dict[str, Any] = {"method": method, "rows": causal_rows, "progress": progress,
                                  "start_token": start_token}
        if template is not None:
            kwargs["prompt_template" if method == "prompt" else "template"] = template
    else:
        kwargs = {"method": method, "template": template, "context": context, "progress": progress}
    if temperature is not None:
        kwargs["temperature"] = temperature
    if batch_tokens is not None:
        kwargs["batch_tokens"] = batch_tokens
    return _SCORERS[CAUSAL if lm.kind == CAUSAL else MASKED](lm, list(seeds), **kwargs)


def check_fast_options(method: str, cascade: str | None, cascade_keep: float, quantize: str,
                       cascade_quantize: str = "none") -> float:
    """Validate the fast-mode options before any model is loaded; returns the keep fraction.

    A bad value is a :class:`~nertools.errors.UsageError` (exit 2 in the command)."""
    keep = fast.check_keep(cascade_keep)
    if cascade is not None:
        if cascade not in fast.CASCADE_METHODS:
            raise UsageError(f"unknown --cascade {cascade!r} (choose from {', '.join(fast.CASCADE_METHODS)})")
        if cascade == method:
            raise UsageError(f"--cascade {cascade} ranks with the method it would re-score (--method {method})")
        if method not in ("2way", "official"):
            raise UsageError(f"--cascade re-scores with the 2-way test (--method 2way or official), "
                             f"not --method {method}")
    if quantize not in fast.QUANTIZE:
        raise UsageError(f"unknown --quantize {quantize!r} (choose from {', '.join(fast.QUANTIZE)})")
    if cascade_quantize not in fast.QUANTIZE:
        raise UsageError(f"unknown --cascade-quantize {cascade_quantize!r} "
                         f"(choose from {', '.join(fast.QUANTIZE)})")
    return keep
def _load_fast(seeds, model, label_words, device, dtype, method, cascade, cascade_keep, quantize,
               cascade_quantize, options):
    """Checked seeds, the (quantised) model, the cascade's cheap-pass model and the keep fraction."""
    from nertools.runtime.models import load_lm

    seeds = with_label_words(seeds, label_words)
    check_template(method, options.get("template"))
    keep = check_fast_options(method, cascade, cascade_keep, quantize, cascade_quantize)
    lm = load_lm(model, device=device, dtype=dtype) if isinstance(model, str) else model
    lm = fast.quantize_lm(lm, quantize)
    cheap_lm = lm
    if cascade is not None and cascade_quantize != "none":
        import copy

        cheap_lm = fast.quantize_lm(replace(lm, model=copy.deepcopy(lm.model)), cascade_quantize)
    return seeds, lm, cheap_lm, keep


def block_scorer(seeds: Sequence[Seed], *, model: Any = DEFAULT_MODEL,
                 label_words: Mapping[str, str] | None = None, device: str = "auto", dtype: str = "auto",
                 method: str = "2way", cascade: str | None = None,
                 cascade_keep: float = fast.DEFAULT_CASCADE_KEEP, quantize: str = "none",
                 cascade_quantize: str = "none", cascade_stats: dict | None = None,
                 seed_combine: str = DEFAULT_COMBINE, **options: Any):
    """A function ``score(records) -> list`` that scores one block of records with a fresh
    scorer (its own batches and caches), so a block's scores do not depend on the blocks
    before it: what ``ner-divscore`` runs for ``--resume``, ``--shard`` and ``--backend ray``
    (nertools.core.resume). The model is loaded and the options checked now; ``score.lm`` is
    the loaded model. The fast-mode options are :func:`divscore`'s; with ``cascade`` each block
    is one cascade (the keep fraction holds per block). Several seeds of one label are scored
    each on its own and combined by ``seed_combine`` (:mod:`nertools.xner.multiseed`)."""
    groups = SeedGroups(seeds, seed_combine)
    seeds, lm, cheap_lm, keep = _load_fast(groups.internal, model, label_words, device, dtype, method, cascade,
                                           cascade_keep, quantize, cascade_quantize, options)
    make_scorer(lm, seeds, method=method, **options)  # bad options fail before the first block
    cheap_options = {k: v for k, v in options.items() if k != "template"}

    def score(records: Iterable[dict]) -> list[dict]:
        exact = make_scorer(lm, seeds, method=method, progress=False, **options)
        if cascade is None:
            return list(groups.fold_all(exact.score_records(records)))
        cheap = make_scorer(cheap_lm, seeds, method=cascade, progress=False, **cheap_options)
        return list(groups.fold_all(fast.cascade_scores(records, cheap, exact, [s.label for s in seeds],
                                                        keep=keep, stats=cascade_stats)))

    score.lm = lm
    return score


def divscore(records: Iterable[dict], seeds: Sequence[Seed], *, model: Any = DEFAULT_MODEL,
             label_words: Mapping[str, str] | None = None, device: str = "auto", dtype: str = "auto",
             method: str = "2way", progress: bool = False, cascade: str | None = None,
             cascade_keep: float = fast.DEFAULT_CASCADE_KEEP, cascade_block: int | None = None,
             quantize: str = "none", cascade_quantize: str = "none", cascade_stats: dict | None = None,
             block_records: int | None = None, seed_combine: str = DEFAULT_COMBINE,
             **options: Any) -> Iterator[dict]:
    """``ner-divscore``: score every candidate of ``records`` against the seeds of each label
    (one, as X-NER; or several, combined by ``seed_combine``: :mod:`nertools.xner.multiseed`).

    ``model`` is a name, folder, GGUF file or alias (loaded with
    :func:`~nertools.runtime.models.load_lm` on ``device``/``dtype``) or a loaded LM.
    ``label_words`` (label -> word) overrides what templates say for a label. ``options``
    are :func:`make_scorer`'s. The model is loaded and the scorer built now; the returned
    iterator yields the records, in input order, as they are scored.

    Fast mode (:mod:`nertools.xner.fast`): ``cascade`` (``"1way"`` or ``"cosine"``) ranks every
    candidate with that cheap method and re-scores the best ``cascade_keep`` fraction per label
    with ``method`` (the whole input, or each ``cascade_block`` records, is read first;
    ``cascade_stats``, a dict, receives counts; ``cascade_quantize`` runs the cheap pass on an
    int8 copy of the model, the exact pass keeps the model as loaded); ``quantize``
    (``"int8"``, ``"int8-all"``) quantises the model's linear layers on CPU. ``block_records``: score
    blocks of that many records each on its own (:func:`block_scorer`; the scores ``ner-divscore``
    writes, whose bytes a resumed or sharded run reproduces).
    """
    if block_records is not None:
        from nertools.core.shard import blocks

        score = block_scorer(seeds, model=model, label_words=label_words, device=device, dtype=dtype,
                             method=method, cascade=cascade, cascade_keep=cascade_keep, quantize=quantize,
                             cascade_quantize=cascade_quantize, cascade_stats=cascade_stats,
                             seed_combine=seed_combine, **options)
        return (rec for block in blocks(records, block_records) for rec in score(block))

    groups = SeedGroups(seeds, seed_combine)
    seeds, lm, cheap_lm, keep = _load_fast(groups.internal, model, label_words, device, dtype, method, cascade,
                                           cascade_keep, quantize, cascade_quantize, options)
    scorer = make_scorer(lm, seeds, method=method, progress=progress, **options)
    if cascade is None:
        return groups.fold_all(scorer.score_records(records))
    cheap = make_scorer(cheap_lm, seeds, method=cascade, progress=progress,
                        **{k: v for k, v in options.items() if k != "template"})
    return groups.fold_all(fast.cascade_scores(records, cheap, scorer, [s.label for s in seeds], keep=keep,
                                               block=cascade_block, stats=cascade_stats))
