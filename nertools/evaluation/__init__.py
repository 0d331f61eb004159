"""Scoring predictions: strict entity-level P/R/F1 and ranked candidate lists (``ner-eval``).

- :mod:`nertools.evaluation.matching` reads gold and predictions and pairs records by id;
- :mod:`nertools.evaluation.strict` is :func:`evaluate` (strict P/R/F1);
- :mod:`nertools.evaluation.ranked` is :func:`evaluate_ranked` (precision@K, candidate recall).
"""

from nertools.evaluation.matching import MISSING_CHOICES, numbered_records, span_keys
from nertools.evaluation.ranked import evaluate_ranked
from nertools.evaluation.strict import evaluate, prf

__all__ = ["MISSING_CHOICES", "evaluate", "evaluate_ranked", "numbered_records", "prf", "span_keys"]
