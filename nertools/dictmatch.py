"""Deprecated import path: use :mod:`nertools.gener.dictmatch`. Kept for one release."""

import sys
import warnings

from nertools import gener  # noqa: F401
from nertools.gener import dictmatch as _new

warnings.warn("nertools.dictmatch moved to nertools.gener.dictmatch", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
