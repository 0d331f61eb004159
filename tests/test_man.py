"""Generated files are up to date: man pages (scripts/generate_man.py) and bin/ (generate_bin.py)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_man_pages_are_up_to_date():
    proc = subprocess.run([sys.executable, "scripts/generate_man.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for page in ("ner-validate.1", "ner-convert.1", "ner-eval.1", "nertools-format.5"):
        assert (ROOT / "man" / page).exists()


def test_bin_is_up_to_date():
    proc = subprocess.run([sys.executable, "scripts/generate_bin.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_format_page_comes_from_the_code():
    from nertools.errors import EXIT_DATA
    from nertools.core.record import DEFAULT_TOKEN_SYNTAX

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import generate_man
    finally:
        sys.path.pop(0)
    page = generate_man.render_format_page(["ner-eval"])
    assert generate_man.esc(DEFAULT_TOKEN_SYNTAX) in page
    assert f".B {EXIT_DATA}" in page and ".SH VALIDATION" in page
    assert generate_man.esc("--help") == "\\-\\-help"
    assert generate_man.esc(".x\n'y") == "\\&.x\n\\&'y"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("page", ["ner-eval.1", "ner-convert.1", "nertools-format.5"])
def test_pages_render_without_warnings(page):
    proc = subprocess.run(["groff", "-man", "-Tutf8", "-ww", str(ROOT / "man" / page)],
                          capture_output=True)
    assert proc.returncode == 0 and proc.stderr == b""
    text = re.sub(".\b", "", proc.stdout.decode("utf-8", "replace"))  # drop bold/underline overstrike
    for section in ("NAME", "SYNOPSIS" if page.endswith(".1") else "VALIDATION", "EXIT STATUS"):
        assert section in text
    if page == "ner-eval.1":
        assert "EXAMPLES" in text and "--k-frac" in text.replace("\u2010", "-")
