"""Deprecated import path: the contents moved to nertools.evaluation.matching, nertools.evaluation.ranked, nertools.evaluation.strict.

Kept for one release."""
import warnings
from nertools.evaluation.matching import (MISSING_CHOICES, SHOW_IDS, SpanKey, _index_gold, _key, _matched, _show, _source, numbered_records, span_keys)  # noqa: F401
from nertools.evaluation.ranked import (_candidate_offsets, _k_values, evaluate_ranked)  # noqa: F401
from nertools.evaluation.strict import (evaluate, prf)  # noqa: F401

warnings.warn("nertools.evaluate moved to nertools.evaluation.matching, nertools.evaluation.ranked, nertools.evaluation.strict", DeprecationWarning, stacklevel=2)
