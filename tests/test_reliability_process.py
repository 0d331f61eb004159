"""Reliability as a user meets it, with real processes: SIGTERM, a full disk on stdout, the
debug switch, and a record too large for the memory budget (issue 10: D11, B12/D14, D13).

The in-process checks of the same rules for every command are in tests/test_cli_contract.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TINY_ROBERTA = SHARED / "fixtures" / "xner-official" / "roberta-tiny-random"

TEXTS = ["Ann met Bo in Paris .", "Carl visited Rome and Oslo .", "Dora works for Acme in Berlin ."]


def _env(**extra) -> dict:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.pop("NERTOOLS_DEBUG", None)
    for k, v in extra.items():
        env[k] = v
    return env


def _default_signals():  # a child of a shell job may inherit SIGINT/SIGTERM ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _records(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"r{i}", "text": TEXTS[i % 3]}) + "\n" for i in range(n)))
    return path


def _candidates(path: Path, n: int) -> Path:
    from nertools.core.record import normalize_record
    from nertools.xner.candidates import SpanRules, add_candidates

    recs = (normalize_record({"id": f"r{i}", "text": TEXTS[i % 3]}) for i in range(n))
    path.write_text("".join(json.dumps(r) + "\n" for r in add_candidates(recs, SpanRules())))
    return path


def _wait_for(cond, proc, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"ended before {what}: rc={proc.returncode} {err[-2000:]!r}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _finish(proc) -> str:
    try:
        proc.wait(timeout=120)
        return proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for fh in (proc.stdin, proc.stdout, proc.stderr):
            if fh is not None:
                fh.close()


def _assert_terminated(proc, err: str, prog: str) -> None:
    assert proc.returncode == 143, err
    assert "Traceback" not in err and err.endswith(f"{prog}: terminated\n") and err.count("terminated") == 1, err


# ----------------------------------------------------------------------------- D11: SIGTERM

def test_sigterm_validate_with_open_stdin(tmp_path):
    """ner-validate busy with a big standard input that stays open: SIGTERM -> 143, one line,
    the -o target untouched and no temporary file beside it."""
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out.jsonl"
    out.write_text("sentinel\n")
    proc = subprocess.Popen(["ner-validate", "-", "-o", str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(), preexec_fn=_default_signals)
    line = (json.dumps({"text": TEXTS[0]}) + "\n").encode()
    proc.stdin.write(line * 50000)  # ~2 MB: more than one buffer of output
    proc.stdin.flush()
    _wait_for(lambda: len(os.listdir(work)) == 2, proc, "the temporary output file")
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    err = _finish(proc)
    _assert_terminated(proc, err, "ner-validate")
    assert out.read_text() == "sentinel\n" and os.listdir(work) == ["out.jsonl"]


def test_sigterm_pseudo_removes_its_stdin_spool(tmp_path, monkeypatch):
    """ner-pseudo spools standard input to $TMPDIR in pass 1: SIGTERM removes the spool."""
    scratch, work = tmp_path / "tmp", tmp_path / "work"
    scratch.mkdir()
    work.mkdir()
    cands = _candidates(tmp_path / "c.jsonl", 3).read_text().splitlines()
    scored = []
    for line in cands:
        rec = json.loads(line)
        for k, c in enumerate(rec["candidates"]):
            c["scores"] = {"PER": 0.05 * k, "LOC": 1 - 0.05 * k}
        scored.append(json.dumps(rec) + "\n")
    proc = subprocess.Popen(["ner-pseudo", "--top-k", "1", "-", "-o", str(work / "p.jsonl")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(TMPDIR=str(scratch)), preexec_fn=_default_signals)
    proc.stdin.write("".join(scored * 2000).encode())
    proc.stdin.flush()
    _wait_for(lambda: any(os.path.getsize(scratch / f) > 0 for f in os.listdir(scratch)), proc, "the spool")
    time.sleep(0.3)  # blocked reading the open pipe, in pass 1
    proc.send_signal(signal.SIGTERM)
    err = _finish(proc)
    _assert_terminated(proc, err, "ner-pseudo")
    assert os.listdir(scratch) == [] and os.listdir(work) == []


@pytest.mark.skipif(not TINY_ROBERTA.is_dir(), reason="needs ../shared (the tiny RoBERTa fixture)")
def test_sigterm_divscore_while_scoring(tmp_path):
    """ner-divscore on the tiny RoBERTa, killed by SIGTERM while it scores into -o."""
    work = tmp_path / "work"
    work.mkdir()
    cands = _candidates(tmp_path / "cand.jsonl", 3)
    big = tmp_path / "big.jsonl"
    big.write_text(cands.read_text() * 3000)
    proc = subprocess.Popen(["ner-divscore", "--model", str(TINY_ROBERTA), "--device", "cpu", "--threads", "1",
                             "--seed", "PER=Ann", "--no-progress", str(big), "-o", str(work / "s.jsonl")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(HF_HUB_OFFLINE="1"), preexec_fn=_default_signals)
    _wait_for(lambda: os.listdir(work) and os.path.getsize(work / os.listdir(work)[0]) > 0, proc,
              "scored records in the temporary file", timeout=300)
    proc.send_signal(signal.SIGTERM)
    err = _finish(proc)
    _assert_terminated(proc, err, "ner-divscore")
    assert os.listdir(work) == []


def test_sigterm_handler_is_restored_after_the_command(tmp_path):
    """In-process: the SIGTERM handler is the command's only while it runs."""
    from click.testing import CliRunner

    from nertools.cli.validate import main

    before = signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(main, [str(_records(tmp_path / "r.jsonl", 2))])
    assert result.exit_code == 0 and signal.getsignal(signal.SIGTERM) == before


# ----------------------------------------------------------------------------- B12/D14: a full disk

DEV_FULL_RUNS = {
    "ner-validate": ["{records}"],
    "ner-convert": ["--from", "jsonl", "--to", "conll", "{records}"],
    "ner-eval table": ["--gold", "{records}", "--pred", "{records}"],
    "ner-eval json": ["--json", "--gold", "{records}", "--pred", "{records}"],
    "ner-spans": ["{records}"],
    "ner-dictmatch": ["--dict", "{dict}", "{records}"],
}


@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("rel")
    records = _records(d / "records.jsonl", 3000)
    (d / "dict.tsv").write_text("Paris\tLOC\nRome\tLOC\n")
    return {"records": str(records), "dict": str(d / "dict.tsv")}


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("run", sorted(DEV_FULL_RUNS))
def test_stdout_on_a_full_disk_is_one_line_and_exit_1(run, small_inputs):
    prog = run.split()[0]
    args = [a.format(**small_inputs) for a in DEV_FULL_RUNS[run]]
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([prog, *args], stdout=full, stderr=subprocess.PIPE, text=True, env=_env(),
                              timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    errors = proc.stderr.splitlines()
    assert errors[-1].startswith(f"{prog}: error: cannot write") and \
        errors[-1].endswith("No space left on device"), proc.stderr
    assert sum(": error: " in line for line in errors) == 1, proc.stderr


def test_debug_switch_shows_the_traceback(small_inputs, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": \n')
    quiet = subprocess.run(["ner-validate", str(bad)], capture_output=True, text=True, env=_env(), timeout=120)
    loud = subprocess.run(["ner-validate", str(bad)], capture_output=True, text=True,
                          env=_env(NERTOOLS_DEBUG="1"), timeout=120)
    assert quiet.returncode == 65 and "Traceback" not in quiet.stderr
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "DataError" in loud.stderr, loud.stderr


# ----------------------------------------------------------------------------- D13: a huge record

def _peak_rss_kb(argv, env) -> tuple[int, int, str]:
    """(exit code, peak RSS in kB, stderr) of one child, from its own rusage (os.wait4)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    return proc.returncode, usage.ru_maxrss, err


def test_a_record_over_the_limit_is_refused_in_bounded_memory(tmp_path):
    """A 20 MB record (over the 16 MiB default) is refused naming file:line, before parsing:
    the process never holds it (peak RSS far below the record's size x 150 when parsed)."""
    big = tmp_path / "big.jsonl"
    with open(big, "w") as fh:
        fh.write(json.dumps({"id": "a", "text": "Paris ."}) + "\n")
        fh.write('{"id":"big","text":"' + "Paris is nice. " * 1_400_000 + '"}\n')
    assert big.stat().st_size > 20_000_000
    small = _records(tmp_path / "small.jsonl", 2)
    rc0, base_kb, err0 = _peak_rss_kb(["ner-validate", str(small), "-o", str(tmp_path / "v.jsonl")], _env())
    assert rc0 == 0, err0
    rc, rss_kb, err = _peak_rss_kb(["ner-validate", str(big), "-o", str(tmp_path / "w.jsonl")], _env())
    assert rc == 65 and err.strip().endswith(f"{big}:2: line longer than {16 << 20} bytes (the record size limit; "
                                             "set NERTOOLS_MAX_RECORD_BYTES to raise it)"), err
    # at most one bounded read (16 MiB) more than a tiny run; parsing the record would take GBs
    assert rss_kb - base_kb < 80_000, (rss_kb, base_kb)
    assert sorted(os.listdir(tmp_path)) == ["big.jsonl", "small.jsonl", "v.jsonl"]


def test_bad_limit_in_the_environment_is_a_usage_error(tmp_path):
    rec = _records(tmp_path / "r.jsonl", 1)
    proc = subprocess.run(["ner-validate", str(rec)], capture_output=True, text=True,
                          env=_env(NERTOOLS_MAX_RECORD_BYTES="lots"), timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("ner-validate: error: NERTOOLS_MAX_RECORD_BYTES='lots'")


# ----------------------------------------------------------------------------- special -o targets

def test_output_to_a_fifo_is_written_in_place(tmp_path):
    """-o naming a FIFO (or /dev/stdout, /dev/null) writes into it; the atomic rename would
    replace it by a regular file (run as root, even /dev/null)."""
    from click.testing import CliRunner

    from nertools.cli.validate import main

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        result = CliRunner().invoke(main, [str(_records(tmp_path / "r.jsonl", 3)), "-o", str(fifo)])
        assert result.exit_code == 0, (result.stderr, result.exception)
        data = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert [json.loads(line)["id"] for line in data.splitlines()] == ["r0", "r1", "r2"]
    import stat

    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and sorted(os.listdir(tmp_path)) == ["pipe", "r.jsonl"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_output_option_on_dev_full_exits_1_and_keeps_the_device(tmp_path):
    import stat

    rec = _records(tmp_path / "r.jsonl", 3)
    proc = subprocess.run(["ner-validate", str(rec), "-o", "/dev/full"], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 1 and proc.stderr == "ner-validate: error: cannot write /dev/full: " \
                                                   "No space left on device\n", proc.stderr
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


@pytest.mark.parametrize("data,limit,expected", [
    (b"abc\nde\n", 3, [b"abc\n", b"de\n"]),        # exactly the limit, with its newline
    (b"abcd\nde", 3, [None, b"de"]),              # one byte over; the next line still read
    (b"abc", 3, [b"abc"]),                        # the last line without a newline
    (b"abcd", 3, [None]),
    (b"a" * 5000 + b"\nx\n", 3, [None, b"x\n"]),  # the rest of a long line is skipped
])
def test_bounded_lines(data, limit, expected):
    import io

    from nertools.core.jsonl import bounded_lines

    got = list(bounded_lines(io.BufferedReader(io.BytesIO(data)), limit))
    assert got == list(enumerate(expected, 1))


def test_skip_policy_skips_an_oversized_record(tmp_path, monkeypatch):
    from nertools.core.jsonl import ErrorPolicy, read_records

    monkeypatch.setenv("NERTOOLS_MAX_RECORD_BYTES", "100")
    p = tmp_path / "r.jsonl"
    p.write_text('{"text": "a"}\n{"text": "' + "b " * 200 + '"}\n{"text": "c"}\n')
    policy = ErrorPolicy("skip")
    assert [r["text"] for r in read_records(p, policy=policy)] == ["a", "c"]
    assert policy.skipped == 1 and policy.first.startswith(f"{p}:2: line longer than 100 bytes")
