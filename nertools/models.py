"""Deprecated import path: use :mod:`nertools.runtime.models`. Kept for one release."""

import sys
import warnings

from nertools import runtime  # noqa: F401
from nertools.runtime import models as _new

warnings.warn("nertools.models moved to nertools.runtime.models", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
