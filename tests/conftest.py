"""Shared pytest fixtures."""

import os
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"

# The end-to-end tests run the real console scripts by name (ner-eval, ner-spans, ...). They
# live beside the interpreter that runs pytest (.venv/bin), which need not be on PATH when
# pytest is started as `.venv/bin/python -m pytest` (make test, CI).
_SCRIPTS = str(Path(sys.executable).parent)
if _SCRIPTS not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _SCRIPTS + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real NER corpora, see ../shared/README.md); skips when absent."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not available")
    return path
