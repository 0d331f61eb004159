"""Deprecated import path: use :mod:`nertools.tagging.train`. Kept for one release."""

import sys
import warnings

from nertools import tagging  # noqa: F401
from nertools.tagging import train as _new

warnings.warn("nertools.train moved to nertools.tagging.train", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
