"""The compact record form (nertools-format(5), COMPACT): lossless round trips on real data and
pipeline records, every reader accepting it (mixed with canonical records), every writer
producing it (--output-form / --compact / NERTOOLS_OUTPUT_FORM), errors with file:line, and
ner-dictmatch's compact fast path agreeing with its canonical path."""

from __future__ import annotations

import copy
import os
import subprocess
from itertools import islice

import orjson
import pytest

from nertools.core import jsonl
from nertools.core.jsonl import RecordWriter, dumps_record, read_records
from nertools.core.record import is_compact, normalize_record, to_compact
from nertools.errors import DataError


@pytest.fixture(autouse=True)
def _canonical_default():
    """An in-process command run with --compact sets the process-wide output form: reset it."""
    jsonl.set_output_form("canonical")
    yield
    jsonl.set_output_form("canonical")


def run(args, **kw):
    env = dict(os.environ)
    env.pop("NERTOOLS_OUTPUT_FORM", None)
    env.update(kw.pop("env", {}))
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, **kw)


def lines_of(text: str) -> list[dict]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def roundtrip(rec: dict) -> dict:
    """canonical -> compact JSON line -> canonical."""
    return normalize_record(orjson.loads(orjson.dumps(to_compact(rec))), default_id="?")


# ------------------------------------------------------------------------- the form itself

SHARED_FILES = ["conll2003/dev.jsonl", "wnut17/dev.jsonl", "ncbi_disease/dev.jsonl",
                "crossner_science/dev.jsonl", "mit_restaurant/train.jsonl", "bc5cdr/dev.jsonl"]


@pytest.mark.parametrize("name", SHARED_FILES)
def test_shared_data_round_trips_byte_for_byte(shared_data, name):
    n = 0
    small = big = 0
    with (shared_data / name).open("rb") as fh:
        for line in islice(fh, 3000):
            rec = normalize_record(orjson.loads(line))
            compact = to_compact(rec)
            assert is_compact(compact) and "text" not in compact  # single-spaced: text rebuilt
            back = normalize_record(orjson.loads(orjson.dumps(compact)))
            assert orjson.dumps(back) == orjson.dumps(rec)
            small += len(orjson.dumps(compact))
            big += len(line)
            n += 1
    assert n > 300 and big > 4 * small


def test_documented_example_reads_as_the_canonical_record():
    rec = normalize_record(orjson.loads(
        '{"id": "s1", "toks": ["EU", "rejects", "German", "call"], "ws": "1110",'
        ' "spans": [[0, 0, "ORG"], [2, 2, "MISC", {"score": 0.93, "source": "ner-tag"}]], "meta": {}}'))
    assert rec["text"] == "EU rejects German call"
    assert rec["tokens"][1] == {"text": "rejects", "start": 3, "end": 10, "id": 1, "ws": True}
    assert rec["tokens"][3]["ws"] is False
    assert rec["spans"] == [
        {"start": 0, "end": 2, "token_start": 0, "token_end": 0, "label": "ORG"},
        {"start": 11, "end": 17, "token_start": 2, "token_end": 2, "label": "MISC", "score": 0.93,
         "source": "ner-tag"}]
    # ws may be left out (one space between tokens) or given as booleans or 0/1
    for ws in (None, [True, True, True, False], [1, 1, 1, 0]):
        obj = {"toks": ["EU", "rejects", "German", "call"]}
        if ws is not None:
            obj["ws"] = ws
        assert normalize_record(obj)["tokens"] == rec["tokens"]


PIPELINE = [
    # ner-spans + ner-divscore output: candidates with scores (the sentinel included), meta, extras
    {"id": "p1", "text": "Ann met Bo in Paris", "meta": {"doc": 3, "conll": {"scheme": "BIO2"}},
     "spans": [{"start": 14, "end": 19, "label": "LOC", "score": -1.5e-07, "source": "xner"}],
     "candidates": [{"start": 0, "end": 3, "token_start": 0, "token_end": 0, "text": "Ann",
                     "scores": {"PER": 0.125, "LOC": 1e30}},
                    {"start": 0, "end": 10, "token_start": 0, "token_end": 2, "text": "Ann met Bo"},
                    {"odd": "kept as an object"}],
     "annotation": {"raw": "[Ann](PER)", "items": [["Ann", "PER"]]}, "x-extra": [1, None, True]},
    # irregular whitespace: text and offsets are kept
    {"id": "p2", "text": "  Ann\tmet  Bo.\n", "spans": [{"start": 2, "end": 5, "label": "PER"}]},
    # a tokenisation that leaves characters out of every token
    {"id": "p3", "text": "a-b c", "tokens": [{"text": "a", "start": 0, "end": 1, "id": 0, "ws": False},
                                             {"text": "c", "start": 4, "end": 5, "id": 1, "ws": False}]},
    # tokens with keys of their own stay canonical (compact cannot carry them)
    {"id": "p4", "text": "Ann met", "tokens": [
        {"text": "Ann", "start": 0, "end": 3, "id": 0, "ws": True, "disabled": True},
        {"text": "met", "start": 4, "end": 7, "id": 1, "ws": False}]},
    # empty, whitespace-only and non-ASCII records
    {"id": "p5", "text": ""},
    {"id": "p6", "text": "   "},
    {"id": "p7", "text": "Jose\u0301 vit \u00e0 S\u00e3o Paulo", "spans": [{"start": 12, "end": 21, "label": "LOC"}]},
]


@pytest.mark.parametrize("rec", PIPELINE, ids=lambda r: r["id"])
def test_pipeline_records_round_trip(rec):
    canonical = normalize_record(copy.deepcopy(rec))
    back = roundtrip(canonical)
    assert orjson.dumps(back) == orjson.dumps(canonical)


def test_what_compact_keeps_and_leaves_out():
    c = to_compact(normalize_record(copy.deepcopy(PIPELINE[0])))
    assert c["candidates"][0] == [0, 0, {"scores": {"PER": 0.125, "LOC": 1e30}}]
    assert c["candidates"][1] == [0, 2]
    assert c["candidates"][2] == {"odd": "kept as an object"}
    assert c["spans"] == [[4, 4, "LOC", {"score": -1.5e-07, "source": "xner"}]]
    assert list(c) == ["id", "toks", "ws", "spans", "meta", "candidates", "annotation", "x-extra"]
    irregular = to_compact(normalize_record(copy.deepcopy(PIPELINE[1])))
    assert irregular["text"] == "  Ann\tmet  Bo.\n" and irregular["offs"] == [2, 6, 11, 13]
    assert irregular["ws"] == "1101"
    assert "tokens" in to_compact(normalize_record(copy.deepcopy(PIPELINE[3])))  # stays canonical
    # not a record, or already compact: written as it is
    for obj in ({"phrase": "Paris", "label": "LOC"}, [1, 2], "x", c):
        assert to_compact(obj) is obj


def test_raw_canonical_records_with_broken_offsets_stay_canonical():
    """A record that skipped validation (ner-dictmatch's fast path passes them through) is
    never 'repaired' by the compact writer: it is written as it is."""
    bad = {"id": "b", "text": "Ann met", "tokens": [
        {"text": "Ann", "start": 0, "end": 3, "id": 0, "ws": True},
        {"text": "met", "start": 5, "end": 8, "id": 1, "ws": False}], "spans": [], "meta": {}}
    assert to_compact(bad) is bad
    bool_ws = copy.deepcopy(bad)
    bool_ws["tokens"][1].update(start=4, end=7, ws=0)
    assert to_compact(bool_ws) is bool_ws


def test_record_writer_forms(tmp_path):
    recs = [normalize_record(copy.deepcopy(r)) for r in PIPELINE]
    out = tmp_path / "c.jsonl"
    with RecordWriter(out, form="compact") as w:
        for r in recs:
            w.write(r)
        w.write({"phrase": "Paris", "label": "LOC", "count": 2})  # not a record: unchanged
    written = lines_of(out.read_text())
    assert sum(map(is_compact, written)) == len(recs) - 1  # p4 keeps its token objects
    assert written[-1] == {"phrase": "Paris", "label": "LOC", "count": 2}
    assert list(read_records(out, allow_empty=True, policy=jsonl.ErrorPolicy("skip")))[:len(recs)] == recs
    assert dumps_record(recs[0]) == jsonl.dumps(recs[0])  # the default stays canonical
    jsonl.set_output_form("compact")
    assert dumps_record(recs[0]) == jsonl.dumps(to_compact(recs[0]))
    assert RecordWriter(tmp_path / "x.jsonl").form == "compact"
    with pytest.raises(Exception):
        jsonl.set_output_form("tiny")


# ------------------------------------------------------------------------- errors

BAD = [
    ('{"toks": ["a", "b"], "ws": "1"}', "'ws' has 1 flags for 2 tokens"),
    ('{"toks": ["a", "b"], "ws": "1x"}', "'ws' must hold only the characters 0 and 1"),
    ('{"toks": ["a", "b"], "ws": [true, 2]}', "'ws' must be a string of 0/1"),
    ('{"toks": ["a", 3]}', "token 1 of 'toks' is not a string"),
    ('{"toks": ["a", ""]}', "token 1 of 'toks' is empty"),
    ('{"toks": "a b"}', "'toks' must be a list of strings"),
    ('{"toks": ["a", "b"], "spans": [[0, 2, "X"]]}', "span 0 tokens 0..2 are out of range (2 tokens"),
    ('{"toks": ["a", "b"], "spans": [[1, 0, "X"]]}', "span 0 tokens 1..0 are out of range"),
    ('{"toks": ["a", "b"], "spans": [[0, 1]]}', "span 0 must be [token_start, token_end, label]"),
    ('{"toks": ["a", "b"], "spans": [[0, 1, ""]]}', "span 0 has an empty or missing label"),
    ('{"toks": ["a", "b"], "spans": [[0, 1, "X", {"label": "Y"}]]}', "repeats a position or the label"),
    ('{"toks": ["a", "b"], "candidates": [[0, 5]]}', "candidate 0 tokens 0..5 are out of range"),
    ('{"toks": ["a"], "text": "b", "offs": [0]}', "token 0 'a' does not match text[0:1] = 'b'"),
    ('{"toks": ["a"], "text": "a b", "offs": [0, 2]}', "'offs' must be a list of 1 token start offsets"),
    ('{"toks": ["a"], "offs": [0]}', "'offs' needs 'text'"),
    ('{"toks": ["a"], "tokens": ["a"]}', "either 'toks' (compact form) or 'tokens'"),
]


@pytest.mark.parametrize("line,message", BAD, ids=[m for _, m in BAD])
def test_broken_compact_records_raise(line, message):
    with pytest.raises(DataError, match=None) as err:
        normalize_record(orjson.loads(line))
    assert message in str(err.value)


@pytest.mark.parametrize("cmd", [["ner-validate"], ["ner-spans"], ["ner-convert", "--from", "jsonl", "--to", "conll"]])
def test_broken_compact_record_names_file_and_line(tmp_path, cmd):
    src = tmp_path / "in.jsonl"
    src.write_text('{"toks": ["Ann", "met", "Bo"]}\n{"toks": ["Ann", "met"], "ws": "101"}\n')
    proc = run(cmd + [str(src)])
    assert proc.returncode == 65, proc.stderr
    assert proc.stderr.strip() == f"{cmd[0]}: error: {src}:2: 'ws' has 3 flags for 2 tokens"
    src.write_text('{"toks": ["Ann", "met", "Bo"], "spans": [[2, 3, "PER"]]}\n')
    proc = run(cmd + ["-"], input=src.read_text())
    assert proc.returncode == 65
    assert "<stdin>:1: span 0 tokens 2..3 are out of range (3 tokens; token_end is inclusive)" in proc.stderr


def test_ner_dictmatch_fast_path_errors_name_file_and_line(tmp_path):
    d = tmp_path / "d.tsv"
    d.write_text("Paris\tLOC\n")
    src = tmp_path / "in.jsonl"
    src.write_text('{"toks": ["in", "Paris"]}\n{"toks": ["in", "Paris"], "spans": [[0, 9, "X"]]}\n')
    proc = run(["ner-dictmatch", "--compact", "--dict", str(d), str(src)])
    assert proc.returncode == 65
    assert f"{src}:2: span 0 tokens 0..9 are out of range" in proc.stderr
    assert len(proc.stdout.splitlines()) == 1  # the good record before it was written whole
    proc = run(["ner-dictmatch", "--compact", "--on-error", "skip", "--dict", str(d), str(src)])
    assert proc.returncode == 0 and "skipped 1 bad record(s)" in proc.stderr


# ------------------------------------------------------------------------- every command reads it

@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory):
    """The first 40 CoNLL-2003 dev sentences in both forms, and both mixed (odd lines compact)."""
    tmp = tmp_path_factory.mktemp("compact")
    with (shared_data / "conll2003" / "dev.jsonl").open("rb") as fh:
        recs = [normalize_record(orjson.loads(line)) for line in islice(fh, 40)]
    forms = {
        "canonical": [orjson.dumps(r) for r in recs],
        "compact": [orjson.dumps(to_compact(r)) for r in recs],
    }
    forms["mixed"] = [forms["compact" if i % 2 else "canonical"][i] for i in range(len(recs))]
    paths = {}
    for name, lines in forms.items():
        paths[name] = tmp / f"{name}.jsonl"
        paths[name].write_bytes(b"\n".join(lines) + b"\n")
    # predictions for ner-eval: every third span dropped, one label changed
    preds = copy.deepcopy(recs)
    for r in preds:
        r["spans"] = [dict(sp, label="MISC" if k == 1 else sp["label"]) for k, sp in enumerate(r["spans"]) if k % 3 != 2]
    for name, conv in (("pred-canonical", lambda r: r), ("pred-compact", to_compact)):
        paths[name] = tmp / f"{name}.jsonl"
        paths[name].write_bytes(b"".join(orjson.dumps(conv(r)) + b"\n" for r in preds))
    gaz = tmp / "gaz.tsv"
    gaz.write_text("".join(f"{r['text'][s['start']:s['end']]}\t{s['label']}\n" for r in recs for s in r["spans"]))
    paths["dict"] = gaz
    # scored candidates for ner-pseudo / ner-eval --ranked
    scored = []
    for r in recs:
        r = copy.deepcopy(r)
        r["candidates"] = [{"start": t["start"], "end": t["end"], "token_start": i, "token_end": i,
                            "text": t["text"], "scores": {"PER": (i % 7) / 7, "LOC": (i % 5) / 5}}
                           for i, t in enumerate(r["tokens"]) if t["text"][:1].isupper()]
        scored.append(r)
    for name, conv in (("scored-canonical", lambda r: r), ("scored-compact", to_compact)):
        paths[name] = tmp / f"{name}.jsonl"
        paths[name].write_bytes(b"".join(orjson.dumps(conv(r)) + b"\n" for r in scored))
    return paths


_BASELINES: dict = {}  # a command's output for canonical input, computed once per module

READERS = {
    "ner-validate": lambda p: ["ner-validate", p["IN"]],
    "ner-convert-conll": lambda p: ["ner-convert", "--from", "jsonl", "--to", "conll", p["IN"]],
    "ner-convert-gliner": lambda p: ["ner-convert", "--from", "prodigy", "--to", "gliner", p["IN"]],
    "ner-spans": lambda p: ["ner-spans", "--max-tokens", "30", p["IN"]],
    "ner-dictmatch": lambda p: ["ner-dictmatch", "--dict", p["dict"], p["IN"]],
    "ner-dictmatch-strict": lambda p: ["ner-dictmatch", "--strict", "--drop-existing", "--dict", p["dict"], p["IN"]],
    "ner-eval-gold": lambda p: ["ner-eval", "--json", "--gold", p["IN"], "--pred", p["pred-canonical"]],
    "ner-eval-pred": lambda p: ["ner-eval", "--json", "--gold", p["canonical"], "--pred", p["PRED"]],
    "ner-eval-ranked": lambda p: ["ner-eval", "--json", "--ranked", "--k", "3", "--gold", p["canonical"],
                                  "--pred", p["SCORED"]],
    "ner-pseudo": lambda p: ["ner-pseudo", "--top-k", "5", p["SCORED"]],
}


READER_CASES = [(name, "compact") for name in READERS] + [
    (name, "mixed") for name in ("ner-validate", "ner-dictmatch", "ner-eval-gold", "ner-spans")]


@pytest.mark.parametrize("name,form", READER_CASES)
def test_every_reader_takes_compact_input(corpus, name, form):
    """The real console script gives the same output for compact (or mixed) input as for
    canonical input; nothing tells it which form it reads."""
    outs = {}
    for f in ("canonical", form):
        if f == "canonical" and name in _BASELINES:
            outs[f] = _BASELINES[name]
            continue
        paths = {k: str(v) for k, v in corpus.items()}
        paths["IN"] = paths[f]
        paths["SCORED"] = paths["scored-compact" if f != "canonical" else "scored-canonical"]
        paths["PRED"] = paths["pred-compact" if f != "canonical" else "pred-canonical"]
        proc = run(READERS[name](paths))
        assert proc.returncode == 0, proc.stderr
        outs[f] = proc.stdout
        if name.startswith("ner-eval"):  # the report names its input files
            report = orjson.loads(proc.stdout)
            assert report.pop("gold") and report.pop("pred")
            outs[f] = report
        if f == "canonical":
            _BASELINES[name] = outs[f]
    assert outs[form] == outs["canonical"] and outs["canonical"]
    if name == "ner-eval-pred":
        assert outs[form]["micro"]["f1"] < 0.9


def test_library_readers_take_compact_input(corpus):
    """Readers of the commands that need a model (ner-divscore, ner-tag, ner-selftrain,
    ner-retrieve index) go through the same normalisation: checked at the library level."""
    from nertools.xner.candidates import read_candidates
    from nertools.xner.pseudo import read_scored

    assert list(read_candidates(str(corpus["scored-compact"]))) == \
        list(read_candidates(str(corpus["scored-canonical"])))
    assert list(read_scored(str(corpus["scored-compact"]))) == list(read_scored(str(corpus["scored-canonical"])))
    assert list(read_records(corpus["mixed"])) == list(read_records(corpus["canonical"]))


# ------------------------------------------------------------------------- every writer writes it

WRITERS = {
    "ner-validate": lambda p: ["ner-validate", p["canonical"]],
    "ner-convert": lambda p: ["ner-convert", "--from", "jsonl", "--to", "jsonl", p["canonical"]],
    "ner-spans": lambda p: ["ner-spans", p["canonical"]],
    "ner-dictmatch": lambda p: ["ner-dictmatch", "--dict", p["dict"], p["canonical"]],
    "ner-pseudo": lambda p: ["ner-pseudo", "--top-k", "5", "--keep-candidates", p["scored-canonical"]],
}


WRITER_CASES = [(name, "--compact") for name in WRITERS] + [
    ("ner-validate", "--output-form compact"), ("ner-validate", "env"), ("ner-dictmatch", "env")]


@pytest.mark.parametrize("name,how", WRITER_CASES)
def test_every_writer_writes_compact(corpus, name, how):
    paths = {k: str(v) for k, v in corpus.items()}
    base = WRITERS[name](paths)
    key = ("writer", name)
    if key not in _BASELINES:
        canonical = run(base)
        assert canonical.returncode == 0, canonical.stderr
        _BASELINES[key] = canonical
    canonical = _BASELINES[key]
    if how == "env":
        proc = run(base, env={"NERTOOLS_OUTPUT_FORM": "compact"})
    else:
        proc = run(base[:1] + how.split() + base[1:])
    assert proc.returncode == 0, proc.stderr
    got, want = lines_of(proc.stdout), lines_of(canonical.stdout)
    assert got and all(is_compact(r) for r in got)
    assert len(proc.stdout) * 2 < len(canonical.stdout)
    assert [normalize_record(r) for r in got] == [normalize_record(r) for r in want]


def _commands():
    """Every console script's click command (group sub-commands included), from pyproject."""
    import importlib
    import re
    from pathlib import Path

    import click

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    block = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    for name, target in re.findall(r'^(ner-[\w-]+) = "([\w.]+:\w+)"', block, re.M):
        mod, attr = target.split(":")
        cmd = getattr(importlib.import_module(mod), attr)
        subs = cmd.commands.items() if isinstance(cmd, click.Group) else [("", cmd)]
        for sub, c in subs:
            yield f"{name} {sub}".strip(), c


def test_output_form_option_everywhere_and_its_conflicts(corpus):
    """Every command that writes records (it has -o/--output) has --output-form and --compact;
    nothing else has them."""
    with_output = []
    for name, cmd in _commands():
        params = {p.name for p in cmd.params}
        has_form = {"output_form", "compact"} <= params
        assert has_form == ("output" in params), name
        if has_form:
            with_output.append(name)
            form = next(p for p in cmd.params if p.name == "output_form")
            assert form.envvar == "NERTOOLS_OUTPUT_FORM" and form.default == "canonical"
    assert {"ner-validate", "ner-convert", "ner-spans", "ner-divscore", "ner-pseudo", "ner-tag",
            "ner-dictmatch", "ner-annotate", "ner-retrieve query"} <= set(with_output)
    proc = run(["ner-dictmatch", "--help"])
    assert "--output-form [canonical|compact]" in proc.stdout and "NERTOOLS_OUTPUT_FORM" in proc.stdout
    src = str(corpus["canonical"])
    proc = run(["ner-validate", "--output-form", "canonical", "--compact", src])
    assert proc.returncode == 2 and "--compact contradicts --output-form canonical" in proc.stderr
    proc = run(["ner-validate", "--compact", "--output-form", "canonical", src])
    assert proc.returncode == 2
    proc = run(["ner-validate", "--output-form", "canonical", src], env={"NERTOOLS_OUTPUT_FORM": "compact"})
    assert proc.returncode == 0 and not is_compact(lines_of(proc.stdout)[0])  # the option beats the env
    proc = run(["ner-validate", src], env={"NERTOOLS_OUTPUT_FORM": "tiny"})
    assert proc.returncode == 2


def test_compact_pipeline_ends_in_the_same_records(corpus):
    """spans -> pseudo-like steps in compact form end where the canonical pipeline ends."""
    src = str(corpus["canonical"])
    env = {"NERTOOLS_OUTPUT_FORM": "compact"}
    a = run(["ner-spans", src], env=env)
    b = run(["ner-validate", "-"], input=a.stdout)
    c = run(["ner-spans", src])
    assert a.returncode == b.returncode == c.returncode == 0
    assert b.stdout == c.stdout


# ------------------------------------------------------------------------- ner-dictmatch

@pytest.mark.parametrize("options", [{}, {"overwrite": True}, {"drop_existing": True}])
def test_dictmatch_compact_fast_path_equals_canonical_path(shared_data, options):
    from nertools.gener.dictionary import Dictionary
    from nertools.gener.dictmatch import DictionaryMatcher, annotate_records

    with (shared_data / "conll2003" / "train.jsonl").open("rb") as fh:
        recs = [normalize_record(orjson.loads(line)) for line in islice(fh, 1500)]
    gaz = {(r["text"][s["start"]:s["end"]], s["label"]) for r in recs[::3] for s in r["spans"]}
    for r in recs[::2]:  # half the records without their gold spans, for matches to land
        r["spans"] = []
    entries = sorted(gaz) + [("Reuters", "ORG"), ("Pakistan", "LOC")]
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as fh:
        fh.write("".join(f"{p}\t{lab}\n" for p, lab in entries))
    try:
        d = Dictionary.load(fh.name)
    finally:
        os.unlink(fh.name)
    canon = DictionaryMatcher(d, **options)
    fast = DictionaryMatcher(d, **options)
    want = list(annotate_records(canon, enumerate(copy.deepcopy(recs), 1)))
    compact_in = [(i, orjson.loads(orjson.dumps(to_compact(r)))) for i, r in enumerate(recs, 1)]
    got = list(annotate_records(fast, compact_in, form="compact"))
    assert all(is_compact(r) for r in got)
    assert [normalize_record(r) for r in got] == want
    assert (fast.matches, fast.tokens, fast.records) == (canon.matches, canon.tokens, canon.records)
    assert canon.matches > 100
    # compact input with canonical output: canonical records come out
    again = DictionaryMatcher(d, **options)
    assert list(annotate_records(again, [(i, copy.deepcopy(o)) for i, o in compact_in])) == want
