"""A shared prompt prefix run once: its key-value cache, reused by every row of a batch.

Used where many prompts start with the same tokens (an instruction and a demonstration):
``ner-annotate``'s local backend (generation) and ``ner-align choose``'s local chooser
(scoring). The prefix is run at batch size 1 with positions ``0..L-1``, exactly as inside
each full prompt, and its cache is copied and repeated along the batch for each use, so
the rows' results are those of the full prompts (up to float summation order).
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Sequence

from nertools.errors import NertoolsError


def cache_kwarg(model) -> str:
    """The forward/generate argument that takes a key-value cache (``cache`` in
    transformers >= 5.2x, ``past_key_values`` before)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def common_prefix_length(seqs: Sequence[Sequence[int]], keep: int = 1) -> int:
    """The length of the longest common prefix of ``seqs``, leaving at least ``keep``
    tokens of each sequence after it (0 for no sequences)."""
    if not seqs:
        return 0
    first = seqs[0]
    limit = min(len(s) for s in seqs) - keep
    n = 0
    while n < limit and all(s[n] == first[n] for s in seqs):
        n += 1
    return max(n, 0)


def prefix_cache(lm, ids: Sequence[int]) -> Any:
    """The key-value cache of ``ids`` (one row) under ``lm`` (a :class:`LoadedLM`)."""
    import torch

    with torch.no_grad():  # not inference_mode: the copies are used outside it too
        out = lm.model(input_ids=torch.tensor([list(ids)], device=lm.device), use_cache=True)
    past = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    if past is None or not hasattr(past, "batch_repeat_interleave"):
        raise NertoolsError(f"{lm.name}: the model returned no reusable key-value cache "
                            "(turn the prefix cache off)")
    return past


def repeated(past: Any, rows: int) -> Any:
    """A copy of a one-row cache, repeated to ``rows`` rows (the original stays as it was)."""
    cache = copy.deepcopy(past)
    if rows != 1:
        cache.batch_repeat_interleave(rows)
    return cache
