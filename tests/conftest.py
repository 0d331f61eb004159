"""Shared pytest fixtures. Add NEW fixture functions only; do not change existing ones."""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """/work/shared/data (real NER corpora, see ../shared/README.md); skips when absent."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not available")
    return path
