"""Deprecated import path: use :mod:`nertools.core.record`. Kept for one release."""

import sys
import warnings

from nertools import core  # noqa: F401
from nertools.core import record as _new

warnings.warn("nertools.record moved to nertools.core.record", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
