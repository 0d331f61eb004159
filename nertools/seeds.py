"""Deprecated import path: the contents moved to nertools.core.labels, nertools.xner.seeds.

Kept for one release."""
import warnings
from nertools.core.labels import (DEFAULT_LABEL_WORDS, default_label_word)  # noqa: F401
from nertools.xner.seeds import (PAPER_SEEDS, Seed, _seed_from_fields, _seed_from_json, collect_seeds, parse_seed, read_seeds_file)  # noqa: F401

warnings.warn("nertools.seeds moved to nertools.core.labels, nertools.xner.seeds", DeprecationWarning, stacklevel=2)
