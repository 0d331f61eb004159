"""tests/conftest.py: with CI set, any skipped test (a skip call, a skipif mark, a module-level
importorskip) fails the run and is listed; without CI the same session passes with skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _run(tmp_path: Path, ci: str | None, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if ci is not None:
        env["CI"] = ci
    # load this suite's conftest.py as a plugin into a separate, tiny session
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "-p", "conftest", "--rootdir", str(tmp_path), *extra, str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def _write(tmp_path: Path, skipping: bool) -> None:
    (tmp_path / "test_tiny.py").write_text(
        "import pytest\n"
        "def test_ok():\n    assert 1 + 1 == 2\n"
        + ("def test_skipped():\n    pytest.skip('no such thing here')\n"
           "@pytest.mark.skipif(True, reason='marked away')\ndef test_marked():\n    pass\n" if skipping else ""))
    if skipping:
        (tmp_path / "test_modskip.py").write_text(
            "import pytest\npytest.importorskip('no_such_module_for_nertools')\ndef test_x():\n    pass\n")


def test_ci_fails_on_skips_and_lists_them(tmp_path):
    _write(tmp_path, skipping=True)
    res = _run(tmp_path, "true")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "skipped tests fail in CI" in res.stdout
    listed = [ln for ln in res.stdout.splitlines() if ln.startswith("SKIPPED (counts as a failure)")]
    assert len(listed) == 3, res.stdout
    assert any("test_tiny.py::test_skipped" in ln and "no such thing here" in ln for ln in listed)
    assert any("test_tiny.py::test_marked" in ln and "marked away" in ln for ln in listed)
    assert any("test_modskip.py" in ln and "no_such_module_for_nertools" in ln for ln in listed)


def test_without_ci_skips_pass(tmp_path):
    _write(tmp_path, skipping=True)
    for ci in (None, "false", ""):
        res = _run(tmp_path, ci)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "1 passed, 3 skipped" in res.stdout and "counts as a failure" not in res.stdout


def test_ci_passes_without_skips(tmp_path):
    _write(tmp_path, skipping=False)
    res = _run(tmp_path, "true")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout and "skipped tests fail in CI" not in res.stdout


def test_ci_fails_on_skips_in_xdist_workers_too(tmp_path):
    """make test runs the suite in pytest-xdist workers: their skips reach the controller's hooks."""
    _write(tmp_path, skipping=True)
    res = _run(tmp_path, "true", "-n", "2")
    assert res.returncode == 1, res.stdout + res.stderr
    listed = [ln for ln in res.stdout.splitlines() if ln.startswith("SKIPPED (counts as a failure)")]
    assert len(listed) == 3, res.stdout
    assert any("test_modskip.py" in ln for ln in listed)
