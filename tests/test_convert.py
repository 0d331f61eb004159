"""ner-convert and nertools.formats.convert: formats, round trips on the shared data, errors."""

import gzip
import subprocess

import orjson
import pytest

from nertools.formats.conll import DOCSTART, read_conll
from nertools.formats.convert import convert, read_format, write_format
from nertools.formats.doccano import doccano_to_record
from nertools.errors import DataError
from nertools.core.jsonl import ErrorPolicy, read_records

CONLL4 = (f"{DOCSTART} -X- -X- O\n\n"
          "EU NNP B-NP I-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP I-MISC\n\n"
          "Peter NNP B-NP I-PER\nBlackburn NNP I-NP I-PER\n\n"
          f"{DOCSTART} -X- -X- O\n\n"
          "Bonn NNP B-NP I-LOC\nCologne NNP I-NP B-LOC\n\n")


def write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def jsonl_lines(path):
    return [orjson.loads(line) for line in open(path, "rb") if line.strip()]


# ---------------------------------------------------------------- shared data round trips

def test_conll_jsonl_conll_is_byte_identical_on_all_shared_files(shared_data, tmp_path):
    files = sorted(shared_data.glob("*/*.conll"))
    assert len(files) >= 7
    for f in files:
        js, back = tmp_path / "x.jsonl", tmp_path / "x.conll"
        n = convert(f, js, "conll", "jsonl")
        assert n == sum(1 for _ in open(js, "rb"))
        convert(js, back, "jsonl", "conll")
        assert back.read_bytes() == f.read_bytes(), f


def test_conll_to_jsonl_matches_the_shared_jsonl(shared_data):
    for name in ("wnut17/dev", "ncbi_disease/dev"):
        prefix = name.replace("/", "-") + "-"
        ours = read_conll(shared_data / f"{name}.conll", id_prefix=prefix)
        theirs = read_records(shared_data / f"{name}.jsonl")
        n = 0
        for a, b in zip(ours, theirs, strict=True):
            assert a["meta"]["conll"] == {"scheme": "BIO2", "sep": "\t"}
            a.pop("meta"), b.pop("meta")
            assert a == b
            n += 1
        assert n > 900


def test_retagging_to_every_scheme_and_back(shared_data, tmp_path):
    src = shared_data / "wnut17" / "dev.conll"
    for scheme in ("IOB1", "IOBES", "BILOU"):
        other, back = tmp_path / f"{scheme}.conll", tmp_path / "back.conll"
        convert(src, other, "conll", "conll", out_scheme=scheme)
        text = other.read_text()
        if scheme != "IOB1":
            assert ("\tS-" in text) == (scheme == "IOBES") and ("\tU-" in text) == (scheme == "BILOU")
        # auto-detection recognises the scheme; writing BIO2 gives the original back
        assert next(read_conll(other))["meta"]["conll"]["scheme"] == scheme
        convert(other, back, "conll", "conll", out_scheme="BIO2")
        assert back.read_bytes() == src.read_bytes()


def test_every_json_format_round_trips_spans(shared_data, tmp_path):
    src = shared_data / "wnut17" / "dev.jsonl"
    gold = list(read_records(src))
    for fmt in ("jsonl", "prodigy", "doccano", "gliner", "hf"):
        out = tmp_path / f"x.{fmt}"
        convert(src, out, "jsonl", fmt)
        back = list(read_format(fmt, out))
        assert [r["id"] for r in back] == [r["id"] for r in gold]
        assert [r["text"] for r in back] == [r["text"] for r in gold]
        if fmt == "doccano":  # character offsets only: the text is tokenised afresh
            def chars(recs):
                return [[(s["start"], s["end"], s["label"]) for s in r["spans"]] for r in recs]
            assert chars(back) == chars(gold)
            continue
        assert [r["spans"] for r in back] == [r["spans"] for r in gold], fmt
        assert [r["tokens"] for r in back] == [r["tokens"] for r in gold], fmt


# ---------------------------------------------------------------- conll details

def test_conll2003_four_columns_docstart_iob1_space(tmp_path):
    src = write(tmp_path / "eng.train", CONLL4)
    recs = list(read_conll(src))
    assert len(recs) == 3
    assert [r["meta"]["doc"] for r in recs] == [0, 0, 1]
    assert recs[0]["meta"]["docstart"] == [f"{DOCSTART} -X- -X- O"]
    assert "docstart" not in recs[1]["meta"]
    cm = recs[0]["meta"]["conll"]
    assert cm["scheme"] == "IOB1" and cm["sep"] == " " and cm["columns"]["1"] == ["NNP", "VBZ", "JJ"]
    # IOB1: I- starts an entity; B- only after an adjacent same-type entity
    assert [(recs[2]["text"][s["start"]:s["end"]], s["label"]) for s in recs[2]["spans"]] == [
        ("Bonn", "LOC"), ("Cologne", "LOC")]
    assert recs[0]["spans"][0]["label"] == "ORG" and recs[0]["spans"][1]["label"] == "MISC"
    js, back = tmp_path / "x.jsonl", tmp_path / "back"
    convert(src, js, "conll", "jsonl")
    convert(js, back, "jsonl", "conll")
    assert back.read_text() == CONLL4
    # the same data as a tab-separated BIO2 two-column file
    two = tmp_path / "two.conll"
    convert(js, two, "jsonl", "conll", out_scheme="BIO2", sep="\t")
    first = two.read_text().split("\n\n")[1].split("\n")[0]
    assert first == "EU\tNNP\tB-NP\tB-ORG"


def test_conll_column_selection(tmp_path):
    src = write(tmp_path / "c.conll", "B-PER x Ann\nO y said\n\n")
    rec = next(read_conll(src, token_col=-1, tag_col=0))
    assert rec["text"] == "Ann said" and rec["spans"][0]["label"] == "PER"
    out = tmp_path / "o.conll"
    write_format("conll", [rec], out)
    assert out.read_text() == "B-PER x Ann\nO y said\n\n"
    with pytest.raises(DataError, match="--tag-col 5 is out of range"):
        list(read_conll(src, tag_col=5))


def test_conll_tolerates_crlf_missing_final_blank_and_extra_blanks(tmp_path):
    src = write(tmp_path / "c.conll", "\n\nA\tB-PER\r\nb\tO\r\n\n\n\nC\tB-LOC")
    recs = list(read_conll(src))
    assert [r["text"] for r in recs] == ["A b", "C"]
    assert recs[1]["spans"][0]["label"] == "LOC"


@pytest.mark.parametrize("text, line, message", [
    ("A\tB-PER\nb\tO\textra\n\n", 2, "expected 2 columns"),
    ("A\tB-PER\n\nb\tE-PER\n\n", 3, "not a BIO2 tag"),
    ("A\tB-\n\n", 1, "malformed tag"),
    ("A\tPERSON\n\n", 1, "malformed tag"),
    ("A\tB-PER\n\tO\n\n", 2, "empty token"),
])
def test_conll_errors_name_file_and_line(tmp_path, text, line, message):
    src = write(tmp_path / "bad.conll", text)
    with pytest.raises(DataError, match=message) as e:
        list(read_conll(src, scheme="BIO2"))
    assert e.value.path == src and e.value.line == line
    assert str(e.value).startswith(f"{src}:{line}: ")


def test_conll_unknown_tag_after_detection_window(tmp_path):
    src = write(tmp_path / "c.conll", "A\tB-PER\n\n" * 3 + "A\tS-PER\n\n")
    with pytest.raises(DataError, match=r"c.conll:7: tag 'S-PER' is not a BIO2 tag \(scheme "
                                        r"detected from the first 2 sentences"):
        list(read_conll(src, detect_window=2))


def test_conll_skip_policy_and_empty_input(tmp_path):
    src = str(tmp_path / "c.conll")
    (tmp_path / "c.conll").write_bytes(b"A\tB-PER\n\nb\tO\tx\nc\tO\n\nD\tB-LOC\n\n\xff\tO\n\n")
    policy = ErrorPolicy("skip")
    recs = list(read_conll(src, policy=policy))
    assert [r["text"] for r in recs] == ["A", "D"]
    assert policy.skipped == 2 and "c.conll:3:" in policy.first
    empty = write(tmp_path / "e.conll", "\n\n")
    with pytest.raises(DataError, match="no sentences"):
        list(read_conll(empty))


def test_conll_write_errors(tmp_path):
    rec = {"id": "r1", "text": "New York", "tokens": [
        {"text": "New York", "start": 0, "end": 8, "id": 0, "ws": False}], "spans": [], "meta": {}}
    out = tmp_path / "o.conll"
    write_format("conll", [rec], out)           # a space inside a token is fine with tabs
    assert out.read_text() == "New York\tO\n\n"
    with pytest.raises(DataError, match="'r1'.*cannot be written"):
        write_format("conll", [rec], out, sep=" ")
    overlapping = {"id": "r2", "text": "a b", "tokens": [
        {"text": "a", "start": 0, "end": 1, "id": 0, "ws": True},
        {"text": "b", "start": 2, "end": 3, "id": 1, "ws": False}],
        "spans": [{"start": 0, "end": 3, "token_start": 0, "token_end": 1, "label": "X"},
                  {"start": 2, "end": 3, "token_start": 1, "token_end": 1, "label": "Y"}]}
    with pytest.raises(DataError, match="'r2'.*overlapping"):
        write_format("conll", [overlapping], out)
    assert out.read_text() == "New York\tO\n\n"  # the failed runs left the file alone


def test_gz_in_and_out(tmp_path):
    src = tmp_path / "c.conll.gz"
    src.write_bytes(gzip.compress(b"A\tB-PER\nb\tO\n\n"))
    out = tmp_path / "o.jsonl.gz"
    convert(src, out, "conll", "jsonl")
    rec = orjson.loads(gzip.decompress(out.read_bytes()))
    assert rec["text"] == "A b" and rec["spans"][0]["label"] == "PER"


# ---------------------------------------------------------------- JSON formats

def test_doccano_forms():
    rec = doccano_to_record({"id": 7, "text": "Hi  New York!", "label": [[4, 12, "LOC"]],
                             "comment": "x"})
    assert rec["spans"][0]["start"] == 4 and rec["spans"][0]["end"] == 12
    assert rec["spans"][0]["token_start"] == 1 and rec["spans"][0]["token_end"] == 2
    assert rec["id"] == 7 and rec["comment"] == "x"
    rec = doccano_to_record({"text": "Hi Tokyoite ", "labels": [[2, 8, "LOC"]]}, "d1")
    s = rec["spans"][0]
    assert (s["start"], s["end"]) == (3, 8) and rec["text"][3:8] == "Tokyo"
    assert [t["text"] for t in rec["tokens"]] == ["Hi", "Tokyo", "ite"]
    assert rec["id"] == "d1"
    rec = doccano_to_record({"text": "Ann", "entities": [
        {"id": 1, "start_offset": 0, "end_offset": 3, "label": "PER"}]})
    assert rec["spans"][0]["label"] == "PER"
    for bad, msg in [({"text": "Ann", "label": [[0, 9, "PER"]]}, "out of range"),
                     ({"text": "A  b", "label": [[1, 3, "PER"]]}, "only whitespace"),
                     ({"text": "Ann", "label": ["positive"]}, "must be"),
                     ({"label": []}, "no 'text'")]:
        with pytest.raises(DataError, match=msg):
            doccano_to_record(bad)


def test_doccano_error_names_file_and_line(tmp_path):
    src = write(tmp_path / "d.jsonl", '{"text": "Ann", "label": [[0, 3, "PER"]]}\n'
                                      '{"text": "Bo", "label": [[0, 5, "PER"]]}\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: label 0 \[0, 5\) is out of range"):
        list(read_format("doccano", src))


def test_gliner_and_hf(tmp_path):
    g = write(tmp_path / "g.jsonl", '{"tokenized_text": ["Ann", "met", "Bo", "Li"], '
                                    '"ner": [[0, 0, "PER"], [2, 3, "PER"]]}\n')
    rec = next(read_format("gliner", g))
    assert rec["text"] == "Ann met Bo Li" and rec["id"] == "1"
    assert [(s["start"], s["end"]) for s in rec["spans"]] == [(0, 3), (8, 13)]
    hf_out = tmp_path / "h.jsonl"
    labels = ["O", "B-PER", "I-PER"]
    write_format("hf", [rec], hf_out, labels=labels)
    assert jsonl_lines(hf_out)[0]["ner_tags"] == [1, 0, 1, 2]
    back = next(read_format("hf", hf_out, labels=labels))
    assert back["spans"] == rec["spans"]
    with pytest.raises(DataError, match="h.jsonl:1: ner_tags are integers"):
        list(read_format("hf", hf_out))
    bad = write(tmp_path / "b.jsonl", '{"tokens": ["a"], "ner_tags": ["O", "O"]}\n')
    with pytest.raises(DataError, match="b.jsonl:1: 1 tokens but 2 ner_tags"):
        list(read_format("hf", bad))
    strings = write(tmp_path / "s.jsonl", '{"tokens": ["a", "b"], "ner_tags": ["S-X", "O"]}\n')
    assert next(read_format("hf", strings))["spans"][0]["label"] == "X"


# ---------------------------------------------------------------- command line

def test_cli_convert_and_errors(tmp_path):
    src = write(tmp_path / "c.conll", CONLL4)
    run = subprocess.run(["ner-convert", "--from", "conll", "--to", "jsonl", src],
                         capture_output=True)
    assert run.returncode == 0 and len(run.stdout.splitlines()) == 3
    back = subprocess.run(["ner-convert", "-f", "jsonl", "-t", "conll"], input=run.stdout,
                          capture_output=True)
    assert back.stdout.decode() == CONLL4
    bad = write(tmp_path / "bad.conll", "A B-PER\nb O x\n\n")
    run = subprocess.run(["ner-convert", "--from", "conll", "--to", "jsonl", bad],
                         capture_output=True, text=True)
    assert run.returncode == 65 and run.stdout == ""
    assert run.stderr.count("\n") == 1
    assert run.stderr.startswith(f"ner-convert: error: {bad}:2: expected 2 columns")
    run = subprocess.run(["ner-convert", "--from", "conll", "--to", "jsonl", "--labels", "O", src],
                         capture_output=True, text=True)
    assert run.returncode == 2
