"""Deprecated import path: use :mod:`nertools.tagging.bond`. Kept for one release."""

import sys
import warnings

from nertools import tagging  # noqa: F401
from nertools.tagging import bond as _new

warnings.warn("nertools.bond moved to nertools.tagging.bond", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
