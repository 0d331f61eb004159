"""Deprecated import path: use :mod:`nertools.gener.dictionary`. Kept for one release."""

import sys
import warnings

from nertools import gener  # noqa: F401
from nertools.gener import dictionary as _new

warnings.warn("nertools.dictionary moved to nertools.gener.dictionary", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
