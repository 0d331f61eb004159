"""Streaming JSONL I/O (nertools.core.jsonl): errors with file and line, policies, .gz, atomic output."""

import gzip
import io
import os

import orjson
import pytest

from nertools.errors import DataError
from nertools.core.jsonl import ErrorPolicy, RecordWriter, read_jsonl, read_records, write_jsonl
from nertools.core.specfile import read_text_lines


def put(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_read_jsonl_line_numbers_skip_blank_lines(tmp_path):
    p = put(tmp_path / "a.jsonl", '{"a": 1}\n\n  \n{"a": 2}\n')
    assert list(read_jsonl(p)) == [(1, {"a": 1}), (4, {"a": 2})]


def test_broken_json_names_file_and_line(tmp_path):
    p = put(tmp_path / "a.jsonl", '{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(DataError) as e:
        list(read_jsonl(p))
    assert e.value.path == p and e.value.line == 2 and "broken JSON" in str(e.value)
    assert str(e.value).startswith(f"{p}:2: ")


def test_skip_and_warn_policies_count_and_report(tmp_path):
    p = put(tmp_path / "a.jsonl",
            '{"text": "a"}\n{oops\n{"text": "b", "spans": [{"start": 0, "end": 5, "label": "X"}]}\n'
            '{"text": "c"}\n')
    policy = ErrorPolicy("skip")
    assert [r["text"] for r in read_records(p, policy=policy)] == ["a", "c"]
    assert policy.skipped == 2 and policy.first.startswith(f"{p}:2: broken JSON")
    buf = io.StringIO()
    policy.stream = buf
    policy.report("ner-x")
    assert buf.getvalue() == f"ner-x: skipped 2 bad record(s); first: {policy.first}\n"
    warn = ErrorPolicy("warn", stream=io.StringIO())
    list(read_records(p, policy=warn))
    lines = warn.stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"warning: skipped {p}:3: span 0")
    with pytest.raises(ValueError):
        ErrorPolicy("ignore")


def test_invalid_record_names_file_and_line(tmp_path):
    p = put(tmp_path / "a.jsonl", '{"text": "a b"}\n{"text": "a b", "spans": [{"start": 0, '
                                  '"end": 7, "label": "X"}]}\n')
    with pytest.raises(DataError, match=r"a.jsonl:2: span 0 \[0, 7\) is out of range"):
        list(read_records(p))
    with pytest.raises(DataError, match=r"b.jsonl:1: .*unknown label"):
        list(read_records(put(tmp_path / "b.jsonl", '{"text": "a", "spans": [{"start": 0, '
                                                     '"end": 1, "label": "X"}]}\n'), labels=["Y"]))


def test_default_ids_are_line_numbers(tmp_path):
    p = put(tmp_path / "a.jsonl", '{"text": "a"}\n\n{"text": "b", "id": "own"}\n{"text": "c"}\n')
    assert [r["id"] for r in read_records(p)] == ["1", "own", "4"]


@pytest.mark.parametrize("content", ["", "\n\n", '{"x"\n'])
def test_empty_input_is_an_error(tmp_path, content):
    p = put(tmp_path / "e.jsonl", content)
    expected = "no valid records: 1 skipped \\(first: .*e.jsonl:1: broken JSON" if content.strip() \
        else "no records \\(empty input\\)"
    with pytest.raises(DataError, match=expected):
        list(read_records(p, policy=ErrorPolicy("skip")))
    assert list(read_records(p, allow_empty=True, policy=ErrorPolicy("skip"))) == []


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot open"):
        list(read_jsonl(tmp_path / "nope.jsonl"))


def test_gz_round_trip(tmp_path):
    p = tmp_path / "a.jsonl.gz"
    assert write_jsonl(p, [{"text": "a b"}, {"text": "c"}]) == 2
    assert gzip.decompress(p.read_bytes()).splitlines() == [b'{"text":"a b"}', b'{"text":"c"}']
    assert [r["text"] for r in read_records(p)] == ["a b", "c"]
    q = tmp_path / "b.txt.gz"
    q.write_bytes(gzip.compress("x y\r\nz\n".encode()))
    assert list(read_text_lines(q)) == ["x y", "z"]


def test_writer_is_atomic_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with RecordWriter(target, buffer_size=1) as w:
            w.write({"a": 1})
            w.write({"a": 2})
            raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]          # no temp file left behind
    with RecordWriter(target) as w:
        w.write({"a": 1})
        assert target.read_text() == "old\n"              # not replaced before close
    assert [orjson.loads(x) for x in target.read_bytes().splitlines()] == [{"a": 1}]
    assert w.count == 1
    with pytest.raises(DataError, match="cannot write"):
        RecordWriter(tmp_path / "no-such-dir" / "x.jsonl")


def test_write_raw_counts_units(tmp_path):
    target = tmp_path / "t.conll"
    with RecordWriter(target) as w:
        w.write_raw(b"a\tO\n\n")
        w.write_raw(b"b\tO\n\n")
    assert w.count == 2 and target.read_bytes() == b"a\tO\n\nb\tO\n\n"
