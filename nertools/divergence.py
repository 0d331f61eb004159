"""Deprecated import path: use :mod:`nertools.xner.masked`. Kept for one release."""

import sys
import warnings

from nertools import xner  # noqa: F401
from nertools.xner import masked as _new

warnings.warn("nertools.divergence moved to nertools.xner.masked", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
