"""The README's Python example runs as written (with the tiny RoBERTa in place of SmolLM2)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT.parent / "shared" / "fixtures" / "xner-official" / "roberta-tiny-random"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_python_example_runs(shared_data):
    assert TINY.is_dir(), "the tiny RoBERTa fixture of ../shared is missing"
    (code,) = python_blocks()
    assert '"smollm2-135m"' in code
    code = code.replace('"smollm2-135m"', f'{str(TINY)!r}, device="cpu"')
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 50 and lines[0].startswith("demo-")
    assert "'PER':" in lines[0]
