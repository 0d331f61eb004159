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


# --- In CI a skip is a failure ---------------------------------------------------------------
# CI sets CI=true. A skipped test there means something the suite needs is missing (../shared, a
# model package, a tool): the run fails and lists every skip, including module-level
# importorskip and fixture skips, so a green CI never hides untested code.

def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


_SKIPS: list[str] = []


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2])
    return str(longrepr)


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPS.append(f"{report.nodeid}: {_skip_reason(report)}")


def pytest_collectreport(report):
    if report.skipped:
        _SKIPS.append(f"{report.nodeid} (whole module): {_skip_reason(report)}")


def pytest_sessionfinish(session, exitstatus):
    if _in_ci() and _SKIPS and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _in_ci() and _SKIPS:
        terminalreporter.section("skipped tests fail in CI (CI is set)", sep="=", red=True, bold=True)
        for line in _SKIPS:
            terminalreporter.line(f"SKIPPED (counts as a failure) {line}", red=True)
        terminalreporter.line(f"{len(_SKIPS)} skip(s): install what they need (make models, ../shared) "
                              "or unset CI to run locally with skips")


@pytest.fixture(autouse=True)
def _not_quiet():
    """Each test starts with progress and log lines on: ``-q`` in an in-process CLI run sets a
    process-wide switch (nertools.runtime.progress), which must not leak into the next test."""
    from nertools.runtime.progress import set_quiet

    set_quiet(False)
    yield
    set_quiet(False)
