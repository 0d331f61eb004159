"""The built-dictionary cache (nertools.gener.dictionary.cache_file) and the shared cache root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nertools.core import cache as cache_mod
from nertools.gener import dictionary as dmod
from nertools.gener.dictionary import Dictionary
from nertools.gener.phrase_rules import NormalizationRules

BIN = Path(sys.executable).parent

ENTRIES = [("New York", "LOC", 3), ("Masaki Yoshida", "PER", 1), ("Boston Celtics", "ORG", 2),
           ("York", "PER", 1), ("York", "LOC", 2), ("the United Nations", "ORG", 4),
           ("Japanese", "MISC", 5), ("U.S.", "LOC", 7), ("Zürich", "LOC", 1)]


def state(d: Dictionary) -> tuple:
    return (d.labels, d._index, d._size, d._type_forms, d.lines_read, d.phrases_dropped,
            d.ambiguous_phrases, d.ambiguous_skipped, len(d), sorted(d.items()))


@pytest.fixture
def cached(tmp_path, monkeypatch):
    """A cache root of its own and no size threshold; the dictionary file."""
    monkeypatch.setenv("NERTOOLS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NERTOOLS_DICT_CACHE", raising=False)
    monkeypatch.setattr(dmod, "CACHE_MIN_BYTES", 0)
    path = tmp_path / "dict.tsv"
    path.write_text("".join(f"{p}\t{lab}\t{c}\n" for p, lab, c in ENTRIES), encoding="utf-8")
    return path


def cache_files(tmp_path) -> list[Path]:
    return sorted((tmp_path / "cache" / "dictionaries").glob("*.marshal"))


def no_reading(monkeypatch):
    def refuse(path):
        raise AssertionError("the dictionary file was parsed again")
    monkeypatch.setattr(dmod, "iter_dictionary_file", refuse)


def test_a_cached_load_equals_a_fresh_build_and_does_not_parse_the_file(cached, tmp_path, monkeypatch):
    fresh = Dictionary.load(cached, cache=False)
    assert cache_files(tmp_path) == []
    first = Dictionary.load(cached)
    assert len(cache_files(tmp_path)) == 1
    no_reading(monkeypatch)
    second = Dictionary.load(cached)
    assert state(second) == state(first) == state(fresh)
    assert second._finished and second._label_ids == fresh._label_ids
    assert second.from_cache and not first.from_cache and not fresh.from_cache
    assert second.get("new york").label == "LOC" and second.get("u.s.").count == 7
    with pytest.raises(RuntimeError):
        second.add("Paris", "LOC")


def test_other_bytes_or_options_get_their_own_cache_file(cached, tmp_path):
    Dictionary.load(cached)
    Dictionary.load(cached, case_sensitive=True)
    Dictionary.load(cached, rules=NormalizationRules(min_chars=5))
    Dictionary.load(cached, ambiguous="majority")
    Dictionary.load(cached, type_words={"LOC": "city"})
    assert len(cache_files(tmp_path)) == 5
    with cached.open("a", encoding="utf-8") as fh:
        fh.write("Paris\tLOC\t1\n")
    d = Dictionary.load(cached)
    assert d.get("paris").label == "LOC"
    assert len(cache_files(tmp_path)) == 6
    assert state(Dictionary.load(cached, ambiguous="majority")) == \
        state(Dictionary.load(cached, ambiguous="majority", cache=False))


@pytest.mark.parametrize("damage", [b"", b"not marshal at all", b"\xe9" * 5, None])
def test_a_damaged_cache_file_is_rebuilt(cached, tmp_path, damage):
    import marshal

    good = state(Dictionary.load(cached))
    (f,) = cache_files(tmp_path)
    if damage is None:  # valid marshal, wrong content
        damage = marshal.dumps({"format": 999, "labels": []})
    f.write_bytes(damage)
    assert state(Dictionary.load(cached)) == good
    assert f.read_bytes() != damage  # written again
    assert state(Dictionary.load(cached)) == good


def test_switched_off_small_files_and_stdin_are_not_cached(cached, tmp_path, monkeypatch):
    monkeypatch.setenv("NERTOOLS_DICT_CACHE", "0")
    Dictionary.load(cached)
    assert cache_files(tmp_path) == []
    monkeypatch.setenv("NERTOOLS_DICT_CACHE", "1")
    monkeypatch.setattr(dmod, "CACHE_MIN_BYTES", cached.stat().st_size + 1)
    Dictionary.load(cached)
    assert cache_files(tmp_path) == []
    assert dmod.cache_file("-", Dictionary()) is None
    assert dmod.cache_file(tmp_path / "missing.tsv", Dictionary()) is None


def test_an_unwritable_cache_root_only_costs_time(cached, tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("NERTOOLS_CACHE", str(blocker))
    assert state(Dictionary.load(cached)) == state(Dictionary.load(cached, cache=False))


def test_the_cache_key_covers_the_building_code(cached, tmp_path, monkeypatch):
    a = dmod.cache_file(cached, Dictionary())
    monkeypatch.setattr(dmod, "_build_fingerprint", "another nertools")
    assert dmod.cache_file(cached, Dictionary()) != a


def test_one_cache_root_for_every_kind(tmp_path, monkeypatch):
    from nertools.align.choose import default_cache_dir as choose_dir
    from nertools.llm.client import default_cache_dir as llm_dir
    from nertools.runtime.models import gguf_cache_dir

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.delenv("NERTOOLS_MODEL_CACHE", raising=False)
    monkeypatch.setenv("NERTOOLS_CACHE", str(tmp_path / "root"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_mod.cache_root() == tmp_path / "root"
    assert Path(llm_dir()) == tmp_path / "root" / "llm"
    assert Path(choose_dir()) == tmp_path / "root" / "align-choose"
    assert gguf_cache_dir(str(gguf)) == tmp_path / "root" / "models" / "m-4"
    monkeypatch.delenv("NERTOOLS_CACHE")
    assert cache_mod.cache_root() == tmp_path / "xdg" / "nertools"
    assert Path(llm_dir()) == tmp_path / "xdg" / "nertools" / "llm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_mod.cache_root() == tmp_path / "home" / ".cache" / "nertools"
    assert cache_mod.cache_dir("dictionaries") == tmp_path / "home" / ".cache" / "nertools" / "dictionaries"


def test_ner_dictmatch_uses_the_cache_and_writes_the_same_output(tmp_path):
    """Through the console script: a dictionary over the 1 MiB threshold is built on the
    first run and read on the second; both outputs are identical."""
    lines = [f"{p}\t{lab}\t{c}" for p, lab, c in ENTRIES]
    k = size = 0
    while size < dmod.CACHE_MIN_BYTES + 1000:
        lines.append(f"Zyx{k} Qwv{k} Place\tLOC\t1")
        size += len(lines[-1]) + 1
        k += 1
    d = tmp_path / "big.tsv"
    d.write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id":"a","toks":["He","left","New","York","for","Zyx7","Qwv7","Place","."],'
                      '"ws":"111111110","spans":[]}\n', encoding="utf-8")
    env = {**os.environ, "NERTOOLS_CACHE": str(tmp_path / "cache")}
    env.pop("NERTOOLS_DICT_CACHE", None)
    outs = []
    for run in range(2):
        r = subprocess.run([str(BIN / "ner-dictmatch"), "--dict", str(d), "--compact", str(corpus)],
                           capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
        assert len(cache_files(tmp_path)) == 1
        assert ("from the cache" in r.stderr) == (run == 1), r.stderr
    assert outs[0] == outs[1]
    assert '[2,3,"LOC",{"source":"dictmatch"}]' in outs[0] and '[5,7,"LOC"' in outs[0]
