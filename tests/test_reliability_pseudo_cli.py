"""Reliability of ner-pseudo's input checks, count and --threads bounds, NFD text, --template
checks and ner-retrieve query --dict-out (issue 10: D1, D4, D5, D10, D16, D18, D19, D21, D24,
B4, B6, B9).

In-process with click's CliRunner: no model is ever loaded (a check that passes would get as
far as loading ``/nonexistent`` and fail with exit 1 instead of 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nertools.core.record import default_tokenize, normalize_record
from nertools.errors import EXIT_DATA, EXIT_USAGE

TEXT = "LONDON 1996"  # tokens: LONDON [0, 6), 1996 [7, 11)


def invoke(command, args, stdin=""):
    return CliRunner().invoke(command, args, input=stdin)


def line(cand: dict, rid: str = "a", text: str = TEXT) -> str:
    return json.dumps({"id": rid, "text": text, "candidates": [cand]}) + "\n"


GOOD = {"start": 0, "end": 6, "token_start": 0, "token_end": 0, "scores": {"LOC": 0.1}}


def bad(**change) -> dict:
    cand = {**GOOD, **change}
    return {k: v for k, v in cand.items() if v is not ...}


def one_line_error(result, prog: str) -> str:
    """The single stderr line of a failed command; no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


# ------------------------------------------------------------------ ner-pseudo input checks
PSEUDO_BAD = [
    # D4: offsets and labels were copied into the output unchecked
    ("end-out-of-range", bad(end=9999), "out of range"),
    ("token-end-out-of-range", bad(token_end=999), "out of range"),
    ("offsets-disagree", bad(end=11), "disagree"),
    ("empty-label", bad(scores={"": 0.05, "LOC": 0.1}), "empty label"),
    # D19: KeyError 'start' traceback
    ("no-start", bad(start=...), "start"),
    # D24: misleading "has no 'scores'"
    ("scores-is-list", bad(scores=[0.1]), "'scores' must be an object"),
    # B4 (ner-pseudo side): a non-finite score written as null
    ("null-score", bad(scores={"LOC": None}), "is null"),
]


@pytest.mark.parametrize("name,cand,message", PSEUDO_BAD, ids=[c[0] for c in PSEUDO_BAD])
def test_pseudo_rejects_bad_candidates_with_file_and_line(tmp_path, name, cand, message):
    from nertools.cli.pseudo import main as pseudo

    src = tmp_path / "c.jsonl"
    src.write_text(line(GOOD, rid="ok") + line(cand, rid="bad"))
    out = tmp_path / "p.jsonl"
    out.write_text("keep\n")
    r = invoke(pseudo, ["--top-k", "5", "--all", str(src), "-o", str(out)])
    assert r.exit_code == EXIT_DATA, r.stderr
    err = one_line_error(r, "ner-pseudo")
    assert f"{src}:2: " in err and "'bad'" in err and message in err, err
    assert out.read_text() == "keep\n"  # -o untouched


def test_pseudo_candidates_not_a_list(tmp_path):
    from nertools.cli.pseudo import main as pseudo

    r = invoke(pseudo, ["--top-k", "5", "-"],
               json.dumps({"id": "a", "text": TEXT, "candidates": {"start": 0}}) + "\n")
    assert r.exit_code == EXIT_DATA
    err = one_line_error(r, "ner-pseudo")
    assert "<stdin>:1: " in err and "'candidates' must be a list" in err, err


@pytest.mark.parametrize("normalize", ["rank", "none"])
@pytest.mark.parametrize("from_stdin", [False, True])
def test_pseudo_on_error_skip_skips_bad_candidates(tmp_path, normalize, from_stdin):
    """B9: errors found in the stage go through --on-error like broken JSON does."""
    from nertools.cli.pseudo import main as pseudo

    data = (line(GOOD, rid="r1") + line(bad(start=...), rid="r2")
            + line(bad(scores={"LOC": None}), rid="r3") + line({**GOOD, "scores": {"LOC": 0.3}}, rid="r4"))
    src = tmp_path / "c.jsonl"
    src.write_text(data)
    args = ["--top-k", "5", "--all", "--on-error", "skip", "--normalize", normalize]
    r = invoke(pseudo, args + ["-"], data) if from_stdin else invoke(pseudo, args + [str(src)])
    assert r.exit_code == 0, r.stderr
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["id"] for x in recs] == ["r1", "r4"]
    assert [[(s["start"], s["end"], s["label"], s["score"]) for s in x["spans"]] for x in recs] == \
        [[(0, 6, "LOC", 0.1)], [(0, 6, "LOC", 0.3)]]
    assert "skipped 2 bad record(s)" in r.stderr and ":2: " in r.stderr


def test_pseudo_output_is_valid(tmp_path):
    """What ner-pseudo writes passes the record validation (D4)."""
    from nertools.cli.pseudo import main as pseudo

    r = invoke(pseudo, ["--top-k", "5", "-"], line(GOOD))
    assert r.exit_code == 0, r.stderr
    rec = json.loads(r.stdout)
    assert normalize_record(rec)["spans"][0]["label"] == "LOC"


# ------------------------------------------------------------------ --top-percent (B6)
def test_top_percent_keeps_at_least_one_and_rounds_half_up():
    from nertools.xner.pseudo import Selection, select_corpus, top_percent_count

    assert top_percent_count(30, 1) == 1      # int(round(0.3)) == 0 kept nothing
    assert top_percent_count(50, 1) == 1      # round(0.5) == 0 (banker's rounding)
    assert top_percent_count(250, 1) == 3     # round(2.5) == 2
    assert top_percent_count(1000, 2) == 20
    picks = [(n, 0, "LOC", n / 100) for n in range(30)]
    kept = select_corpus(picks, 30, Selection(top_percent=1))
    assert dict(kept) == {0: [(0, "LOC", 0.0)]}
    picks = [(n, 0, "LOC", n / 1000) for n in range(250)]
    assert sorted(select_corpus(picks, 250, Selection(top_percent=1))) == [0, 1, 2]


def test_top_percent_cli_small_input():
    from nertools.cli.pseudo import main as pseudo

    data = "".join(line({**GOOD, "scores": {"LOC": 0.1 * (k + 1)}}, rid=f"r{k}") for k in range(30))
    r = invoke(pseudo, ["--top-percent", "1", "-"], data)
    assert r.exit_code == 0, r.stderr
    assert [json.loads(x)["id"] for x in r.stdout.splitlines()] == ["r0"]


# ------------------------------------------------------------------ counts and --threads
def test_huge_counts_are_usage_errors(tmp_path):
    """D18 (ner-eval --k >= 2^64 was an orjson TypeError traceback) and the other counts."""
    from nertools.cli.convert import main as convert
    from nertools.cli.evaluate import main as evaluate
    from nertools.cli.pseudo import main as pseudo
    from nertools.cli.spans import main as spans

    gold = tmp_path / "g.jsonl"
    gold.write_text(json.dumps({"id": "a", "text": TEXT, "spans": [{"start": 0, "end": 6, "label": "LOC"}]}) + "\n")
    pred = tmp_path / "p.jsonl"
    pred.write_text(line(GOOD))
    huge = "99999999999999999999"
    cases = [
        (evaluate, ["--ranked", "--json", "--gold", str(gold), "--pred", str(pred), "--k", huge], "--k"),
        (pseudo, ["--top-k", huge, str(pred)], "--top-k"),
        (spans, ["--max-tokens", huge, str(gold)], "--max-tokens"),
        (convert, ["-f", "conll", "-t", "jsonl", "--token-col", huge, "-"], "--token-col"),
    ]
    for command, args, option in cases:
        r = invoke(command, args)
        assert r.exit_code == EXIT_USAGE, (option, r.stderr, r.exception)
        assert f"'{option}'" in r.stderr and "too large" in r.stderr and "Traceback" not in r.stderr
    ok = invoke(evaluate, ["--ranked", "--json", "--gold", str(gold), "--pred", str(pred), "--k", "2147483647"])
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)  # the largest accepted K still serialises


@pytest.mark.parametrize("value", ["100000", "99999999999999999999", "0"])
def test_threads_bounds_are_usage_errors(tmp_path, value):
    """D10 (--threads 100000 hung) and D16 (an overflow traceback): exit 2 before any model."""
    from nertools.cli.divscore import main as divscore
    from nertools.cli.retrieve import main as retrieve

    src = tmp_path / "c.jsonl"
    src.write_text(line(GOOD))
    for command, args in [
        (divscore, ["--model", "/nonexistent", "--seed", "PER=Masaki", str(src)]),
        (retrieve, ["index", "--corpus", str(src), "--model", "/nonexistent", "--out", str(tmp_path / "ix")]),
    ]:
        r = invoke(command, args + ["--threads", value])
        assert r.exit_code == EXIT_USAGE, (command.name, r.stderr, r.exception)
        assert "'--threads'" in r.stderr and "Traceback" not in r.stderr


def test_threads_help_documents_the_bound():
    from nertools.cli.divscore import main as divscore
    from nertools.cli.options import MAX_THREADS

    r = invoke(divscore, ["--help"])
    assert f"1-{MAX_THREADS}" in " ".join(r.stdout.split())


# ------------------------------------------------------------------ --template (D21)
def test_template_without_seed_is_a_usage_error_before_loading(tmp_path):
    from nertools.cli.divscore import main as divscore

    src = tmp_path / "c.jsonl"
    src.write_text(line(GOOD))
    base = ["--model", "/nonexistent/model", "--device", "cpu", "--no-progress", "--seed", "PER=Masaki", str(src)]
    r = invoke(divscore, base + ["--template", "hello world"])
    assert r.exit_code == EXIT_USAGE, r.stderr
    err = one_line_error(r, "ner-divscore")
    assert "'hello world'" in err and "[SEED]" in err and "nonexistent" not in err
    # --method official takes a template too; 1way has no template test and goes on to load
    r = invoke(divscore, base + ["--method", "official", "--template", "The [LABEL] name"])
    assert r.exit_code == EXIT_USAGE, r.stderr
    r = invoke(divscore, base + ["--method", "1way", "--template", "hello world"])
    assert r.exit_code not in (0, EXIT_USAGE) and "nonexistent" in r.stderr


def test_check_template_library():
    from nertools.errors import UsageError
    from nertools.xner.scoring import check_template

    check_template("2way", None)
    check_template("2way", "The [LABEL]: [SEED]")
    check_template("prompt", "no seed here")
    with pytest.raises(UsageError):
        check_template("2way", "The [LABEL]:")


# ------------------------------------------------------------------ NFD text (D5)
NFD = "Jose\u0301 visited Zu\u0308rich"  # "José visited Zürich", decomposed


def test_default_tokenizer_keeps_combining_marks_in_words():
    assert [NFD[a:b] for a, b in default_tokenize(NFD)] == ["Jose\u0301", "visited", "Zu\u0308rich"]
    # composed text tokenises the same way; ASCII and punctuation are unchanged
    nfc = "Jos\u00e9 visited Z\u00fcrich"
    assert [nfc[a:b] for a, b in default_tokenize(nfc)] == ["Jos\u00e9", "visited", "Z\u00fcrich"]
    text = "don't stop Jean-Luc in U.S. \u00e9!\u0301 x"
    assert [text[a:b] for a, b in default_tokenize(text)] == \
        ["don't", "stop", "Jean-Luc", "in", "U", ".", "S", ".", "\u00e9", "!\u0301", "x"]
    # Devanagari vowel signs are marks too: one word, not three pieces
    hindi = "\u0939\u093f\u0928\u094d\u0926\u0940"
    assert default_tokenize(hindi) == [(0, len(hindi))]


def test_spans_never_cut_a_mark_off(tmp_path):
    from nertools.cli.spans import main as spans

    r = invoke(spans, ["-"], json.dumps({"id": "n", "text": NFD}) + "\n")
    assert r.exit_code == 0, r.stderr
    texts = [c["text"] for c in json.loads(r.stdout)["candidates"]]
    assert "Jose\u0301" in texts and "Zu\u0308rich" in texts
    assert not any(t.startswith(("\u0301", "\u0308")) or t == "Jose" for t in texts), texts


@pytest.mark.parametrize("text_form", ["NFD", "NFC"])
def test_dictmatch_matches_nfc_entries_in_nfd_text_and_back(tmp_path, text_form):
    import unicodedata

    from nertools.cli.dictmatch import main as dictmatch

    text = unicodedata.normalize(text_form, "Jos\u00e9 Mar\u00eda visited Z\u00fcrich and Jose")
    entries = "Jose\tPER\nZ\u00fcrich\tLOC\nJos\u00e9 Mar\u00eda\tPER\n"
    if text_form == "NFC":  # the other way round: decomposed entries, composed text
        entries = unicodedata.normalize("NFD", entries)
    gaz = tmp_path / "d.tsv"
    gaz.write_text(entries, encoding="utf-8")
    r = invoke(dictmatch, ["--dict", str(gaz), "-"], json.dumps({"id": "n", "text": text}) + "\n")
    assert r.exit_code == 0, r.stderr
    rec = json.loads(r.stdout)
    got = [(text[s["start"]:s["end"]], s["label"]) for s in rec["spans"]]
    nfc = lambda t: unicodedata.normalize("NFC", t)  # noqa: E731
    assert [(nfc(t), lab) for t, lab in got] == \
        [("Jos\u00e9 Mar\u00eda", "PER"), ("Z\u00fcrich", "LOC"), ("Jose", "PER")]
    assert rec["text"] == text  # offsets are into the text as given, never normalised
    normalize_record(rec)


# ------------------------------------------------------------------ --dict-out (D1)
def test_dict_out_written_when_stdout_closes_early(tmp_path, monkeypatch):
    import nertools.cli.retrieve as cli_retrieve
    import nertools.gener.query as questions

    evidence = [{"id": f"s{i}", "text": "Paris", "spans": []} for i in range(1000)]
    entries = [("Paris", "LOC", 3), ("Berlin", "LOC", 1)]
    monkeypatch.setattr(questions, "query_dense", lambda *a, **k: (evidence, entries))

    class ClosedEarly:  # a reader that stops after the first line (| head -1)
        def __init__(self, path):
            self.n = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, rec):
            self.n += 1
            if self.n > 1:
                raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli_retrieve, "RecordWriter", ClosedEarly)
    (tmp_path / "idx").mkdir()
    out = tmp_path / "dict.tsv"
    r = invoke(cli_retrieve.main, ["query", "--index", str(tmp_path / "idx"), "--label", "LOC",
                                   "--device", "cpu", "--dict-out", str(out)])
    assert r.exit_code == 0, (r.stderr, r.exception)
    assert out.exists(), r.stderr
    assert [x.split("\t")[:2] for x in out.read_text().splitlines()] == [["Paris", "LOC"], ["Berlin", "LOC"]]


def test_pseudo_labels_without_scores_is_no_traceback():
    """--labels naming a label no candidate has a score for: nothing to pick, no ValueError."""
    from nertools.cli.pseudo import main as pseudo

    r = invoke(pseudo, ["--top-k", "5", "--labels", "PER", "--all", "-"], line(GOOD) + line(
        {**GOOD, "scores": {"LOC": 0.2, "PER": 0.3}}, rid="b"))
    assert r.exit_code == 0, (r.stderr, r.exception)
    assert [[s["label"] for s in json.loads(x)["spans"]] for x in r.stdout.splitlines()] == [[], ["PER"]]


TINY = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "xner-official" / "roberta-tiny-random"


def test_divscore_bad_candidates_name_file_and_line_and_follow_on_error(tmp_path):
    """D24/B9 for ner-divscore: the candidates are checked as the records are read."""
    from nertools.cli.divscore import main as divscore

    src = tmp_path / "c.jsonl"
    src.write_text(line(GOOD, rid="ok") + line(bad(start=...), rid="bad")
                   + json.dumps({"id": "none", "text": TEXT}) + "\n")
    base = ["--model", str(TINY), "--device", "cpu", "--threads", "1", "--no-progress", "-q",
            "--seed", "LOC=Paris", str(src)]
    r = invoke(divscore, base)
    assert r.exit_code == EXIT_DATA, r.stderr
    err = one_line_error(r, "ner-divscore")
    assert f"{src}:2: record 'bad': candidate 0 needs integer" in err, err
    r = invoke(divscore, base + ["--on-error", "skip"])
    assert r.exit_code == 0, r.stderr
    assert [json.loads(x)["id"] for x in r.stdout.splitlines()] == ["ok"]
    assert "skipped 2 bad record(s)" in r.stderr and f"{src}:2: " in r.stderr
