"""Command-line behaviour shared by every command, through the real console scripts."""

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[1]
GOOD = '{"id": "r%d", "text": "Ann met Bo", "spans": [{"start": 0, "end": 3, "label": "PER"}]}\n'


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def one_line_error(proc, prog):
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"{prog}: error: ")
    assert "Traceback" not in proc.stderr


def test_broken_json_exit_65_with_complete_lines_only(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(GOOD % 1 + GOOD % 2 + '{"id": "r3", "text": \n' + GOOD % 4)
    proc = run(["ner-validate", str(src)])
    assert proc.returncode == 65
    one_line_error(proc, "ner-validate")
    assert f"{src}:3: broken JSON" in proc.stderr
    lines = proc.stdout.splitlines(keepends=True)
    assert len(lines) == 2 and all(line.endswith("\n") for line in lines)
    assert [orjson.loads(line)["id"] for line in lines] == ["r1", "r2"]


def test_stdin_out_of_range_span_and_empty_input():
    bad = GOOD % 1 + '{"text": "a", "spans": [{"start": 0, "end": 4, "label": "X"}]}\n'
    proc = run(["ner-validate", "-"], input=bad)
    assert proc.returncode == 65
    one_line_error(proc, "ner-validate")
    assert "<stdin>:2: span 0 [0, 4) is out of range" in proc.stderr
    proc = run(["ner-validate"], input="")
    assert proc.returncode == 65 and "<stdin>: no records (empty input)" in proc.stderr


def test_failed_run_keeps_the_existing_output_file(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    src = tmp_path / "in.jsonl"
    src.write_text(GOOD % 1 + "{broken\n")
    proc = run(["ner-validate", str(src), "-o", str(out)])
    assert proc.returncode == 65 and out.read_text() == "precious\n"
    proc = run(["ner-validate", str(src), "-o", str(out), "--on-error", "skip"])
    assert proc.returncode == 0
    assert "ner-validate: skipped 1 bad record(s); first: " in proc.stderr
    assert orjson.loads(out.read_text())["id"] == "r1"


def test_head_ends_quietly(tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_text("".join(GOOD % i for i in range(30000)))
    proc = subprocess.run(f"ner-validate {big} | head -1; echo \"rc=${{PIPESTATUS[0]}}\"",
                          shell=True, executable="/bin/bash", capture_output=True, text=True)
    out = proc.stdout.splitlines()
    assert orjson.loads(out[0])["id"] == "r0"
    assert out[1] == "rc=0" and proc.stderr == ""


@pytest.mark.parametrize("prog", ["ner-validate", "ner-convert", "ner-eval"])
def test_help_has_examples_and_usage_errors_exit_2(prog):
    proc = run([prog, "--help"])
    assert proc.returncode == 0 and "Examples:" in proc.stdout and f"{prog} " in proc.stdout
    proc = run([prog, "--no-such-option"])
    assert proc.returncode == 2


def test_bin_wrapper_runs_from_the_checkout():
    proc = run([sys.executable, str(ROOT / "bin" / "ner-validate"), "-"], input=GOOD % 1)
    assert proc.returncode == 0 and orjson.loads(proc.stdout)["tokens"][2]["text"] == "Bo"
