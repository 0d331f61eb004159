"""Deprecated import path: use :mod:`nertools.xner.candidates`. Kept for one release."""

import sys
import warnings

from nertools import xner  # noqa: F401
from nertools.xner import candidates as _new

warnings.warn("nertools.spans moved to nertools.xner.candidates", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
