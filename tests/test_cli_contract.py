"""The command-line contract, checked once for every console script of pyproject.toml.

Every command (and every subcommand of a command group):

* ``--help`` exits 0 and has an "Examples:" section, and every ``ner-...`` invocation in
  it parses (options, required options, choices) and is not a usage error when run;
* a bad option exits 2;
* broken JSON input exits 65 with one error line naming ``file:line``;
* empty input exits 65;
* ``-o FILE`` appears only when the run succeeds, with the mode ``open()`` would give
  under the umask, and is left untouched (no temporary file beside it) when the run fails;
* ``| head -1`` ends quietly and Ctrl-C exits 130 with one line (real processes, a few
  commands).

The list of commands is read from pyproject.toml: a new console script fails
:func:`test_every_command_has_a_contract_case` until it gets a row in :data:`CASES`.
Most checks run in-process (click's CliRunner); the model commands share one tiny
random BERT built here (a word-level vocabulary: it loads in a blink), and a tagger and a
phrase index made from it.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import signal
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]

with open(ROOT / "pyproject.toml", "rb") as _fh:
    SCRIPTS: dict[str, str] = tomllib.load(_fh)["project"]["scripts"]


def load_script(name: str) -> click.Command:
    module, attr = SCRIPTS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def _commands() -> list[tuple[str, click.Command]]:
    """``(name, command)`` for every console script and every subcommand of a group."""
    out = []
    for name in SCRIPTS:
        cmd = load_script(name)
        out.append((name, cmd))
        if isinstance(cmd, click.Group):
            out.extend((f"{name} {sub}", cmd.commands[sub]) for sub in sorted(cmd.commands))
    return out


ALL_COMMANDS = _commands()
LEAVES = [(n, c) for n, c in ALL_COMMANDS if not isinstance(c, click.Group)]


def invoke(command: str, args: list[str], input: str | bytes | None = None):
    """Run ``command`` ("ner-x" or "ner-x sub") in-process; stdout and stderr apart."""
    script, *sub = command.split()
    return CliRunner().invoke(load_script(script), [*sub, *args], input=input, prog_name=script)


def assert_error(result, prog: str, code: int, *fragments: str) -> str:
    """A clean failure: exit ``code``, no traceback, exactly one ``prog: error: ...`` line,
    the last thing on stderr."""
    detail = (result.exit_code, result.stderr, repr(result.exception))
    assert result.exit_code == code, detail
    assert isinstance(result.exception, SystemExit), detail  # not an uncaught exception
    assert "Traceback" not in result.stderr, detail
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"{prog}: error: "), detail
    assert result.stderr.rstrip("\n").endswith(errors[0]), detail
    for fragment in fragments:
        assert fragment in errors[0], detail
    return errors[0]


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# ----------------------------------------------------------------------------- shared inputs

TEXTS = ["Ann met Bo in Paris .", "Carl visited Rome and Oslo .", "Dora works for Acme in Berlin ."]


@dataclass
class Inputs:
    dir: Path
    model: Path        # a tiny random masked LM (BERT) with its tokenizer
    records: Path      # plain {"id", "text"} records
    train: Path        # records with gold spans
    candidates: Path   # ner-spans output
    scored: Path       # candidates with scores
    dict_tsv: Path
    dict_jsonl: Path
    questions: Path    # JSONL questions file
    tagger: Path       # a ner-tag model directory (untrained head on the tiny RoBERTa)
    index: Path        # a phrase index of `records`
    doccano: Path      # the other JSON input formats of ner-convert
    gliner: Path
    hf: Path
    annotated: Path    # ner-annotate output (stored completions: --reparse needs no model)
    align_table: Path  # an ner-align table (JSON) naming PER -> person
    descriptions: Path # ner-align names --descriptions (JSONL)

    def first_line(self, name: str) -> str:
        return getattr(self, name).read_text().splitlines()[0] + "\n"


def _write(path: Path, objs) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def _tiny_bert(folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    words = sorted({w.lower() for t in TEXTS for w in t.split()} |
                   {"the", "person", "location", ":", "is", "a", "name", "which", "city", "?"})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    BertForMaskedLM(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    from nertools.core.record import normalize_record
    from nertools.gener.phrase_index import IndexSettings, build_index
    from nertools.tagging.tagger import META_FILE, META_FORMAT, LabelScheme, load_token_classifier
    from nertools.xner.candidates import SpanRules, add_candidates

    d = tmp_path_factory.mktemp("contract")
    model = _tiny_bert(d / "bert")
    recs = [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)]
    records = _write(d / "records.jsonl", recs)
    train = _write(d / "train.jsonl", [{**r, "spans": [{"start": 0, "end": len(r["text"].split()[0]),
                                                         "label": "PER"}]} for r in recs])
    cands = list(add_candidates((normalize_record(r) for r in recs), SpanRules()))
    candidates = _write(d / "candidates.jsonl", cands)
    for rec in cands:
        for k, c in enumerate(rec["candidates"]):
            c["scores"] = {"PER": 0.05 * k, "LOC": 1 - 0.05 * k}
    scored = _write(d / "scored.jsonl", cands)
    dict_tsv = d / "dict.tsv"
    dict_tsv.write_text("Paris\tLOC\nRome\tLOC\n")
    dict_jsonl = _write(d / "dict.jsonl", [{"phrase": "Paris", "label": "LOC"}, {"phrase": "Ann", "label": "PER"}])
    questions = _write(d / "questions.jsonl", [{"label": "LOC", "question": "Which city?"},
                                               {"label": "PER"}])
    tagger = d / "tagger"
    classifier, tokenizer = load_token_classifier(str(model), LabelScheme(("PER",)))
    classifier.save_pretrained(tagger)
    tokenizer.save_pretrained(tagger)
    (tagger / META_FILE).write_text(json.dumps({"format": META_FORMAT, "labels": ["PER"],
                                                "max_length": 64, "window_overlap": 8}))
    index = d / "index"
    build_index(str(records), str(index), IndexSettings(model=str(model), max_length=32),
                device="cpu", progress=False)
    doccano = _write(d / "doccano.jsonl", [{"text": t, "label": [[0, 3, "PER"]]} for t in TEXTS])
    gliner = _write(d / "gliner.jsonl", [{"tokenized_text": t.split(), "ner": [[0, 0, "PER"]]} for t in TEXTS])
    hf = _write(d / "hf.jsonl", [{"tokens": t.split(), "ner_tags": ["B-PER"] + ["O"] * (len(t.split()) - 1)}
                                 for t in TEXTS])
    annotated = _write(d / "annotated.jsonl", [
        {"id": f"a{i}", "text": t, "annotation": {"completion": f"[{t.split()[0]}](PER)",
                                                  "prompt": {"name": "instructmine", "parser": "brackets",
                                                             "labels": ["PER"]}}} for i, t in enumerate(TEXTS)])
    from nertools.align.table import manual_table

    align_table = d / "align_table.json"
    align_table.write_bytes(manual_table({"person": "PER"}, source_labels=["PER", "LOC"]).dumps())
    descriptions = _write(d / "descriptions.jsonl", [{"label": "PER", "description": "a person"},
                                                    {"label": "LOC", "description": "a place"}])
    return Inputs(d, model, records, train, candidates, scored, dict_tsv, dict_jsonl, questions, tagger, index,
                  doccano, gliner, hf, annotated, align_table, descriptions)


# ----------------------------------------------------------------------------- one row per input

@dataclass(frozen=True)
class Case:
    """How to run ``command`` with one of its JSON inputs replaced by ``path``."""

    command: str
    role: str                                        # which input the row varies
    argv: Callable[[Inputs, str, Path], list[str]]  # (inputs, input path, scratch dir) -> args
    good: str                                        # Inputs field: a valid input for that role
    output: bool = True                              # has -o/--output
    stdin: bool = False                              # the input may be "-" (standard input)
    run_good: bool = True                            # run it once on good input (not: training)

    @property
    def id(self) -> str:
        return f"{self.command}[{self.role}]"


CPU = ["--device", "cpu"]
CASES = [
    Case("ner-validate", "INPUT", lambda i, p, d: [p], "records", stdin=True),
    Case("ner-convert", "INPUT", lambda i, p, d: ["--from", "jsonl", "--to", "jsonl", p], "records", stdin=True),
    *(Case("ner-convert", f"--from {fmt}", lambda i, p, d, fmt=fmt: ["--from", fmt, "--to", "jsonl", p], fmt,
           stdin=True) for fmt in ("doccano", "gliner", "hf")),
    Case("ner-eval", "--gold", lambda i, p, d: ["--gold", p, "--pred", str(i.records)], "records",
         output=False, stdin=True),
    Case("ner-eval", "--pred", lambda i, p, d: ["--gold", str(i.records), "--pred", p], "records",
         output=False, stdin=True),
    Case("ner-spans", "INPUT", lambda i, p, d: [p], "records", stdin=True),
    Case("ner-divscore", "INPUT", lambda i, p, d: ["--model", str(i.model), "--seed", "PER=Ann",
                                                   "--no-progress", *CPU, p], "candidates", stdin=True),
    Case("ner-pseudo", "INPUT", lambda i, p, d: ["--top-k", "2", "--all", p], "scored", stdin=True),
    Case("ner-selftrain", "--train", lambda i, p, d: ["--train", p, "--dev", str(i.train), "--model", str(i.model),
                                                      "--out", str(d / "model"), *CPU], "train",
         output=False, run_good=False),
    Case("ner-selftrain", "--dev", lambda i, p, d: ["--train", str(i.train), "--dev", p, "--model", str(i.model),
                                                    "--out", str(d / "model"), *CPU], "train",
         output=False, run_good=False),
    Case("ner-tag", "INPUT", lambda i, p, d: ["--model", str(i.tagger), *CPU, p], "records", stdin=True),
    Case("ner-dictmatch", "INPUT", lambda i, p, d: ["--dict", str(i.dict_tsv), p], "records", stdin=True),
    Case("ner-dictmatch", "--dict", lambda i, p, d: ["--dict", p, str(i.records)], "dict_jsonl"),
    Case("ner-retrieve index", "--corpus", lambda i, p, d: ["--corpus", p, "--model", str(i.model), "--out",
                                                             str(d / "idx"), "--max-length", "32", "-q", *CPU],
         "records", output=False),
    Case("ner-annotate", "INPUT", lambda i, p, d: ["--reparse", *CPU, p], "annotated", stdin=True),
    Case("ner-sample", "INPUT", lambda i, p, d: ["--k", "1", "--allow-shortfall", p], "train", stdin=True),
    Case("ner-biencoder train", "--train", lambda i, p, d: ["--objective", "labels", "--train", p, "--dev", str(i.train),
                                                            "--model", str(i.model), "--out", str(d / "bienc"), *CPU],
         "train", output=False, run_good=False),
    Case("ner-biencoder train", "--dev", lambda i, p, d: ["--objective", "labels", "--train", str(i.train), "--dev", p,
                                                          "--model", str(i.model), "--out", str(d / "bienc"), *CPU],
         "train", output=False, run_good=False),
    Case("ner-merge", "SHARD_FILE", lambda i, p, d: [as_shard(p)], "records"),
    Case("ner-align train", "--train", lambda i, p, d: ["--mode", "classifier", "--ori", "--source-model",
                                                        str(i.tagger), "--train", p, "--dev", str(i.train),
                                                        "--out", str(d / "model"), *CPU], "train",
         output=False, run_good=False),
    Case("ner-align predict", "INPUT", lambda i, p, d: ["--model", str(i.tagger), *CPU, p], "records", stdin=True),
    Case("ner-retrieve query", "--questions", lambda i, p, d: ["--index", str(i.index), "--questions", p,
                                                                "--top-k", "5", *CPU], "questions"),
    # ner-align table/names write one JSON document (indented), not JSONL: their -o is checked in
    # tests/test_align_table.py
    Case("ner-align table", "--pred", lambda i, p, d: ["--pred", p, "--gold", str(i.train)], "train",
         output=False, stdin=True),
    Case("ner-align table", "--gold", lambda i, p, d: ["--pred", str(i.train), "--gold", p], "train",
         output=False, stdin=True),
    Case("ner-align names", "--descriptions", lambda i, p, d: ["--source-labels", "PER,LOC", "--target-labels",
                                                                "person,city", "--descriptions", p,
                                                                "--model", str(i.model), *CPU], "descriptions",
         output=False, stdin=True),
    Case("ner-align choose", "INPUT", lambda i, p, d: ["--table", str(i.align_table), "--model", str(i.model),
                                                       *CPU, p], "records", stdin=True),
]
CASE_IDS = [c.id for c in CASES]


def as_shard(path: str) -> str:
    """``path`` made the one shard of a run, as ner-merge wants it: a progress journal beside it
    (nertools.core.resume) that counts its non-blank lines. Returns ``path``."""
    p = Path(path)
    if p.is_file():
        from nertools.core.resume import JOURNAL_FORMAT, journal_path

        n = sum(1 for line in p.read_bytes().splitlines() if line.strip())
        rows = [{"format": JOURNAL_FORMAT, "command": "ner-tag", "input": {"path": "-"}, "options": {},
                 "block": 10**9, "shard": [0, 1]}]
        rows += [{"block": 0, "records": n, "lines": n}] if n else []
        rows.append({"complete": True, "blocks": len(rows) - 1, "records": n, "lines": n, "input_records": n})
        Path(journal_path(path)).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_every_command_has_a_contract_case():
    """A console script added to pyproject.toml needs a row in CASES (and gets the checks)."""
    assert {name for name, _ in LEAVES} == {c.command for c in CASES}


def _run_case(case: Case, inputs: Inputs, path: str, scratch: Path, extra=(), input=None):
    return invoke(case.command, [*case.argv(inputs, path, scratch), *extra], input=input)


# ----------------------------------------------------------------------------- --help and examples

class _ReachedWork(Exception):
    """Raised instead of loading a model or calling an LLM while the examples are run."""


def example_lines(epilog: str | None) -> list[str]:
    """The commands of an epilog's "Examples:" section: comments dropped, ``\\`` lines joined."""
    out, buf, inside = [], "", False
    for line in (epilog or "").splitlines():
        text = line.strip()
        if text == "Examples:":
            inside = True
            continue
        if not inside:
            continue
        if text in ("", "\b"):
            inside = False
            continue
        if text.startswith("#"):
            continue
        buf = f"{buf} {text}" if buf else text
        if buf.endswith("\\"):
            buf = buf[:-1].rstrip()
            continue
        out.append(buf)
        buf = ""
    assert not buf, f"example ends with a line continuation: {buf!r}"
    return out


def invocations(line: str) -> list[list[str]]:
    """The ``ner-...`` commands of a shell line: split at pipes and ``&&``/``;``, redirections
    (``> f``, ``2> f``, ``< f``) and ``# comments`` removed."""
    line = re.sub(r"(^|\s)\d+(?=[<>])", r"\1", line)  # 2> file -> > file
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    segments: list[list[str]] = [[]]
    skip = False
    for tok in lex:
        if skip:
            skip = False
        elif tok in ("|", "||", "&&", ";", "&"):
            segments.append([])
        elif tok in (">", ">>", "<", ">&", "&>", ">|"):
            skip = True
        else:
            segments[-1].append(tok)
    return [seg for seg in segments if seg and seg[0].startswith("ner-")]


def _resolve(argv: list[str]) -> tuple[str, click.Command, list[str]]:
    """``(program name, command, its arguments)`` of an invocation, through a group."""
    name, args = argv[0], argv[1:]
    assert name in SCRIPTS, f"example runs {name!r}, which is not a console script"
    cmd = load_script(name)
    if isinstance(cmd, click.Group):
        assert args and args[0] in cmd.commands, f"{argv}: no subcommand of {name}"
        return f"{name} {args[0]}", cmd.commands[args[0]], args[1:]
    return name, cmd, args


def _option_values(args: list[str], param: click.Parameter) -> list[str]:
    """The values given to option ``param`` in ``args`` (``--opt v`` or ``--opt=v``)."""
    values = []
    for k, tok in enumerate(args):
        for opt in param.opts:
            if tok == opt and k + 1 < len(args):
                values.append(args[k + 1])
            elif tok.startswith(opt + "="):
                values.append(tok[len(opt) + 1:])
    return values


def check_example(argv: list[str], sandbox: Path) -> click.testing.Result:
    """Parse one example invocation with ``make_context`` (files it says must exist are
    created empty in ``sandbox``, the cwd), then run it there with empty standard input and
    models/LLM requests stopped: returns the result, whose exit code must not be 2."""
    prog, cmd, args = _resolve(argv)
    for param in cmd.params:
        if isinstance(param, click.Option) and isinstance(param.type, click.Path) and param.type.exists:
            for value in _option_values(args, param):
                p = sandbox / value
                if not p.exists():
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_text("") if param.type.file_okay else p.mkdir()
    try:
        with cmd.make_context(prog, list(args)) as ctx:
            values = dict(ctx.params)
    except click.UsageError as e:  # BadParameter, MissingParameter, NoSuchOption, ...
        pytest.fail(f"example {shlex.join(argv)!r} is a usage error: {e.format_message()}")
    for param in cmd.params:  # the input files it names (a missing input is a usage error, 2)
        if (isinstance(param.type, click.Path) and not param.type.dir_okay and param.name not in OUTPUTS
                and values.get(param.name)):
            named = values[param.name]
            for value in [named] if isinstance(named, str) else named:
                p = sandbox / value
                if value != "-" and not p.exists():
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_text("")
    return invoke(prog, args, input="")


#: Path parameters that name outputs (the example checker creates the inputs an example names).
OUTPUTS = {"output", "dict_out", "out"}


def _stop(*_a, **_k):
    raise _ReachedWork()


@pytest.fixture()
def example_sandbox(tmp_path, monkeypatch):
    import nertools.gener.questions
    import nertools.runtime.models

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(nertools.runtime.models, "resolve_model_path", _stop)
    monkeypatch.setattr(nertools.gener.questions, "chat_completion", _stop)
    return tmp_path


@pytest.mark.parametrize("name,cmd", ALL_COMMANDS, ids=[n for n, _ in ALL_COMMANDS])
def test_help_has_examples_that_parse(name, cmd, example_sandbox):
    result = invoke(name, ["--help"])
    assert result.exit_code == 0 and result.exception is None, result.stderr
    assert result.stdout.startswith(f"Usage: {name} ")
    if isinstance(cmd, click.Group):  # the examples live in the subcommands' help
        for sub in cmd.commands:
            assert f"  {sub} " in result.stdout
        return
    assert re.search(r"^\s*Examples:$", result.stdout, re.M), result.stdout
    lines = example_lines(cmd.epilog)
    runs = [argv for line in lines for argv in invocations(line)]
    assert any(_resolve(argv)[0] == name for argv in runs), f"no example runs {name}"
    for argv in runs:
        res = check_example(argv, example_sandbox)
        assert res.exit_code != 2, f"example {shlex.join(argv)!r} exits 2: {res.stderr}"
        assert res.exception is None or isinstance(res.exception, (SystemExit, _ReachedWork)), \
            f"example {shlex.join(argv)!r} crashed: {res.exception!r}"


def test_example_check_catches_usage_errors(example_sandbox):
    """The checker itself: a missing required option, a missing selection (a usage error
    raised by the command body, defect B5) and an unknown option all fail it."""
    assert invocations("ner-spans c.jsonl | ner-divscore --seed 'PER=A B' ... | ner-pseudo > p.jsonl") == [
        ["ner-spans", "c.jsonl"], ["ner-divscore", "--seed", "PER=A B", "..."], ["ner-pseudo"]]
    assert invocations("echo '{}' | ner-validate 2> err.txt && echo ok   # note") == [["ner-validate"]]
    assert check_example(["ner-pseudo"], example_sandbox).exit_code == 2
    assert check_example(["ner-pseudo", "--top-percent", "3"], example_sandbox).exit_code == 65
    for argv in (["ner-selftrain", "--train", "t.jsonl"], ["ner-eval", "--gold", "g", "--pred", "p", "--nope"],
                 ["ner-convert", "--from", "xml", "--to", "jsonl"]):
        with pytest.raises(pytest.fail.Exception, match="usage error"):
            check_example(argv, example_sandbox)
    with pytest.raises(AssertionError, match="not a console script"):
        check_example(["ner-nothing"], example_sandbox)
    assert example_lines("x\n\b\nExamples:\n  a \\\n      b\n  # c\n  d\n\nafter\n") == ["a b", "d"]


@pytest.mark.parametrize("name", [n for n, _ in ALL_COMMANDS])
def test_bad_option_exits_2(name):
    result = invoke(name, ["--no-such-option"])
    assert result.exit_code == 2, result.stderr
    assert "No such option" in result.stderr and "--no-such-option" in result.stderr
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- data errors

@pytest.fixture()
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("case", [c for c in CASES if c.run_good], ids=[c.id for c in CASES if c.run_good])
def test_good_run_writes_output_with_the_umask_mode(case, inputs, tmp_path, umask022):
    """The minimal invocation of each row works; a -o file gets 0644 under umask 022."""
    good = str(getattr(inputs, case.good))
    if not case.output:
        result = _run_case(case, inputs, good, tmp_path)
        assert result.exit_code == 0 and result.exception is None, (result.stderr, result.exception)
        return
    out = tmp_path / "out.jsonl"
    result = _run_case(case, inputs, good, tmp_path, ["-o", str(out)])
    assert result.exit_code == 0 and result.exception is None, (result.stderr, result.exception)
    assert result.stdout == ""
    assert [json.loads(line) for line in out.read_text().splitlines()]
    assert out.stat().st_mode & 0o777 == 0o644
    assert not [f for f in listing(tmp_path) if f.startswith(".")]  # no temporary file left


def _broken(case: Case, inputs: Inputs) -> str:
    return inputs.first_line(case.good) + '{"id": "x", "text": \n'


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_broken_json_exits_65_naming_file_and_line(case, inputs, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_broken(case, inputs))
    result = _run_case(case, inputs, str(bad), tmp_path)
    assert_error(result, case.command, 65, f"{bad}:2: ", "JSON")


@pytest.mark.parametrize("case", [c for c in CASES if c.stdin], ids=[c.id for c in CASES if c.stdin])
def test_broken_json_on_stdin_names_stdin_and_line(case, inputs, tmp_path):
    result = _run_case(case, inputs, "-", tmp_path, input=_broken(case, inputs))
    assert_error(result, case.command, 65, "<stdin>:2: ", "JSON")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_empty_input_exits_65(case, inputs, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")  # blank lines only: no records
    result = _run_case(case, inputs, str(empty), tmp_path)
    assert_error(result, case.command, 65, f"{empty}: ")
    if case.stdin:
        result = _run_case(case, inputs, "-", tmp_path, input="")
        assert_error(result, case.command, 65, "<stdin>: ")


@pytest.mark.parametrize("case", [c for c in CASES if c.output], ids=[c.id for c in CASES if c.output])
def test_output_file_untouched_on_failure(case, inputs, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out.jsonl"
    out.write_text("sentinel\n")
    os.chmod(out, 0o640)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_broken(case, inputs))
    result = _run_case(case, inputs, str(bad), tmp_path, ["-o", str(out)])
    assert_error(result, case.command, 65)
    assert out.read_text() == "sentinel\n" and out.stat().st_mode & 0o777 == 0o640
    assert listing(work) == ["out.jsonl"]  # no temporary file beside it


def test_output_mode_follows_a_private_umask(inputs, tmp_path):
    old = os.umask(0o077)
    try:
        result = invoke("ner-validate", [str(inputs.records), "-o", str(tmp_path / "o.jsonl.gz")])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "o.jsonl.gz").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)], ids=["umask022", "umask077"])
def test_dict_out_and_output_follow_the_umask(inputs, tmp_path, umask, mode):
    dict_out, out = tmp_path / "dict.tsv", tmp_path / "evidence.jsonl"
    old = os.umask(umask)
    try:
        result = invoke("ner-retrieve query", ["--index", str(inputs.index), "--label", "LOC", "--top-k", "20",
                                               *CPU, "--dict-out", str(dict_out), "-o", str(out)])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.stderr
    assert dict_out.read_text().count("\t") >= 2 and out.read_text()
    assert dict_out.stat().st_mode & 0o777 == mode and out.stat().st_mode & 0o777 == mode
    assert listing(tmp_path) == ["dict.tsv", "evidence.jsonl"]


def test_dict_out_untouched_when_the_query_fails(inputs, tmp_path):
    dict_out = tmp_path / "dict.tsv"
    dict_out.write_text("sentinel\n")
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"label": "LOC"}\n{broken\n')
    result = invoke("ner-retrieve query", ["--index", str(inputs.index), "--questions", str(bad), *CPU,
                                           "--dict-out", str(dict_out)])
    assert_error(result, "ner-retrieve query", 65, f"{bad}:2: ")
    assert dict_out.read_text() == "sentinel\n" and listing(tmp_path) == ["dict.tsv", "q.jsonl"]


def test_selftrain_out_untouched_on_failure(inputs, tmp_path):
    """--out is a model directory; a run that fails on its data leaves an existing one alone."""
    out = tmp_path / "model"
    out.mkdir()
    (out / "nertools.json").write_text('{"format": "sentinel"}')
    bad = tmp_path / "bad.jsonl"
    bad.write_text(inputs.first_line("train") + "{broken\n")
    result = invoke("ner-selftrain", ["--train", str(bad), "--dev", str(inputs.train), "--model", str(inputs.model),
                                      "--out", str(out), *CPU])
    assert_error(result, "ner-selftrain", 65, f"{bad}:2: ")
    assert listing(out) == ["nertools.json"] and listing(tmp_path) == ["bad.jsonl", "model"]


# ----------------------------------------------------------------------------- real processes

def _env(**extra) -> dict:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def _default_sigint():  # a child of a shell job may inherit SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


HEAD_RUNS = {
    "ner-spans": ["{big}"],
    "ner-convert": ["--from", "jsonl", "--to", "conll", "{big}"],
    "ner-dictmatch": ["--dict", "{dict}", "{big}"],
}


@pytest.mark.parametrize("prog", sorted(HEAD_RUNS))
def test_head_ends_quietly(prog, inputs, tmp_path):
    big = tmp_path / "big.jsonl"
    line = inputs.first_line("records")
    big.write_text(line * 20000)
    args = [a.format(big=big, dict=inputs.dict_tsv) for a in HEAD_RUNS[prog]]
    cmd = f"{shlex.join([prog, *args])} | head -1; echo \"rc=${{PIPESTATUS[0]}}\""
    proc = subprocess.run(cmd, shell=True, executable="/bin/bash", capture_output=True, text=True,
                          env=_env(), timeout=120)
    first, status = proc.stdout.splitlines()[0], proc.stdout.splitlines()[-1]
    assert first.strip() and status == "rc=0", (proc.stdout[-300:], proc.stderr)
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr, proc.stderr


SIGINT_RUNS = {
    "ner-validate": [],
    "ner-spans": [],
    "ner-pseudo": ["--top-k", "1"],
    "ner-dictmatch": ["--dict", "{dict}"],
}


def interrupt(argv: list[str], line: bytes, work: Path, sig=signal.SIGINT, env=None):
    """Start ``argv`` reading standard input, wait until its temporary output appears in
    ``work``, send ``sig``; return ``(returncode, stderr)``."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env or _env(), preexec_fn=_default_sigint)
    try:
        proc.stdin.write(line * 3)
        proc.stdin.flush()
        deadline = time.monotonic() + 90
        while len(listing(work)) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the command never opened its output"
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for fh in (proc.stdin, proc.stdout, proc.stderr):
            fh.close()
    return proc.returncode, err


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
                         ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("prog", sorted(SIGINT_RUNS))
def test_ctrl_c_exits_130_quietly_and_leaves_no_temp_files(prog, sig, code, word, inputs, tmp_path):
    """Ctrl-C exits 130 and SIGTERM (``timeout``, ``kill``) 143, each with one line, the -o
    target untouched, no temporary file beside it and ner-pseudo's stdin spool removed."""
    work, scratch = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    scratch.mkdir()
    out = work / "out.jsonl"
    out.write_text("sentinel\n")
    args = [a.format(dict=inputs.dict_tsv) for a in SIGINT_RUNS[prog]]
    line = inputs.first_line("scored" if prog == "ner-pseudo" else "records")
    rc, err = interrupt([prog, *args, "-", "-o", str(out)], line.encode(), work, sig,
                        env=_env(TMPDIR=str(scratch)))
    assert rc == code, err
    assert "Traceback" not in err and err.endswith(f"{prog}: {word}\n"), err
    assert err.count(word) == 1
    assert out.read_text() == "sentinel\n" and listing(work) == ["out.jsonl"]
    assert listing(scratch) == []  # ner-pseudo's stdin spool is gone too


def test_ctrl_c_between_the_last_line_and_the_commit_leaves_no_temp_file(inputs, tmp_path, monkeypatch):
    """A Ctrl-C can land at the entry of the writer's __exit__, where no clean-up of the
    writer runs (seen with a real SIGINT racing the end of input): the command still
    removes the temporary file and exits 130."""
    import nertools.core.jsonl

    def interrupted_close(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(nertools.core.jsonl.RecordWriter, "close", interrupted_close)
    out = tmp_path / "out.jsonl"
    out.write_text("sentinel\n")
    result = invoke("ner-validate", [str(inputs.records), "-o", str(out)])
    assert result.exit_code == 130 and result.stderr == "ner-validate: interrupted\n"
    assert out.read_text() == "sentinel\n" and listing(tmp_path) == ["out.jsonl"]


# ----------------------------------------------------------------------------- the exit-code table
# README "Exit codes": one test per row and command. 0 and 65 are the good-run and data-error
# tests above; 130 and 143 are the real-process tests; here are 1 (an output that cannot be
# written, out of memory) and 2 (usage errors, including input files that cannot be opened).

def _usage_error(result, prog: str) -> str:
    """Exit 2 with one error line and no traceback: click's ``Error: ...`` or ``prog: error: ...``."""
    detail = (result.exit_code, result.stderr, repr(result.exception))
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), detail
    assert "Traceback" not in result.stderr, detail
    errors = [line for line in result.stderr.splitlines() if line.startswith(("Error: ", f"{prog}: error: "))]
    assert len(errors) == 1, detail
    return errors[0]


#: Inputs read by code of their own before nertools.core.jsonl opens them (to be aligned).
OWN_OPEN = {"ner-retrieve index[--corpus]"}


@pytest.mark.parametrize("case", [c for c in CASES if c.id not in OWN_OPEN],
                         ids=[c.id for c in CASES if c.id not in OWN_OPEN])
def test_missing_input_file_exits_2(case, inputs, tmp_path):
    missing = tmp_path / "nosuch.jsonl"
    line = _usage_error(_run_case(case, inputs, str(missing), tmp_path), case.command)
    assert str(missing) in line or "nosuch.jsonl" in line


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_directory_as_input_file_exits_2(case, inputs, tmp_path):
    folder = tmp_path / "adir"
    folder.mkdir()
    _usage_error(_run_case(case, inputs, str(folder), tmp_path), case.command)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_unreadable_input_file_exits_2(case, inputs, tmp_path, monkeypatch):
    """No permission to read (simulated: root reads every file): exit 2 as well."""
    import builtins

    import nertools.core.jsonl

    locked = tmp_path / "locked.jsonl"
    locked.write_text(inputs.first_line(case.good))
    locked.chmod(0)
    real_open = builtins.open

    def guarded(path, *a, **k):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_open(path, *a, **k)

    monkeypatch.setattr(nertools.core.jsonl, "open", guarded, raising=False)
    line = _usage_error(_run_case(case, inputs, str(locked), tmp_path), case.command)
    assert "ermission denied" in line or "not readable" in line, line


DEVICE_COMMANDS = [n for n, c in LEAVES if any(p.name == "device" for p in c.params)]


def test_device_commands_are_found():
    assert {"ner-divscore", "ner-selftrain", "ner-tag", "ner-retrieve index", "ner-retrieve query"} <= \
        set(DEVICE_COMMANDS)


@pytest.mark.parametrize("name", DEVICE_COMMANDS)
def test_unknown_device_is_a_usage_error(name, inputs, tmp_path, example_sandbox):
    """--device is checked while parsing, before any model loads (the sandbox stops loading)."""
    case = next(c for c in CASES if c.command == name)
    result = _run_case(case, inputs, str(getattr(inputs, case.good)), tmp_path, ["--device", "tpu"])
    line = _usage_error(result, name)
    assert "unknown device 'tpu'" in line


@pytest.mark.parametrize("value", ["cpu", "CPU", "auto", "cuda", "cuda:1", "mps"])
def test_known_devices_pass_the_check(value):
    from nertools.cli.options import _check_device

    assert _check_device(None, None, value) == value


def _full_disk(monkeypatch):
    """Every -o temporary file is /dev/full underneath: the first write fails with ENOSPC."""
    import nertools.core.jsonl

    real = nertools.core.jsonl.temp_file_beside

    def on_dev_full(path, *a, **k):
        fd, tmp = real(path, *a, **k)
        full = os.open("/dev/full", os.O_WRONLY)
        os.dup2(full, fd)
        os.close(full)
        return fd, tmp

    monkeypatch.setattr(nertools.core.jsonl, "temp_file_beside", on_dev_full)


@pytest.mark.parametrize("case", [c for c in CASES if c.output and c.run_good],
                         ids=[c.id for c in CASES if c.output and c.run_good])
def test_full_disk_on_output_exits_1_and_leaves_nothing(case, inputs, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out.jsonl"
    out.write_text("sentinel\n")
    _full_disk(monkeypatch)
    result = _run_case(case, inputs, str(getattr(inputs, case.good)), tmp_path, ["-o", str(out)])
    assert_error(result, case.command, 1, f"cannot write {out}: No space left on device")
    assert out.read_text() == "sentinel\n" and listing(work) == ["out.jsonl"]


@pytest.mark.parametrize("case", [c for c in CASES if c.output], ids=[c.id for c in CASES if c.output])
def test_output_in_a_missing_directory_exits_1(case, inputs, tmp_path):
    out = tmp_path / "no-such-dir" / "out.jsonl"
    result = _run_case(case, inputs, str(getattr(inputs, case.good)), tmp_path, ["-o", str(out)])
    assert_error(result, case.command, 1, f"cannot write {out}: No such file or directory")


def _oom(kind: str):
    if kind == "MemoryError":
        return MemoryError()
    import torch

    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


@pytest.mark.parametrize("kind", ["MemoryError", "cuda"])
@pytest.mark.parametrize("case", [c for c in CASES if c.run_good and c.command in
                                  ("ner-validate", "ner-spans", "ner-tag", "ner-divscore")],
                         ids=lambda c: c.id)
def test_out_of_memory_exits_1_with_a_hint(case, kind, inputs, tmp_path, monkeypatch):
    import nertools.core.jsonl

    def no_memory(*a, **k):
        raise _oom(kind)

    import nertools.xner.candidates

    monkeypatch.setattr(nertools.core.jsonl, "normalize_record", no_memory)
    monkeypatch.setattr(nertools.xner.candidates, "normalize_record", no_memory)  # ner-divscore's reader
    out = tmp_path / "out.jsonl"
    result = _run_case(case, inputs, str(getattr(inputs, case.good)), tmp_path, ["-o", str(out)])
    assert_error(result, case.command, 1, "out of memory", "lower --batch-tokens/--batch-size")
    assert listing(tmp_path) == []


def test_out_of_memory_check_needs_no_torch(monkeypatch):
    import sys

    from nertools.cli.common import is_out_of_memory

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert is_out_of_memory(MemoryError()) and not is_out_of_memory(RuntimeError("CUDA out of memory"))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_nertools_debug_shows_the_traceback(case, inputs, tmp_path, monkeypatch):
    """NERTOOLS_DEBUG=1: the error propagates (a traceback) instead of the one-line message."""
    from nertools.errors import DataError

    monkeypatch.setenv("NERTOOLS_DEBUG", "1")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_broken(case, inputs))
    result = _run_case(case, inputs, str(bad), tmp_path)
    assert isinstance(result.exception, DataError) and f"{bad}:2: " in str(result.exception)
    assert ": error: " not in result.stderr


#: Every record reader that takes --on-error (ner-retrieve index has a loop of its own).
SKIP_COUNTED = [c for c in CASES if c.run_good and c.id in {
    "ner-validate[INPUT]", "ner-convert[INPUT]", "ner-convert[--from doccano]", "ner-convert[--from gliner]",
    "ner-convert[--from hf]", "ner-eval[--gold]", "ner-eval[--pred]", "ner-dictmatch[INPUT]",
    "ner-spans[INPUT]", "ner-divscore[INPUT]", "ner-pseudo[INPUT]", "ner-tag[INPUT]"}]


@pytest.mark.parametrize("case", SKIP_COUNTED, ids=[c.id for c in SKIP_COUNTED])
def test_all_records_skipped_reports_the_count(case, inputs, tmp_path):
    """--on-error skip with nothing valid: exit 65 and "no valid records: N skipped (first: ...)"."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"broken\n[1]\n')
    if "--on-error" not in {o for p in dict(LEAVES)[case.command].params for o in p.opts}:
        pytest.fail(f"{case.command} has no --on-error")
    result = _run_case(case, inputs, str(bad), tmp_path, ["--on-error", "skip"])
    assert_error(result, case.command, 65, f"{bad}: no valid records: 2 skipped (first: {bad}:1: broken JSON")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_non_utf8_input_names_the_byte(case, inputs, tmp_path):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(inputs.first_line(case.good).encode() + '{"text": "café"}\n'.encode("latin-1"))
    result = _run_case(case, inputs, str(bad), tmp_path)
    line = assert_error(result, case.command, 65, f"{bad}:2: not UTF-8 (byte 0xe9 at byte 14 of the line)")
    assert "surrogates" not in line


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_record_over_the_size_limit_is_refused_before_parsing(case, inputs, tmp_path, monkeypatch):
    import nertools.core.jsonl

    first = inputs.first_line(case.good)
    limit = len(first.encode()) + 10

    def no_parse(raw):
        assert len(raw) <= limit, "a line over the limit reached the parser"
        return real_loads(raw)

    real_loads = nertools.core.jsonl.orjson.loads
    monkeypatch.setenv("NERTOOLS_MAX_RECORD_BYTES", str(limit))
    monkeypatch.setattr(nertools.core.jsonl.orjson, "loads", no_parse)
    big = tmp_path / "big.jsonl"
    big.write_text(first + json.dumps({"id": "big", "text": "Paris " * limit}) + "\n")
    result = _run_case(case, inputs, str(big), tmp_path)
    assert_error(result, case.command, 65, f"{big}:2: line longer than {limit} bytes", "NERTOOLS_MAX_RECORD_BYTES")
