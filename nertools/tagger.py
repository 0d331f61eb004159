"""Deprecated import path: use :mod:`nertools.tagging.tagger`. Kept for one release."""

import sys
import warnings

from nertools import tagging  # noqa: F401
from nertools.tagging import tagger as _new

warnings.warn("nertools.tagger moved to nertools.tagging.tagger", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
