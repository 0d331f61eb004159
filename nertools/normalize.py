"""Deprecated import path: use :mod:`nertools.gener.phrase_rules`. Kept for one release."""

import sys
import warnings

from nertools import gener  # noqa: F401
from nertools.gener import phrase_rules as _new

warnings.warn("nertools.normalize moved to nertools.gener.phrase_rules", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
