"""Shared command-line options and value parsers: -q/--quiet, --dtype, LABEL=VALUE, comma lists.

In-process with click's CliRunner (no model is loaded except in the divscore test).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from nertools.core.labels import parse_key_value, parse_key_values, parse_list
from nertools.errors import EXIT_USAGE, UsageError

SHARED = Path(__file__).resolve().parents[2] / "shared"
TINY = SHARED / "fixtures" / "xner-official" / "roberta-tiny-random"
RECORDS = ('{"id": "a", "text": "Masaki Yoshida visited Singapore ."}\n'
           '{"id": "b", "text": "Ann met Bo in Paris ."}\n')


def invoke(command, args, stdin=RECORDS):
    return CliRunner().invoke(command, args, input=stdin, catch_exceptions=False)


# ------------------------------------------------------------------------- value parsers
def test_parse_key_value():
    assert parse_key_value(" PER = Masaki Yoshida ", option="--seed") == ("PER", "Masaki Yoshida")
    assert parse_key_value("LOC=a=b", option="--x") == ("LOC", "a=b")  # split at the first "="
    assert parse_key_value("0.2", option="--threshold", default_key="*") == ("*", "0.2")
    assert parse_key_value("=0.2", option="--threshold", default_key="*") == ("*", "0.2")
    for spec, msg in [("PER", "is not of the form LABEL=TEXT"), ("PER=", "empty text"),
                      ("=x", "empty label"), ("PER= ", "empty text")]:
        with pytest.raises(UsageError, match=msg) as e:
            parse_key_value(spec, option="--seed", form="LABEL=TEXT")
        assert e.value.exit_code == EXIT_USAGE and str(e.value).startswith("--seed ")
    assert parse_key_values(["A=1", "B=2", "A=3"], option="--x") == {"A": "3", "B": "2"}


def test_parse_list():
    assert parse_list("PER, LOC,,") == ["PER", "LOC"]
    assert parse_list(None) is None and parse_list("") is None
    assert parse_list(" , ") == []  # given, but empty: no label allowed


# ------------------------------------------------------------------------- --quiet
def _scored_corpus() -> str:
    recs = []
    for i, (a, b) in enumerate([(0.1, 0.9), (0.8, 0.2)]):
        recs.append({"id": f"r{i}", "text": "Ann met Bo",
                     "candidates": [{"start": 0, "end": 3, "token_start": 0, "token_end": 0,
                                     "scores": {"PER": a, "LOC": b}}]})
    return "".join(json.dumps(r) + "\n" for r in recs)


def test_quiet_silences_informational_lines(tmp_path):
    from nertools.cli.dictmatch import main as dictmatch
    from nertools.cli.evaluate import main as evaluate
    from nertools.cli.pseudo import main as pseudo
    from nertools.cli.spans import main as spans
    from nertools.cli.validate import main as validate

    gaz = tmp_path / "gaz.tsv"
    gaz.write_text("Singapore\tLOC\n")
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "a", "text": "Ann", "spans": []}\n{"id": "z", "text": "Bo", "spans": []}\n')
    cases = [
        (spans, [], "ner-spans: 2 record(s)", RECORDS),
        (pseudo, ["--top-k", "1"], "ner-pseudo: 2 records", _scored_corpus()),
        (dictmatch, ["--dict", str(gaz)], "ner-dictmatch: 1 phrases", RECORDS),
        (evaluate, ["--gold", str(gold), "--pred", "-", "--missing", "empty", "--json"],
         "ner-eval: note:", '{"id": "a", "text": "Ann", "spans": []}\n'),
        (validate, [], None, RECORDS),
    ]
    for command, args, line, stdin in cases:
        loud = invoke(command, args, stdin)
        assert loud.exit_code == 0, (command.name, loud.stderr)
        if line is not None:
            assert line in loud.stderr, (command.name, loud.stderr)
        for flag in ("-q", "--quiet"):
            quiet = invoke(command, [*args, flag], stdin)
            assert quiet.exit_code == 0 and quiet.stderr == "", (command.name, quiet.stderr)
            assert quiet.stdout == loud.stdout
    # the switch is per run: a later run without it logs again
    assert "ner-spans: 2 record(s)" in invoke(spans, []).stderr


def test_quiet_keeps_errors():
    from nertools.cli.validate import main as validate

    r = invoke(validate, ["-q"], '{"text": \n')
    assert r.exit_code == 65 and r.stderr.startswith("ner-validate: error: <stdin>:1: broken JSON")


def test_every_command_has_quiet():
    from nertools.cli import convert, dictmatch, divscore, evaluate, pseudo, retrieve, spans, validate

    commands = [m.main for m in (convert, dictmatch, divscore, evaluate, pseudo, spans, validate)]
    commands += [retrieve.main.commands["index"], retrieve.main.commands["query"]]
    for command in commands:
        opts = {o for p in command.params for o in getattr(p, "opts", [])}
        assert {"-q", "--quiet"} <= opts, command.name


# ------------------------------------------------------------------------- --dtype, usage errors
@pytest.mark.parametrize("prog", ["divscore", "retrieve index", "retrieve query"])
def test_bad_dtype_exits_2(prog, tmp_path):
    from nertools.cli import divscore, retrieve

    if prog == "divscore":
        command, args = divscore.main, ["--seed", "PER=x"]
    else:
        command = retrieve.main
        args = (["index", "--corpus", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "idx")]
                if prog.endswith("index") else ["query", "--label", "LOC", "--index", str(tmp_path)])
    r = invoke(command, [*args, "--dtype", "float8"])
    assert r.exit_code == 2 and "--dtype" in r.stderr and "float8" in r.stderr


def test_dtype_keeps_the_short_spellings():
    from nertools.cli.divscore import main

    dtype = next(p for p in main.params if p.name == "dtype")
    assert dtype.type.convert("BF16", dtype, None) == "bf16"
    assert dtype.type.convert("float16", dtype, None) == "float16"


def test_bad_key_values_exit_2_on_one_line(tmp_path):
    from nertools.cli.dictmatch import main as dictmatch
    from nertools.cli.pseudo import main as pseudo
    from nertools.cli.retrieve import main as retrieve

    gaz = tmp_path / "gaz.tsv"
    gaz.write_text("Singapore\tLOC\n")
    for command, args, msg in [
        (dictmatch, ["--dict", str(gaz), "--type-word", "LOC"], "ner-dictmatch: error: --type-word 'LOC'"),
        (pseudo, ["--threshold", "LOC=high"], "ner-pseudo: error: --threshold 'LOC=high'"),
        (retrieve, ["query", "--index", str(tmp_path), "--label", "LOC", "--type-word", "=city"],
         "ner-retrieve query: error: --type-word '=city': empty label"),
    ]:
        r = invoke(command, args)
        assert r.exit_code == 2 and r.stderr.startswith(msg), r.stderr
        assert r.stderr.count("\n") == 1


# ------------------------------------------------------------------------- ner-divscore's library form
def test_scorer_defaults_come_from_the_scorers():
    import inspect

    from nertools.xner.causal import DEFAULT_TEMPERATURE, CausalDivergenceScorer
    from nertools.xner.masked import MaskedDivergenceScorer
    from nertools.xner.scoring import scorer_default

    assert scorer_default("masked", "batch_tokens") == \
        inspect.signature(MaskedDivergenceScorer).parameters["batch_tokens"].default
    assert scorer_default("causal", "batch_tokens") == \
        inspect.signature(CausalDivergenceScorer).parameters["batch_tokens"].default
    assert scorer_default("causal", "temperature") == DEFAULT_TEMPERATURE
    assert scorer_default("masked", "temperature") == DEFAULT_TEMPERATURE


def test_official_method_on_a_causal_lm_is_a_usage_error():
    from nertools.xner.scoring import make_scorer
    from nertools.xner.seeds import Seed

    lm = SimpleNamespace(kind="causal", name="fake")
    with pytest.raises(UsageError, match="--method official"):
        make_scorer(lm, [Seed.make("PER", "x")], method="official")


def test_with_label_words():
    from nertools.xner.scoring import with_label_words
    from nertools.xner.seeds import collect_seeds

    seeds = collect_seeds(["PER=Masaki Yoshida", "LOC=Singapore"])
    out = with_label_words(seeds, {"LOC": "place"})
    assert [(s.label, s.label_word) for s in out] == [("PER", "person"), ("LOC", "place")]
    with pytest.raises(UsageError, match="without a seed: ORG"):
        with_label_words(seeds, {"ORG": "company"})


@pytest.mark.skipif(not TINY.is_dir(), reason="shared X-NER fixtures absent")
def test_divscore_command_is_the_library_function(tmp_path):
    from nertools.cli.divscore import main
    from nertools.cli.spans import main as spans
    from nertools.core.jsonl import read_records
    from nertools.xner.scoring import divscore
    from nertools.xner.seeds import collect_seeds

    cands = invoke(spans, ["-q"]).stdout
    r = invoke(main, ["--model", str(TINY), "--seed", "PER=Masaki Yoshida", "--label-word", "PER=human",
                      "--method", "official", "--threads", "1", "-q"], cands)
    assert r.exit_code == 0 and r.stderr == ""  # -q also turns the progress bar off
    cli = [json.loads(x) for x in r.stdout.splitlines()]
    path = tmp_path / "cands.jsonl"
    path.write_text(cands)
    lib = list(divscore(read_records(path), collect_seeds(["PER=Masaki Yoshida"]), model=str(TINY),
                        method="official", label_words={"PER": "human"}))
    assert cli == json.loads(json.dumps(lib))
    assert sum(len(rec["candidates"]) for rec in cli) > 0
