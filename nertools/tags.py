"""Deprecated import path: use :mod:`nertools.core.tags`. Kept for one release."""

import sys
import warnings

from nertools import core  # noqa: F401
from nertools.core import tags as _new

warnings.warn("nertools.tags moved to nertools.core.tags", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
