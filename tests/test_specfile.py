"""Text side files (seeds, questions, dictionaries) and CoNLL input: BOM, non-UTF-8, truncated
.gz, and the ``-DOCSTART-`` token (reliability probe D3, D6, D20; code review B3)."""

import gzip

import pytest

from nertools.core.specfile import read_text_lines
from nertools.errors import DataError
from nertools.formats.conll import conll_block, read_conll
from nertools.gener.dictionary import iter_dictionary_file
from nertools.gener.questions import read_questions
from nertools.xner.seeds import read_seeds_file

BOM = b"\xef\xbb\xbf"


def test_bom_is_dropped_from_seeds_questions_and_dictionaries(tmp_path):
    seeds = tmp_path / "seeds.tsv"
    seeds.write_bytes(BOM + b"PER\tMasaki Yoshida\r\nLOC\tSingapore\r\n")
    assert [s.label for s in read_seeds_file(str(seeds))] == ["PER", "LOC"]
    q = tmp_path / "q.tsv"
    q.write_bytes(BOM + b"LOC\tWhich city?\n")
    assert [x.label for x in read_questions(str(q))] == ["LOC"]
    d = tmp_path / "d.tsv"
    d.write_bytes(BOM + b"Leicestershire\tORG\nLondon\tLOC\n")
    assert [p for p, _, _ in iter_dictionary_file(d)] == ["Leicestershire", "London"]


def test_bom_only_at_the_start_of_the_file(tmp_path):
    f = tmp_path / "x.txt"
    f.write_bytes(b"a\n" + BOM + b"b\n")
    assert list(read_text_lines(f)) == ["a", "\ufeffb"]


@pytest.mark.parametrize("reader", [read_seeds_file, read_questions,
                                    lambda p: list(iter_dictionary_file(p))])
def test_non_utf8_side_file_names_file_and_line(tmp_path, reader):
    f = tmp_path / "latin1.tsv"
    f.write_bytes(b"LOC\tSingapore\nPER\tJos\xe9\n")
    with pytest.raises(DataError) as e:
        reader(str(f))
    assert e.value.line == 2 and e.value.path.endswith("latin1.tsv")
    assert "not UTF-8" in str(e.value) and "0xe9" in str(e.value)


def test_truncated_gzip_side_file_is_a_data_error(tmp_path):
    data = gzip.compress(b"".join(b"w%d\tLOC\n" % i for i in range(5000)))
    f = tmp_path / "d.tsv.gz"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated"):
        list(read_text_lines(f))


def test_conll_bom_does_not_rename_the_first_token(tmp_path):
    f = tmp_path / "b.conll"
    f.write_bytes(BOM + b"LONDON\tB-LOC\n1996-08-30\tO\n\n")
    (rec,) = read_conll(f)
    assert rec["tokens"][0]["text"] == "LONDON"
    assert rec["spans"][0]["label"] == "LOC"


def test_conll_non_utf8_names_the_line(tmp_path):
    f = tmp_path / "l.conll"
    f.write_bytes(b"Paris\tB-LOC\n\nCaf\xe9\tO\n\n")
    with pytest.raises(DataError) as e:
        list(read_conll(f))
    assert e.value.line == 3 and "not UTF-8" in str(e.value)


def test_truncated_conll_gz_is_a_data_error_not_an_abort(tmp_path):
    text = b"".join(b"w%d\tO\n\n" % i for i in range(20000))
    data = gzip.compress(text)
    f = tmp_path / "t.conll.gz"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated"):
        list(read_conll(f))


def test_docstart_token_inside_a_sentence_round_trips(tmp_path):
    rec = {"id": "x", "text": "Go -DOCSTART- now",
           "tokens": [{"text": "Go", "start": 0, "end": 2}, {"text": "-DOCSTART-", "start": 3, "end": 13},
                      {"text": "now", "start": 14, "end": 17}], "spans": []}
    f = tmp_path / "x.conll"
    f.write_text(conll_block(rec))
    (back,) = read_conll(f)
    assert [t["text"] for t in back["tokens"]] == ["Go", "-DOCSTART-", "now"]


def test_docstart_token_first_in_a_sentence_is_refused():
    rec = {"id": "x", "text": "-DOCSTART- now",
           "tokens": [{"text": "-DOCSTART-", "start": 0, "end": 10}, {"text": "now", "start": 11, "end": 14}],
           "spans": []}
    with pytest.raises(DataError, match="document separator"):
        conll_block(rec)


def test_real_docstart_lines_still_kept_in_meta(tmp_path):
    f = tmp_path / "d.conll"
    f.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n")
    (rec,) = read_conll(f)
    assert rec["meta"]["docstart"] == ["-DOCSTART- -X- -X- O"]
    assert [t["text"] for t in rec["tokens"]] == ["EU", "rejects"]
