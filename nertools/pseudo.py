"""Deprecated import path: use :mod:`nertools.xner.pseudo`. Kept for one release."""

import sys
import warnings

from nertools import xner  # noqa: F401
from nertools.xner import pseudo as _new

warnings.warn("nertools.pseudo moved to nertools.xner.pseudo", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
