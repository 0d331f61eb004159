"""A regression suite from the reliability probe (issue 10; ../shared/reviews/reliability-probe.md).

The probe fed 447 hostile inputs to the commands. Its cheap cases run here, for every console
script of pyproject.toml (and every subcommand of a group), on inputs built in fixtures:

* bad input files (broken JSON mid-file, arrays, non-objects, NUL bytes, deep nesting, empty
  and blank files, truncated and non-gzip ``.gz``, a BOM, latin-1 bytes; spans out of range,
  empty, negative or off token boundaries, token/text mismatches) exit 65 with one line naming
  ``file:line``, and leave an existing ``-o`` target untouched with no temporary file beside it;
  CRLF line ends are read as LF;
* every count and size option given 0, -1, a huge value (and NaN for the real-valued ones) is
  a usage error or works: never a traceback;
* ``-o`` that is read-only, a symlink, or the input file itself; two writers to one ``-o``;
  inputs that cannot be read (a directory, a FIFO, and a file of mode 000 read without the
  DAC capabilities under ``setpriv``);
* the real CoNLL files round trip (first 300 sentences of each) and score F1 1.0 gold vs gold;
* ``| head -1`` ends quietly for every command that writes to standard output; Ctrl-C exits
  130 with one line and removes temporary files;
* one test per probe defect D1-D26 that is cheap to reproduce. Those not fixed on main are
  marked ``xfail(strict=True)``: they fail the suite once fixed, so that the mark is removed.

The shared machinery (the tiny word-level BERT, the tagger and phrase index made from it, one
row per command input) is :mod:`test_cli_contract`'s.
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import unicodedata
from pathlib import Path

import click
import pytest
from conftest import SHARED
from test_cli_contract import (  # noqa: F401  (inputs is a fixture)
    CASES,
    CPU,
    LEAVES,
    Case,
    Inputs,
    _default_sigint,
    as_shard,
    _env,
    _run_case,
    interrupt,
    assert_error,
    inputs,
    invoke,
    listing,
)

# ----------------------------------------------------------------------------- bad input files

#: Rows whose input is a record (text, tokens, spans): the record-level checks apply.
RECORD_ROLES = {"records", "train", "candidates", "scored"}
RECORD_CASES = [c for c in CASES if c.good in RECORD_ROLES]


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _bad_record(first: str, **change) -> str:
    rec = json.loads(first)
    rec.pop("tokens", None)
    rec.update(change)
    return first + json.dumps(rec) + "\n"


def _other_id(first: str, k: int = 2) -> str:
    """``first`` again under another id (a valid second line)."""
    rec = json.loads(first)
    if "id" in rec:
        rec["id"] = f"{rec['id']}-{k}"
    return json.dumps(rec) + "\n"


def _many(first: str, n: int) -> str:
    return first + "".join(_other_id(first, k) for k in range(2, n + 1))


def _text(first: str) -> str:
    return json.loads(first)["text"]


#: name -> (file name, content from the role's first good line, expected fragment: "{path}" is
#: replaced by the file's path). Any JSON input of any command.
JSON_BAD = {
    "broken_mid": ("f.jsonl", lambda f: (f + _other_id(f) + '{"id": "z", "text": "a\x01b"}\n').encode(),
                   "{path}:3: broken JSON"),
    "array": ("f.jsonl", lambda f: (f + "[1, 2]\n").encode(), "{path}:2: "),
    "array_whole": ("f.jsonl", lambda f: ("[" + f.strip() + "]\n").encode(), "{path}:1: "),
    "record_null": ("f.jsonl", lambda f: (f + "null\n").encode(), "{path}:2: "),
    "record_str": ("f.jsonl", lambda f: (f + '"x"\n').encode(), "{path}:2: "),
    "record_number": ("f.jsonl", lambda f: (f + "42\n").encode(), "{path}:2: "),
    "nul_between": ("f.jsonl", lambda f: (f + "\x00\n" + f).encode(), "{path}:2: broken JSON"),
    "nul_in_string": ("f.jsonl", lambda f: (f + '{"id": "z", "text": "a\x00b"}\n').encode(),
                      "{path}:2: broken JSON"),
    "nan": ("f.jsonl", lambda f: (f + '{"id": "z", "text": "a", "x": NaN}\n').encode(), "{path}:2: broken JSON"),
    "deep": ("f.jsonl", lambda f: (f + '{"id": "z", "text": "a", "meta": ' + "[" * 3000 + "]" * 3000 + "}\n").encode(),
             "{path}:2: broken JSON"),
    "empty": ("f.jsonl", lambda f: b"", "{path}: "),
    "blank": ("f.jsonl", lambda f: b"\n   \n\t\n", "{path}: "),
    "bom": ("f.jsonl", lambda f: b"\xef\xbb\xbf" + f.encode(), "{path}:1: "),
    "latin1": ("f.jsonl", lambda f: f.encode() + '{"id": "z", "text": "caf\u00e9"}\n'.encode("latin-1"), "{path}:2: "),
    "trunc_gz": ("f.jsonl.gz", lambda f: _gz(_many(f, 400).encode())[:-40], "{path}"),
    "not_gzip": ("f.jsonl.gz", lambda f: f.encode(), "{path}"),
}

#: The record-level checks (a valid first line, a bad second one).
RECORD_BAD = {
    "span_out_of_range": (lambda f: _bad_record(f, spans=[{"start": 0, "end": len(_text(f)) + 50, "label": "PER"}]),
                          "out of range"),
    "span_empty": (lambda f: _bad_record(f, spans=[{"start": 2, "end": 2, "label": "PER"}]), "empty"),
    "span_negative": (lambda f: _bad_record(f, spans=[{"start": -5, "end": 3, "label": "PER"}]), "out of range"),
    "span_off_token_boundary": (lambda f: _bad_record(f, spans=[{"start": 0, "end": 2, "label": "PER"}]),
                                "token boundaries"),
    "span_float": (lambda f: _bad_record(f, spans=[{"start": 0.0, "end": 3, "label": "PER"}]), "integers"),
    "span_no_label": (lambda f: _bad_record(f, spans=[{"start": 0, "end": 3}]), "label"),
    "token_text_mismatch": (lambda f: _bad_record(f, tokens=["XXXX"] + _text(f).split()[1:]), "token 0 'XXXX'"),
    "tokens_not_list": (lambda f: _bad_record(f, tokens="Ann met"), "'tokens' must be a list"),
    "text_not_string": (lambda f: _bad_record(f, text=5), "'text' is not a string"),
}


def _check_65(case: Case, inputs: Inputs, tmp_path: Path, name: str, content: bytes, *fragments: str):
    """Run ``case`` on a file holding ``content``: exit 65, one line with the fragments,
    and (commands with ``-o``) the existing target untouched with nothing beside it."""
    bad = tmp_path / name
    bad.write_bytes(content)
    extra = []
    if case.output:
        work = tmp_path / "work"
        work.mkdir()
        out = work / "out.jsonl"
        out.write_text("sentinel\n")
        extra = ["-o", str(out)]
    result = _run_case(case, inputs, str(bad), tmp_path, extra)
    line = assert_error(result, case.command, 65, *(f.format(path=bad) for f in fragments))
    if case.output:
        assert out.read_text() == "sentinel\n" and listing(work) == ["out.jsonl"]
    return line


#: Side files (small TSV-or-JSONL tables): a BOM is dropped (D3) and a line that does not start
#: with ``{`` is a TSV row (``[1, 2]`` and ``null`` are labels), so those rows do not apply.
SIDE_TABLES = {"questions": {"array", "array_whole", "record_null", "record_str", "record_number", "nul_between",
                             "bom"},
               "dict_jsonl": {"bom"}, "descriptions": {"bom", "nul_between"}}
JSON_ROWS = [(c, bad) for c in CASES for bad in sorted(JSON_BAD) if bad not in SIDE_TABLES.get(c.good, ())]


@pytest.mark.parametrize("case,bad", JSON_ROWS, ids=[f"{c.id}-{b}" for c, b in JSON_ROWS])
def test_bad_json_input_exits_65_with_file_and_line(case, bad, inputs, tmp_path):
    fname, content, fragment = JSON_BAD[bad]
    _check_65(case, inputs, tmp_path, fname, content(inputs.first_line(case.good)), fragment)


@pytest.mark.parametrize("bad", sorted(RECORD_BAD))
@pytest.mark.parametrize("case", RECORD_CASES, ids=[c.id for c in RECORD_CASES])
def test_bad_record_exits_65_with_file_and_line(case, bad, inputs, tmp_path):
    content, fragment = RECORD_BAD[bad]
    _check_65(case, inputs, tmp_path, "f.jsonl", content(inputs.first_line(case.good)).encode(),
              "{path}:2: ", fragment)


@pytest.mark.parametrize("case", [c for c in CASES if c.good in SIDE_TABLES], ids=lambda c: c.id)
def test_bom_in_a_side_table_is_dropped(case, inputs, tmp_path):
    """D3: a JSONL side file (dictionary, questions) written with a BOM reads as without."""
    good = getattr(inputs, case.good)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + good.read_bytes())
    runs = [_run_case(case, inputs, str(p), tmp_path) for p in (good, bom)]
    assert [r.exit_code for r in runs] == [0, 0], [r.stderr for r in runs]
    assert runs[0].stdout == runs[1].stdout


@pytest.mark.parametrize("case", [c for c in CASES if c.run_good], ids=[c.id for c in CASES if c.run_good])
def test_crlf_input_reads_like_lf(case, inputs, tmp_path):
    good = getattr(inputs, case.good)
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes(good.read_bytes().replace(b"\n", b"\r\n"))
    runs = []
    for path in (good, crlf):
        scratch = tmp_path / f"run-{path.stem}"
        scratch.mkdir()
        out = scratch / "out.jsonl"
        result = _run_case(case, inputs, str(path), scratch, ["-o", str(out)] if case.output else [])
        assert result.exit_code == 0 and result.exception is None, (result.stderr, result.exception)
        runs.append(out.read_bytes() if case.output else result.stdout)
    assert runs[0] == runs[1]


def test_nfd_text_round_trips_and_scores_1(tmp_path):
    """Decomposed (NFD) and composed text alike: validate keeps the text as it is, and gold
    vs gold is F1 1.0 with spans on whole words (D5: no span cuts an accent off)."""
    text = "Jose\u0301 visited Zu\u0308rich"
    rec = {"id": "n", "text": text, "spans": [{"start": 0, "end": 5, "label": "PER"},
                                             {"start": 14, "end": len(text), "label": "LOC"}]}
    src = tmp_path / "nfd.jsonl"
    src.write_text(json.dumps(rec) + "\n")
    r = invoke("ner-validate", [str(src)])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["text"] == text and [t["text"] for t in out["tokens"]] == ["Jose\u0301", "visited", "Zu\u0308rich"]
    r = invoke("ner-eval", ["--json", "-g", str(src), "-p", str(src)])
    assert r.exit_code == 0 and json.loads(r.stdout)["micro"]["f1"] == 1.0, r.stderr


def test_latin1_conll_names_the_line(tmp_path):
    bad = tmp_path / "l1.conll"
    bad.write_bytes(b"Paris\tB-LOC\n\ncaf\xe9\tO\n\n")
    r = invoke("ner-convert", ["-f", "conll", "-t", "jsonl", str(bad)])
    assert_error(r, "ner-convert", 65, f"{bad}:3: ", "UTF-8")


# ----------------------------------------------------------------------------- count options

def _number_options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option) and not p.is_flag
            and isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType))]


#: Left out, found by this sweep and not in the probe's list (reported to the lead): NaN passes
#: click's FloatRange and the library then refuses it with exit 1 instead of a usage error.
UNSWEPT: set = set()  # (command, option, value) rows the sweep leaves out


def _sweep():
    rows = []
    for case in CASES:
        if case.command in {r[0].command for r in rows}:
            continue
        cmd = dict(LEAVES)[case.command]
        for opt in _number_options(cmd):
            values = ["0", "-1", "99999999999999999999"]
            if isinstance(opt.type, click.types.FloatParamType):
                values += ["nan", "inf"]
            rows.extend((case, opt.opts[-1], v) for v in values if (case.command, opt.opts[-1], v) not in UNSWEPT)
    return rows


SWEEP = _sweep()


def test_the_sweep_covers_every_command_with_a_count_option():
    """Every leaf command with a number option is swept (a new command gets a CASES row)."""
    swept = {case.command for case, _, _ in SWEEP}
    assert swept == {name for name, cmd in LEAVES if _number_options(cmd)}
    assert {"ner-spans", "ner-divscore", "ner-pseudo", "ner-selftrain", "ner-tag", "ner-eval"} <= swept


@pytest.mark.parametrize("case,opt,value", SWEEP, ids=[f"{c.command}{o}={v}" for c, o, v in SWEEP])
def test_count_option_edge_values_are_refused_or_work(case, opt, value, inputs, tmp_path):
    """On blank input: a value is either refused at once as a usage error (2, naming the
    option) or accepted, and then the run reaches the data (65, empty input). Never a
    traceback, never a hang, never exit 1."""
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n")
    result = _run_case(case, inputs, str(blank), tmp_path, [opt, value])
    detail = (result.exit_code, result.stderr, repr(result.exception))
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.stderr, detail
    if result.exit_code == 2:
        assert opt.lstrip("-") in result.stderr or opt.lstrip("-").replace("-", " ") in result.stderr, detail
    else:
        assert_error(result, case.command, 65, f"{blank}: ")


#: The largest count any option takes (2^31 - 1); larger ones are usage errors (the sweep).
BIG = "2147483647"

GOOD_HUGE = [
    ("ner-spans", ["--max-tokens", BIG]),
    ("ner-spans", ["--max-length", BIG]),
    ("ner-pseudo", ["--top-k", BIG]),
    ("ner-divscore", ["--batch-tokens", BIG]),
    ("ner-divscore", ["--batch-tokens", "16"]),
    ("ner-divscore", ["--threads", "1000"]),
    ("ner-tag", ["--chunk", BIG]),
    ("ner-tag", ["--max-tokens", BIG]),
    ("ner-tag", ["--max-tokens", "16"]),
    ("ner-retrieve query", ["--top-k", BIG]),
]


@pytest.mark.parametrize("command,extra", GOOD_HUGE, ids=[f"{c}{' '.join(e)}" for c, e in GOOD_HUGE])
def test_huge_counts_work_on_good_input(command, extra, inputs, tmp_path):
    case = next(c for c in CASES if c.command == command)
    args = case.argv(inputs, str(getattr(inputs, case.good)), tmp_path)
    if command == "ner-retrieve query":
        args = ["--index", str(inputs.index), "--label", "LOC", *CPU]
    result = invoke(command, [*args, *extra])
    assert result.exit_code == 0 and result.exception is None, (result.stderr, result.exception)
    assert all(isinstance(json.loads(line), dict) for line in result.stdout.splitlines())


def test_eval_ranked_huge_k(inputs):
    """D18: --k past 2^64 was an orjson traceback: now the largest count works and a larger
    one is a usage error."""
    args = ["--ranked", "--json", "-g", str(inputs.train), "-p", str(inputs.scored), "--k"]
    r = invoke("ner-eval", [*args, BIG])
    assert r.exit_code == 0 and r.exception is None, (r.stderr, r.exception)
    assert isinstance(json.loads(r.stdout), dict)
    for k in ("9223372036854775808", "99999999999999999999"):
        r = invoke("ner-eval", [*args, k])
        assert r.exit_code == 2 and "--k" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("threads", ["0", "-1", "100000", "99999999999999999999"])
@pytest.mark.parametrize("command", ["ner-divscore", "ner-tag", "ner-selftrain", "ner-retrieve index",
                                     "ner-retrieve query"])
def test_threads_out_of_bounds_is_a_usage_error(command, threads, inputs, tmp_path):
    """D10 (100000 hung) and D16 (2^64 was a traceback): refused while parsing."""
    case = next(c for c in CASES if c.command == command)
    r = _run_case(case, inputs, str(getattr(inputs, case.good)), tmp_path, ["--threads", threads])
    assert r.exit_code == 2 and "--threads" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_selftrain_huge_steps_and_batch_end(inputs, tmp_path):
    base = ["--train", str(inputs.train), "--dev", str(inputs.train), "--model", str(inputs.model), *CPU]
    r = invoke("ner-selftrain", [*base, "--out", str(tmp_path / "a"), "--max-steps", BIG,
                                 "--patience", "1", "--eval-every", "1", "--batch-size", "1000000000"])
    assert r.exit_code == 0, (r.stderr, r.exception)
    assert (tmp_path / "a" / "nertools.json").is_file()


@pytest.mark.parametrize("lr", ["nan", "-1", "inf"])
def test_selftrain_bad_learning_rate_is_a_usage_error(lr, inputs, tmp_path):
    r = invoke("ner-selftrain", ["--train", str(inputs.train), "--dev", str(inputs.train), "--model",
                                 str(inputs.model), *CPU, "--out", str(tmp_path / "m"), "--max-steps", "2", "--lr", lr])
    assert r.exit_code == 2 and "--lr" in r.stderr and "Traceback" not in r.stderr, (r.stderr, r.exception)


# ----------------------------------------------------------------------------- -o targets

@pytest.fixture()
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_read_only_output_target(inputs, tmp_path, umask022):
    """A read-only -o file is replaced by a complete output (the mode follows the umask, the
    documented rule of nertools.core.atomic) and is left as it was by a failing run."""
    out = tmp_path / "ro.jsonl"
    out.write_text("sentinel\n")
    out.chmod(0o444)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(inputs.first_line("records") + "{broken\n")
    assert_error(invoke("ner-validate", [str(bad), "-o", str(out)]), "ner-validate", 65)
    assert out.read_text() == "sentinel\n" and out.stat().st_mode & 0o777 == 0o444
    r = invoke("ner-validate", [str(inputs.records), "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    assert len(out.read_text().splitlines()) == 3 and out.stat().st_mode & 0o777 == 0o644
    assert listing(tmp_path) == ["bad.jsonl", "ro.jsonl"]


def test_output_symlink_is_written_through(inputs, tmp_path):
    target = tmp_path / "target.jsonl"
    target.write_text("sentinel\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target.name)
    r = invoke("ner-validate", [str(inputs.records), "-o", str(link)])
    assert r.exit_code == 0, r.stderr
    assert link.is_symlink() and len(target.read_text().splitlines()) == 3


def test_output_symlink_untouched_on_failure(inputs, tmp_path):
    target = tmp_path / "target.jsonl"
    target.write_text("sentinel\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target.name)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{broken\n")
    assert_error(invoke("ner-validate", [str(bad), "-o", str(link)]), "ner-validate", 65)
    assert link.is_symlink() and target.read_text() == "sentinel\n"
    assert listing(tmp_path) == ["bad.jsonl", "link.jsonl", "target.jsonl"]


INPLACE = {
    "ner-validate": ["{f}"],
    "ner-spans": ["{f}"],
    "ner-dictmatch": ["--dict", "{dict}", "{f}"],
    "ner-pseudo": ["--top-k", "2", "--all", "{f}"],
    "ner-convert": ["--from", "jsonl", "--to", "jsonl", "{f}"],
}


@pytest.mark.parametrize("command", sorted(INPLACE))
def test_output_equal_to_input_is_complete(command, inputs, tmp_path):
    """-o naming the input file: the input is read in full before the rename."""
    src = inputs.scored if command == "ner-pseudo" else inputs.records
    ref = invoke(command, [a.format(f=src, dict=inputs.dict_tsv) for a in INPLACE[command]])
    assert ref.exit_code == 0, ref.stderr
    same = tmp_path / "same.jsonl"
    shutil.copy(src, same)
    r = invoke(command, [*(a.format(f=same, dict=inputs.dict_tsv) for a in INPLACE[command]), "-o", str(same)])
    assert r.exit_code == 0, r.stderr
    assert same.read_text() == ref.stdout and listing(tmp_path) == ["same.jsonl"]


def test_two_writers_to_one_output_leave_one_complete_file(inputs, tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps({"id": f"r{i}", "text": f"Ann met Bo in Paris number {i} ."}) + "\n"
                           for i in range(4000)))
    dicts = []
    for name, entry in (("a.tsv", "Paris\tLOC\n"), ("b.tsv", "Ann\tPER\n")):
        (tmp_path / name).write_text(entry)
        dicts.append(tmp_path / name)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "c.jsonl"
    procs = [subprocess.Popen(["ner-dictmatch", "--dict", str(d), str(big), "-o", str(out)],
                              stderr=subprocess.PIPE, env=_env()) for d in dicts]
    errs = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    expected = [invoke("ner-dictmatch", ["--dict", str(d), str(big)]).stdout for d in dicts]
    assert out.read_text() in expected and listing(work) == ["c.jsonl"]


# ----------------------------------------------------------------------------- unreadable inputs

@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_directory_as_input_exits_2(case, inputs, tmp_path):
    folder = tmp_path / "adir.jsonl"
    folder.mkdir()
    r = _run_case(case, inputs, str(folder), tmp_path)
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit) and "Traceback" not in r.stderr, r.stderr
    assert "adir.jsonl" in r.stderr


@pytest.mark.parametrize("command", ["ner-validate", "ner-spans", "ner-eval"])
def test_fifo_as_input_is_read_as_a_stream(command, inputs, tmp_path):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    args = {"ner-validate": [str(fifo)], "ner-spans": [str(fifo)],
            "ner-eval": ["--json", "-g", str(fifo), "-p", str(inputs.records)]}[command]
    proc = subprocess.Popen([command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    deadline = time.monotonic() + 60
    while True:  # (a plain open would block for ever if the command never opened the FIFO)
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:  # ENXIO: no reader yet
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the command never opened the FIFO"
            time.sleep(0.05)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "wb") as fh:
        fh.write(inputs.records.read_bytes())
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert out and all(isinstance(json.loads(line), dict) for line in out.splitlines())


NOCAP = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def _nocap_works() -> bool:
    """Whether a mode-000 file is unreadable under NOCAP here (root without DAC override)."""
    if shutil.which("setpriv") is None:
        return False
    proc = subprocess.run([*NOCAP, "cat", "/proc/self/status"], capture_output=True, text=True)
    return proc.returncode == 0


def _no_read_permission(paths: list[Path], script: str):
    """Run a bash ``script`` where ``paths`` (mode 000) cannot be read: as root without the
    DAC capabilities when setpriv exists, else as ``nobody``."""
    for p in paths:
        p.chmod(0)
    if _nocap_works():
        cmd = [*NOCAP, "bash", "-c", script]
    elif os.geteuid() != 0:
        cmd = ["bash", "-c", script]
    else:  # pragma: no cover - a root without setpriv: the user nobody
        cmd = ["su", "-s", "/bin/bash", "nobody", "-c", script]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120)


UNREADABLE = {
    "ner-validate": "ner-validate {u}",
    "ner-convert": "ner-convert -f jsonl -t conll {u}",
    "ner-eval": "ner-eval -g {u} -p {good}",
    "ner-spans": "ner-spans {u}",
    "ner-dictmatch": "ner-dictmatch --dict {dict} {u}",
    "ner-dictmatch --dict": "ner-dictmatch --dict {udict} {good}",
}


def test_unreadable_inputs_exit_2_without_a_traceback(inputs, tmp_path):
    """A file that cannot be read: a usage error (2) naming it, in each reading command."""
    unread, udict = tmp_path / "unread.jsonl", tmp_path / "unread.tsv"
    shutil.copy(inputs.records, unread)
    shutil.copy(inputs.dict_tsv, udict)
    script = "; ".join(f'{c.format(u=unread, udict=udict, good=inputs.records, dict=inputs.dict_tsv)} '
                       f'>/dev/null 2>{tmp_path}/err{i}; echo "rc=$?"' for i, c in enumerate(UNREADABLE.values()))
    proc = _no_read_permission([unread, udict], script)
    codes = proc.stdout.split()
    assert len(codes) == len(UNREADABLE), (proc.stdout, proc.stderr)
    for i, (name, code) in enumerate(zip(UNREADABLE, codes)):
        err = (tmp_path / f"err{i}").read_text()
        assert code == "rc=2" and "Traceback" not in err and "unread." in err, (name, code, err)


# ----------------------------------------------------------------------------- real CoNLL files

def _first_sentences(path: Path, n: int) -> bytes:
    out, blanks = [], 0
    with open(path, "rb") as fh:
        for line in fh:
            out.append(line)
            if line == b"\n":
                blanks += 1
                if blanks == n:
                    break
    return b"".join(out)


def test_the_shared_conll_files_round_trip_and_score_1(tmp_path):
    """conll -> jsonl -> conll is byte-identical on the first 300 sentences of each of the
    23 shared CoNLL files, and gold vs gold is micro F1 1.0."""
    from nertools.core.jsonl import read_records
    from nertools.evaluation.strict import evaluate
    from nertools.formats.convert import convert

    files = sorted((SHARED / "data").glob("*/*.conll"))
    assert len(files) == 23, files
    for f in files:
        part, js, back = tmp_path / "part.conll", tmp_path / "x.jsonl", tmp_path / "back.conll"
        part.write_bytes(_first_sentences(f, 300))
        convert(part, js, "conll", "jsonl")
        convert(js, back, "jsonl", "conll")
        assert back.read_bytes() == part.read_bytes(), f
        recs = list(read_records(js))
        scores = evaluate(recs, recs)
        assert scores["micro"]["f1"] == 1.0 and scores["micro"]["support"] > 0, f


# ----------------------------------------------------------------------------- real processes

#: How each command that writes records or a report to standard output is run under ``| head -1``
#: ({big}: many records, {cand}: many candidates, {scored}: many scored records).
HEAD_RUNS = {
    "ner-validate": ["{big}"],
    "ner-convert": ["--from", "jsonl", "--to", "gliner", "{big}"],
    "ner-eval": ["--json", "-g", "{big}", "-p", "{big}"],
    "ner-spans": ["{big}"],
    "ner-divscore": ["--model", "{model}", "--seed", "PER=Ann", "--no-progress", "--threads", "1", *CPU, "{cand}"],
    "ner-pseudo": ["--top-k", "5", "--all", "{scored}"],
    "ner-tag": ["--model", "{tagger}", "--threads", "1", *CPU, "{big}"],
    "ner-dictmatch": ["--dict", "{dict}", "{big}"],
    "ner-annotate": ["--reparse", "{ann}"],
    "ner-align table": ["--pred", "{big}", "--gold", "{big}"],
    "ner-align names": ["--source-labels", "conll", "--target-labels", "person,city", "--model", "{model}", *CPU],
    "ner-align choose": ["--table", "{align_table}", "--direct", "{big}"],
    "ner-merge": ["{shard}"],
    "ner-sample": ["--k", "100000", "--allow-shortfall", "-q", "{spanned}"],
    "ner-align predict": ["--model", "{tagger}", "--threads", "1", *CPU, "{big}"],
    "ner-retrieve query": ["--index", "{index}", "--label", "LOC", "--top-k", "100", "--threads", "1", *CPU,
                           "--dict-out", "{tmp}/dict.tsv"],
}
#: More of the probe's pipe variants: (name, shell command before ``| head -1``), with the table
#: of ``ner-eval``, which used to exit 1 without a word when the reader had gone before the
#: table was written (rich's broken-pipe handler raised SystemExit(1)).
HEAD_VARIANTS = {
    "convert-jsonl-to-conll": "ner-convert -f jsonl -t conll {big}",
    "convert-conll-to-jsonl": "ner-convert -f conll -t jsonl {conll}",
    "validate-gz": "ner-validate {gz}",
    "validate-stdin": "cat {big} | ner-validate -",
    "pseudo-stdin": "cat {scored} | ner-pseudo --top-k 5 --all -",
    "help": "ner-divscore --help",
    "eval-table": "ner-eval -g {big} -p {big}",
}
#: Commands whose only output is a directory (nothing on stdout to close early).
NO_STDOUT = {"ner-selftrain", "ner-retrieve index", "ner-biencoder train", "ner-align train"}


def test_every_command_is_in_the_head_table():
    assert {name for name, _ in LEAVES} == set(HEAD_RUNS) | NO_STDOUT


def test_head_ends_quietly_for_every_streaming_command(inputs, tmp_path):
    """``cmd | head -1``: exit 0, one line, no traceback, for all of them at once (D1:
    ner-retrieve query still writes its --dict-out)."""
    big = tmp_path / "big.jsonl"
    texts = [json.loads(line)["text"] for line in inputs.records.read_text().splitlines()]
    big.write_text("".join(json.dumps({"id": f"r{i}", "text": texts[i % len(texts)]}) + "\n" for i in range(3000)))
    cand, scored = tmp_path / "cand.jsonl", tmp_path / "scored.jsonl"
    for src, dst in ((inputs.candidates, cand), (inputs.scored, scored)):
        lines = src.read_text().splitlines()
        dst.write_text("".join(json.dumps({**json.loads(lines[i % len(lines)]), "id": f"c{i}"}) + "\n"
                               for i in range(3000)))
    ann = tmp_path / "ann.jsonl"
    lines = inputs.annotated.read_text().splitlines()
    ann.write_text("".join(json.dumps({**json.loads(lines[i % len(lines)]), "id": f"a{i}"}) + "\n"
                           for i in range(3000)))
    spanned = tmp_path / "spanned.jsonl"
    lines = inputs.train.read_text().splitlines()
    spanned.write_text("".join(json.dumps({**json.loads(lines[i % len(lines)]), "id": f"t{i}"}) + "\n"
                               for i in range(3000)))
    gz, conll = tmp_path / "big.jsonl.gz", tmp_path / "big.conll"
    gz.write_bytes(_gz(big.read_bytes()))
    conll.write_text("Paris\tB-LOC\nis\tO\n\n" * 5000)
    shard = tmp_path / "shard.jsonl"  # ner-merge: one shard with its progress journal
    shutil.copy(big, shard)
    as_shard(str(shard))
    fmt = dict(big=big, cand=cand, scored=scored, model=inputs.model, tagger=inputs.tagger, dict=inputs.dict_tsv,
               index=inputs.index, tmp=tmp_path, gz=gz, conll=conll, ann=ann, align_table=inputs.align_table,
               shard=shard, spanned=spanned)
    commands = {name: shlex.join([*name.split(), *(a.format(**fmt) for a in args)]) for name, args in HEAD_RUNS.items()}
    commands.update({name: cmd.format(**fmt) for name, cmd in HEAD_VARIANTS.items()})
    procs = {}
    for name, line in commands.items():
        cmd = f"{line} | head -1; echo \"rc=${{PIPESTATUS[-2]}}\""
        procs[name] = subprocess.Popen(cmd, shell=True, executable="/bin/bash", stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=_env())
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        lines = out.splitlines()
        assert len(lines) == 2 and lines[0].strip() and lines[-1] == "rc=0", (name, out[-300:], err)
        assert "Traceback" not in err and "Error" not in err, (name, err)
    assert (tmp_path / "dict.tsv").read_text().count("\t") >= 2  # D1


SIGINT_MODEL_RUNS = {
    "ner-divscore": (["--model", "{model}", "--seed", "PER=Ann", "--no-progress", "--threads", "1", *CPU],
                     "candidates"),
}
#: (ner-validate, ner-spans, ner-pseudo and ner-dictmatch: test_cli_contract; ner-tag takes the
#: same path as ner-divscore and is left out to keep the suite short.)


@pytest.mark.parametrize("prog", sorted(SIGINT_MODEL_RUNS))
def test_ctrl_c_in_model_commands_exits_130_and_cleans_up(prog, inputs, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out.jsonl"
    out.write_text("sentinel\n")
    args, role = SIGINT_MODEL_RUNS[prog]
    argv = [prog, *(a.format(model=inputs.model, tagger=inputs.tagger) for a in args), "-", "-o", str(out)]
    code, err = interrupt(argv, inputs.first_line(role).encode(), work)
    assert code == 130 and "Traceback" not in err and err.endswith(f"{prog}: interrupted\n"), (code, err)
    assert out.read_text() == "sentinel\n" and listing(work) == ["out.jsonl"]


def test_sigterm_exits_143_and_cleans_up(inputs, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out.jsonl"
    out.write_text("sentinel\n")
    code, err = interrupt(["ner-validate", "-", "-o", str(out)], inputs.first_line("records").encode(), work,
                           sig=signal.SIGTERM)
    assert code == 143 and "Traceback" not in err and err.startswith("ner-validate: "), (code, err)
    assert out.read_text() == "sentinel\n" and listing(work) == ["out.jsonl"]


def test_full_disk_on_stdout_is_one_line_exit_1(inputs):
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(["ner-validate", str(inputs.records)], stdout=full, stderr=subprocess.PIPE,
                              text=True, env=_env(), timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("ner-validate: error: ") and proc.stderr.count("\n") == 1, proc.stderr


def test_output_in_a_read_only_directory_exits_1(inputs, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    proc = _no_read_permission([], f"ner-validate {inputs.records} -o {ro}/x.jsonl")
    ro.chmod(0o755)
    assert proc.returncode == 1 and "Permission denied" in proc.stderr, proc.stderr
    assert listing(ro) == []


# ----------------------------------------------------------------------------- the defects, one by one

def test_d3_bom_in_side_files_and_conll(inputs, tmp_path):
    """D3: a BOM is not part of the first entry of a dictionary, seeds file, questions file or
    CoNLL file."""
    conll = tmp_path / "b.conll"
    conll.write_bytes(b"\xef\xbb\xbfLONDON\tB-LOC\n1996-08-30\tO\n\n")
    r = invoke("ner-convert", ["-f", "conll", "-t", "jsonl", str(conll)])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["tokens"][0]["text"] == "LONDON"
    d = tmp_path / "d.tsv"
    d.write_bytes(b"\xef\xbb\xbfAnn\tPER\r\nParis\tLOC\r\n")
    r = invoke("ner-dictmatch", ["--dict", str(d), str(inputs.records)])
    assert r.exit_code == 0, r.stderr
    found = {(rec["text"][s["start"]:s["end"]], s["label"]) for rec in map(json.loads, r.stdout.splitlines())
             for s in rec["spans"]}
    assert {("Ann", "PER"), ("Paris", "LOC")} <= found
    seeds = tmp_path / "seeds.tsv"
    seeds.write_bytes(b"\xef\xbb\xbfPER\tAnn\r\nLOC\tParis\r\n")
    r = invoke("ner-divscore", ["--model", str(inputs.model), "--seeds", str(seeds), "--no-progress", *CPU,
                                str(inputs.candidates)])
    assert r.exit_code == 0, r.stderr
    assert set(json.loads(r.stdout.splitlines()[0])["candidates"][0]["scores"]) == {"PER", "LOC"}
    q = tmp_path / "q.tsv"
    q.write_bytes(b"\xef\xbb\xbfLOC\tWhich city?\n")
    r = invoke("ner-retrieve query", ["--index", str(inputs.index), "--questions", str(q), "--top-k", "3", *CPU])
    assert r.exit_code == 0, r.stderr
    assert {s["label"] for line in r.stdout.splitlines() for s in json.loads(line)["spans"]} == {"LOC"}


@pytest.mark.parametrize("cand,fragment", [
    ({"start": 0, "end": 9999, "token_start": 0, "token_end": 0, "scores": {"LOC": 0.1}}, "range"),  # D4
    ({"start": 0, "end": 6, "token_start": 0, "token_end": 999, "scores": {"LOC": 0.1}}, "range"),  # D4
    ({"start": 0, "end": 6, "token_start": 0, "token_end": 0, "scores": {"": 0.1}}, "label"),  # D4
    ({"end": 6, "token_start": 0, "token_end": 0, "scores": {"LOC": 0.1}}, "start"),  # D19
], ids=["end-9999", "token_end-999", "empty-label", "no-start"])
def test_d4_d19_pseudo_checks_candidates(cand, fragment, tmp_path):
    c = tmp_path / "c.jsonl"
    c.write_text(json.dumps({"id": "a", "text": "LONDON 1996", "candidates": [cand]}) + "\n")
    assert_error(invoke("ner-pseudo", ["--top-k", "5", str(c)]), "ner-pseudo", 65, f"{c}:1: ", fragment)


def test_d24_pseudo_candidates_not_a_list_names_file_and_line(tmp_path):
    c = tmp_path / "c.jsonl"
    c.write_text(json.dumps({"id": "a", "text": "LONDON"}) + "\n" +
                 json.dumps({"id": "b", "text": "LONDON", "candidates": {"x": 1}}) + "\n")
    line = assert_error(invoke("ner-pseudo", ["--top-k", "5", str(c)]), "ner-pseudo", 65, f"{c}:")
    assert "no 'scores'" not in line


def test_d5_nfd_text_spans_and_dictionary(tmp_path):
    nfd = tmp_path / "nfd.jsonl"
    text = "Jose\u0301 visited Zu\u0308rich"
    nfd.write_text(json.dumps({"id": "n", "text": text}) + "\n")
    r = invoke("ner-spans", [str(nfd)])
    assert r.exit_code == 0, r.stderr
    texts = [c["text"] for c in json.loads(r.stdout)["candidates"]]
    assert not any(unicodedata.category(t[0]) == "Mn" or t == "Jose" for t in texts), texts
    d = tmp_path / "d.tsv"
    d.write_text("Jose\tPER\nZ\u00fcrich\tLOC\n")
    r = invoke("ner-dictmatch", ["--dict", str(d), str(nfd)])
    assert r.exit_code == 0, r.stderr
    spans = json.loads(r.stdout)["spans"]
    assert [(text[s["start"]:s["end"]], s["label"]) for s in spans] == [("Zu\u0308rich", "LOC")]


def test_d6_docstart_token_round_trips(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"id": "x", "tokens": ["Go", "-DOCSTART-", "now"]}) + "\n")
    conll, back = tmp_path / "d.conll", tmp_path / "back.jsonl"
    assert invoke("ner-convert", ["-f", "jsonl", "-t", "conll", str(src), "-o", str(conll)]).exit_code == 0
    r = invoke("ner-convert", ["-f", "conll", "-t", "jsonl", str(conll), "-o", str(back)])
    assert r.exit_code == 0, r.stderr
    assert [t["text"] for t in json.loads(back.read_text())["tokens"]] == ["Go", "-DOCSTART-", "now"]


def test_d20_truncated_conll_gz_is_a_data_error(tmp_path):
    text = "".join(f"Tok{i}\tO\nParis\tB-LOC\n\n" for i in range(20000)).encode()
    t = tmp_path / "t.conll.gz"
    t.write_bytes(_gz(text)[:4000])
    r = invoke("ner-convert", ["-f", "conll", "-t", "jsonl", str(t), "-o", str(tmp_path / "o.jsonl")])
    assert_error(r, "ner-convert", 65, str(t))
    assert listing(tmp_path) == ["t.conll.gz"]


def test_d20_zero_byte_index_shard_is_a_data_error(inputs, tmp_path):
    idx = tmp_path / "idx"
    shutil.copytree(inputs.index, idx)
    shard = sorted(idx.glob("vectors-*.npy"))[0]
    shard.write_bytes(b"")
    r = invoke("ner-retrieve query", ["--index", str(idx), "--label", "LOC", *CPU])
    assert_error(r, "ner-retrieve query", 65, str(idx))


def test_d21_template_without_seed_is_a_usage_error(inputs):
    r = invoke("ner-divscore", ["--model", str(inputs.model), "--seed", "PER=Ann", "--template", "hello world",
                                *CPU, str(inputs.candidates)])
    assert r.exit_code == 2 and "[SEED]" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("command", ["ner-validate", "ner-convert", "ner-eval", "ner-divscore"])
def test_d21_missing_input_is_a_usage_error(command, inputs, tmp_path):
    case = next(c for c in CASES if c.command == command)
    r = _run_case(case, inputs, str(tmp_path / "nosuch.jsonl"), tmp_path)
    assert r.exit_code == 2 and "nosuch.jsonl" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("command", ["ner-divscore", "ner-tag", "ner-retrieve query"])
def test_d21_unknown_device_is_a_usage_error(command, inputs, tmp_path):
    case = next(c for c in CASES if c.command == command)
    r = _run_case(case, inputs, str(getattr(inputs, case.good)), tmp_path, ["--device", "tpu"])
    assert r.exit_code == 2 and "tpu" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("case", RECORD_CASES, ids=[c.id for c in RECORD_CASES])
def test_d22_latin1_jsonl_says_not_utf8(case, inputs, tmp_path):
    line = _check_65(case, inputs, tmp_path, "l1.jsonl",
                     inputs.first_line(case.good).encode() + '{"id": "z", "text": "caf\u00e9"}\n'.encode("latin-1"),
                     "{path}:2: ", "UTF-8")
    assert "surrogates" not in line


def test_d25_all_records_skipped_reports_the_count(tmp_path):
    bad = tmp_path / "allbad.jsonl"
    bad.write_text('null\n"x"\n')
    line = assert_error(invoke("ner-validate", ["--on-error", "skip", str(bad)]), "ner-validate", 65)
    assert "2" in line and "skipped" in line and "empty input" not in line


@pytest.mark.parametrize("content", [b"GGUF junk\n", b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 6],
                         ids=["junk", "short-header"])
def test_d15_bogus_gguf_is_one_line(content, inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("NERTOOLS_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(content)
    r = invoke("ner-divscore", ["--model", str(fake), "--seed", "PER=Ann", *CPU, str(inputs.candidates)])
    assert_error(r, "ner-divscore", 1, "fake.gguf")


def test_d15_truncated_gguf_says_so(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("NERTOOLS_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF junk\n")
    r = invoke("ner-divscore", ["--model", str(fake), "--seed", "PER=Ann", *CPU, str(inputs.candidates)])
    line = assert_error(r, "ner-divscore", 1, "fake.gguf")
    assert "not a valid GGUF file or is truncated" in line, line


def test_d23_missing_gguf_encoder_says_not_found(inputs, tmp_path):
    r = invoke("ner-retrieve index", ["--corpus", str(inputs.records), "--model", "/nonexistent/x.gguf",
                                      "--out", str(tmp_path / "i"), "-q", *CPU])
    line = assert_error(r, "ner-retrieve index", 1, "/nonexistent/x.gguf")
    assert "not found" in line and "Repo id" not in line


def _index_args(corpus: Path, out: Path, model: Path) -> list[str]:
    return ["--corpus", str(corpus), "--model", str(model), "--out", str(out), "--max-length", "32", "-q", *CPU]


def test_d12_failed_first_index_build_can_be_redone(inputs, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(inputs.first_line("records") + "{broken\n")
    out = tmp_path / "idx"
    assert_error(invoke("ner-retrieve index", _index_args(bad, out, inputs.model)), "ner-retrieve index", 65)
    r = invoke("ner-retrieve index", _index_args(inputs.records, out, inputs.model))
    assert r.exit_code == 0, r.stderr


def test_d2_append_after_a_killed_append_keeps_the_index_valid(inputs, tmp_path):
    lines = [json.dumps({"id": f"s{i}", "text": f"Ann met Bo in Paris {i} ."}) for i in range(12)]
    corpus, out = tmp_path / "c.jsonl", tmp_path / "idx"
    corpus.write_text("\n".join(lines[:6]) + "\n")
    assert invoke("ner-retrieve index", _index_args(corpus, out, inputs.model)).exit_code == 0
    with open(out / "sentences.jsonl", "a") as fh:  # what a killed append leaves behind
        fh.write("\n".join(lines[6:9]) + "\n")
    corpus.write_text("\n".join(lines) + "\n")
    r = invoke("ner-retrieve index", _index_args(corpus, out, inputs.model))
    assert r.exit_code == 0, r.stderr
    r = invoke("ner-retrieve query", ["--index", str(out), "--label", "LOC", "--top-k", "50", *CPU])
    assert r.exit_code == 0, r.stderr


def _train(inputs: Inputs, out: Path, dev: Path | None = None):
    return invoke("ner-selftrain", ["--train", str(inputs.train), "--dev", str(dev or inputs.train), "--model",
                                    str(inputs.model), "--out", str(out), "--max-steps", "2", *CPU])


def test_d8_dev_labels_missing_from_train_warn(inputs, tmp_path):
    """No dev label known to train: an error (dev F1 would be 0 at every evaluation);
    some dev labels unknown to train: one warning line naming them."""
    dev = tmp_path / "dev.jsonl"
    dev.write_text(inputs.train.read_text().replace('"PER"', '"DISEASE"'))
    r = _train(inputs, tmp_path / "m", dev)
    assert r.exit_code == 65 and "DISEASE" in r.stderr, r.stderr
    recs = [json.loads(line) for line in inputs.train.read_text().splitlines() if line.strip()]
    renamed = False
    for rec in recs:
        if rec.get("spans") and not renamed:
            rec["spans"][0]["label"] = "DISEASE"
            renamed = True
    assert renamed and any(sp["label"] != "DISEASE" for rec in recs for sp in rec.get("spans", []))
    dev.write_text("".join(json.dumps(rec) + "\n" for rec in recs))
    r = _train(inputs, tmp_path / "m2", dev)
    assert r.exit_code == 0 and "warning" in r.stderr.lower() and "DISEASE" in r.stderr, r.stderr


def test_d9_retraining_keeps_foreign_files(inputs, tmp_path):
    out = tmp_path / "m"
    assert _train(inputs, out).exit_code == 0
    (out / "MY_NOTES.txt").write_text("notes\n")
    r = _train(inputs, out)
    assert (out / "MY_NOTES.txt").read_text() == "notes\n", r.stderr
    assert r.exit_code == 0 or "MY_NOTES.txt" in r.stderr, r.stderr


# ----------------------------------------------------------------------------- what held up well

def test_foreign_out_directory_is_refused(inputs, tmp_path):
    """A non-empty directory that is not ours is refused by ner-selftrain and ner-retrieve
    index, and left as it was."""
    user = tmp_path / "user"
    user.mkdir()
    (user / "mine.txt").write_text("keep\n")
    r = invoke("ner-selftrain", ["--train", str(inputs.train), "--dev", str(inputs.train), "--model",
                                 str(inputs.model), "--out", str(user), "--max-steps", "1", *CPU])
    assert_error(r, "ner-selftrain", 1, str(user))
    r = invoke("ner-retrieve index", _index_args(inputs.records, user, inputs.model))
    assert_error(r, "ner-retrieve index", 1, str(user))
    assert listing(user) == ["mine.txt"] and (user / "mine.txt").read_text() == "keep\n"


def test_index_refuses_an_edited_corpus_and_changed_settings(inputs, tmp_path):
    idx = tmp_path / "idx"
    corpus = tmp_path / "c.jsonl"
    shutil.copy(inputs.records, corpus)
    assert invoke("ner-retrieve index", _index_args(corpus, idx, inputs.model)).exit_code == 0
    before = {p.name: p.read_bytes() for p in idx.iterdir()}
    r = invoke("ner-retrieve index", [*_index_args(corpus, idx, inputs.model), "--max-span-len", "2"])
    assert_error(r, "ner-retrieve index", 1, "other settings")
    lines = corpus.read_text().splitlines()
    lines[1] = lines[1].replace("Carl", "Karl")
    corpus.write_text("\n".join(lines) + "\n")
    assert_error(invoke("ner-retrieve index", _index_args(corpus, idx, inputs.model)), "ner-retrieve index", 1,
                 "changed since")
    assert {p.name: p.read_bytes() for p in idx.iterdir()} == before


@pytest.mark.parametrize("damage", ["truncated-vectors", "missing-spans", "truncated-sentences", "broken-manifest",
                                    "truncated-idx"])
def test_query_reports_a_damaged_index(damage, inputs, tmp_path):
    idx = tmp_path / "idx"
    shutil.copytree(inputs.index, idx)
    name = {"truncated-vectors": "vectors-00000.npy", "missing-spans": "spans-00000.npy",
            "truncated-sentences": "sentences.jsonl", "broken-manifest": "manifest.json",
            "truncated-idx": "sentences.idx.npy"}[damage]
    f = idx / name
    if damage == "missing-spans":
        f.unlink()
    else:
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
    r = invoke("ner-retrieve query", ["--index", str(idx), "--label", "LOC", "--top-k", "50", *CPU])
    assert_error(r, "ner-retrieve query", 65, "corrupted or incomplete")


@pytest.mark.parametrize("command", ["ner-divscore", "ner-tag", "ner-selftrain", "ner-retrieve index",
                                     "ner-retrieve query"])
def test_cuda_without_cuda_is_a_clear_error(command, inputs, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    case = next(c for c in CASES if c.command == command)
    r = _run_case(case, inputs, str(getattr(inputs, case.good)), tmp_path, ["--device", "cuda"])
    assert_error(r, command, 1, "CUDA is not available")
