"""nertools.core.atomic, and the writers that go through it: a file or directory appears
complete or not at all, with the mode the umask gives (not tempfile's private 0600/0700)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from nertools.core import atomic
from nertools.core.atomic import (atomic_dir, atomic_file, commit_file, discard, discard_pending, replace_dir,
                                  temp_dir_beside, temp_file_beside, write_bytes_atomic, write_json_atomic)
from nertools.errors import DataError


@pytest.fixture(params=[(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)], ids=["umask022", "umask077"])
def umask(request):
    """``(file mode, dir mode)`` expected under the umask set for the test."""
    mask, fmode, dmode = request.param
    old = os.umask(mask)
    yield fmode, dmode
    os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# ----------------------------------------------------------------------------- files

def test_atomic_file_commits_at_the_end_with_the_umask_mode(tmp_path, umask):
    fmode, _ = umask
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    os.chmod(target, 0o604)
    with atomic_file(target) as fh:
        fh.write(b"new\n")
        fh.flush()
        assert target.read_text() == "old\n"  # not replaced before the block ends
        (tmp,) = [n for n in names(tmp_path) if n != "out.txt"]
        assert tmp.startswith(atomic.TEMP_PREFIX + "out.txt.")
        assert mode(tmp_path / tmp) == fmode
    assert target.read_text() == "new\n" and names(tmp_path) == ["out.txt"]
    assert mode(target) == fmode  # neither 0600 from tempfile nor the old file's 0604


def test_atomic_file_abort_keeps_the_target_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_file(target) as fh:
            fh.write(b"half")
            raise RuntimeError("boom")
    assert target.read_text() == "old\n" and names(tmp_path) == ["out.txt"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(tmp_path / "new.txt") as fh:
            raise KeyboardInterrupt
    assert names(tmp_path) == ["out.txt"]


def test_write_bytes_and_json(tmp_path, umask):
    fmode, _ = umask
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01", fsync=True)
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01" and mode(tmp_path / "b.bin") == fmode
    write_json_atomic(tmp_path / "j.json", {"a": np.float32(0.5), "v": np.arange(2)})
    text = (tmp_path / "j.json").read_text()
    assert orjson.loads(text) == {"a": 0.5, "v": [0, 1]} and text.endswith("\n") and "\n  " in text
    write_json_atomic(tmp_path / "k.json", [1], indent=False)
    assert (tmp_path / "k.json").read_text() == "[1]\n"


def test_temp_file_beside_commit_and_discard(tmp_path, monkeypatch):
    fd, tmp = temp_file_beside(tmp_path / "x.jsonl")
    os.write(fd, b"data")
    os.close(fd)
    assert Path(tmp).parent == tmp_path and Path(tmp).name.endswith(".part")
    commit_file(tmp, tmp_path / "x.jsonl")
    assert names(tmp_path) == ["x.jsonl"] and (tmp_path / "x.jsonl").read_bytes() == b"data"
    fd, tmp = temp_file_beside(tmp_path / "y")
    os.close(fd)
    discard(tmp)
    discard(tmp)   # already gone: fine
    discard(None)
    assert names(tmp_path) == ["x.jsonl"]
    monkeypatch.chdir(tmp_path)  # a bare file name: the temporary goes to the cwd
    fd, tmp = temp_file_beside("z.txt")
    os.close(fd)
    assert Path(tmp).resolve().parent == tmp_path.resolve()
    discard(Path(tmp))
    assert names(tmp_path) == ["x.jsonl"]


def test_discard_pending_removes_only_unfinished_temporaries(tmp_path):
    """What a command calls when it ends early (an interrupt between a writer's last write
    and its clean-up): unfinished temporaries go, committed results stay."""
    fd, done = temp_file_beside(tmp_path / "done.txt")
    os.close(fd)
    commit_file(done, tmp_path / "done.txt")
    fd, left = temp_file_beside(tmp_path / "left.txt")
    os.close(fd)
    left_dir = temp_dir_beside(tmp_path / "model")
    (left_dir / "weights.bin").write_bytes(b"w")
    built = temp_dir_beside(tmp_path / "index")
    replace_dir(built, tmp_path / "index")
    assert len(names(tmp_path)) == 4
    discard_pending()
    assert names(tmp_path) == ["done.txt", "index"]
    discard_pending()  # nothing left to do
    assert names(tmp_path) == ["done.txt", "index"]


# ----------------------------------------------------------------------------- directories

def test_atomic_dir_keeps_the_old_directory_until_the_swap(tmp_path, umask):
    _, dmode = umask
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_text("old")
    with atomic_dir(target, fsync=True) as tmp:
        assert tmp.parent == tmp_path and tmp != target and mode(tmp) == dmode
        (tmp / "new.bin").write_text("new")
        assert names(target) == ["old.bin"]  # the old directory is whole until the swap
    assert names(target) == ["new.bin"] and (target / "new.bin").read_text() == "new"
    assert names(tmp_path) == ["model"]  # neither the temporary nor the renamed-aside old dir
    assert mode(target) == dmode


def test_atomic_dir_abort_leaves_the_target_alone(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half.bin").write_text("x")
            raise RuntimeError("boom")
    assert names(tmp_path) == ["model"] and names(target) == ["old.bin"]
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "fresh"):
            raise RuntimeError("boom")
    assert names(tmp_path) == ["model"]


def test_replace_dir_into_a_new_path_and_parents(tmp_path):
    tmp = temp_dir_beside(tmp_path / "a" / "b")  # parents are made
    (tmp / "f").write_text("1")
    replace_dir(tmp, tmp_path / "a" / "b")
    assert names(tmp_path / "a") == ["b"] and (tmp_path / "a" / "b" / "f").read_text() == "1"


# ----------------------------------------------------------------------------- the writers

def test_record_writer_modes_and_clean_failure(tmp_path, umask):
    from nertools.core.jsonl import RecordWriter, read_jsonl

    fmode, _ = umask
    for name in ("o.jsonl", "o.jsonl.gz"):
        with RecordWriter(tmp_path / name) as w:
            w.write({"a": 1})
        assert mode(tmp_path / name) == fmode
        assert [o for _, o in read_jsonl(tmp_path / name)] == [{"a": 1}]
    # the rename fails (the target is a directory): an error naming it, no temporary left
    (tmp_path / "d").mkdir()
    w = RecordWriter(tmp_path / "d")
    w.write({"a": 1})
    with pytest.raises(DataError, match="cannot write"):
        w.close()
    assert names(tmp_path) == ["d", "o.jsonl", "o.jsonl.gz"] and names(tmp_path / "d") == []


def test_write_dictionary_mode_and_failure(tmp_path, umask):
    from nertools.gener.dictionary import iter_dictionary_file, write_dictionary

    fmode, _ = umask
    path = tmp_path / "dict.tsv"
    assert write_dictionary(str(path), [("Paris", "LOC", 2), ("Ann", "PER", 1)]) == 2
    assert list(iter_dictionary_file(str(path))) == [("Paris", "LOC", 2), ("Ann", "PER", 1)]
    assert mode(path) == fmode

    def entries():
        yield ("Rome", "LOC", 1)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_dictionary(str(path), entries())
    assert names(tmp_path) == ["dict.tsv"] and path.read_text() == "Paris\tLOC\t2\nAnn\tPER\t1\n"
    with pytest.raises(DataError, match="cannot write"):
        write_dictionary(str(tmp_path / "no-dir" / "d.tsv"), [("Rome", "LOC", 1)])


def test_llm_cache_file_mode(tmp_path, umask, monkeypatch):
    import openai

    from nertools.llm.client import LLMConfig, chat_completion

    fmode, dmode = umask
    calls = []

    class FakeClient:
        def __init__(self, **kw):
            self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

        def create(self, **kw):
            calls.append(kw)
            return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content="Paris, Rome"))])

    import nertools.llm.client

    monkeypatch.setattr(openai, "OpenAI", FakeClient)
    monkeypatch.setattr(nertools.llm.client, "_CLIENTS", {})  # the client keeps one OpenAI object per endpoint
    cache = tmp_path / "cache"
    cfg = LLMConfig(base_url="http://127.0.0.1:9/v1", model="m", cache_dir=str(cache))
    messages = [{"role": "user", "content": "cities?"}]
    assert chat_completion(cfg, messages) == "Paris, Rome"
    (entry,) = cache.iterdir()
    assert entry.suffix == ".json" and mode(entry) == fmode and mode(cache) == dmode
    assert orjson.loads(entry.read_bytes())["content"] == "Paris, Rome"
    assert chat_completion(cfg, messages) == "Paris, Rome" and len(calls) == 1  # a cache hit


def test_atomic_file_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "real.tsv"
    target.write_text("old\n")
    link = tmp_path / "link.tsv"
    link.symlink_to(target.name)
    write_bytes_atomic(link, b"new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.tsv", "real.tsv"]
