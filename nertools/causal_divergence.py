"""Deprecated import path: use :mod:`nertools.xner.causal`. Kept for one release."""

import sys
import warnings

from nertools import xner  # noqa: F401
from nertools.xner import causal as _new

warnings.warn("nertools.causal_divergence moved to nertools.xner.causal", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
