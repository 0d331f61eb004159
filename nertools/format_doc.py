"""Deprecated import path: use :mod:`nertools.core.format_doc`. Kept for one release."""

import sys
import warnings

from nertools import core  # noqa: F401
from nertools.core import format_doc as _new

warnings.warn("nertools.format_doc moved to nertools.core.format_doc", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
