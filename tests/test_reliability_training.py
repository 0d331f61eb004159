"""Reliability of ner-selftrain and the training loop (issue 10): nonsense float options (D17),
dev labels the training data lacks (D8), foreign files in the model directory (D9), a refused
--resume that says what differs (D26), SIGTERM/SIGINT during training (D11), a full disk
(D14) and running out of GPU memory (B12)."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from nertools.core.jsonl import read_records
from nertools.errors import DataError, NertoolsError, UsageError
from nertools.tagging.tagger import META_FILE, Tagger
from nertools.tagging.train import TrainArgs, train_tagger
from nertools.training import checkpoint_path

sys.path.insert(0, str(Path(__file__).parent))
from test_train import _build_tiny_bert, _toy_record  # noqa: E402


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return _build_tiny_bert(tmp_path_factory.mktemp("rel-bert"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("rel-data")
    rng = random.Random(3)
    for name, n in (("train", 48), ("dev", 12)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(_toy_record(rng, i)) + "\n" for i in range(n)))
    return d / "train.jsonl", d / "dev.jsonl"


def _write(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _selftrain(args, **kw):
    from nertools.cli.selftrain import main

    torch.set_num_threads(1)
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


def _fit(bert, data, out, *, resume=False, **kw):
    train_path, dev_path = data
    torch.set_num_threads(1)
    args = TrainArgs(model=str(bert), lr=3e-3, max_steps=kw.pop("max_steps", 2), eval_every=2, batch_size=8,
                     patience=0, device="cpu", **kw)
    return train_tagger(args, list(read_records(train_path)), list(read_records(dev_path)), out,
                        train_path=train_path, dev_path=dev_path, resume=resume, log=lambda m: None)


def _siblings(out: Path) -> list[str]:
    """Entries beside ``out`` that belong to it (itself, its checkpoint, temporaries)."""
    return sorted(p.name for p in out.parent.iterdir()
                  if p.name == out.name or p.name.startswith((out.name + ".", f".{out.name}.")))


# ----------------------------------------------------------------------------- D17


@pytest.mark.parametrize("option,value", [("--lr", "nan"), ("--lr", "-1"), ("--lr", "0"), ("--lr", "inf"),
                                          ("--weight-decay", "-1"), ("--max-grad-norm", "nan"),
                                          ("--max-grad-norm", "0"), ("--epochs", "inf"),
                                          ("--o-weight", "nan"), ("--warmup-ratio", "nan"),
                                          ("--threshold", "-inf"), ("--seed", "-1"), ("--seed", str(2**32))])
def test_d17_nonsense_numeric_options_are_usage_errors_before_the_model_loads(data, tmp_path, option, value):
    train_path, dev_path = data
    r = _selftrain(["--train", train_path, "--dev", dev_path, "--model", tmp_path / "no-such-model",
                    "--out", tmp_path / "m", option, value])
    assert r.exit_code == 2, r.output
    assert f"Invalid value for '{option}'" in r.stderr and "cannot load" not in r.stderr
    assert not (tmp_path / "m").exists()


def test_d17_library_callers_get_a_usage_error_before_loading(data, tmp_path):
    train_path, dev_path = data
    recs = list(read_records(train_path))
    for bad in ({"lr": float("nan")}, {"lr": -1.0}, {"max_grad_norm": 0.0}, {"o_weight": 2.0},
                {"batch_size": 0}, {"precision": "fp8"}, {"seed": -1}):
        with pytest.raises(UsageError):
            train_tagger(TrainArgs(model="never-loaded", **bad), recs, recs, tmp_path / "m")
    TrainArgs(model="x", lr=1e-4, weight_decay=0.0, threshold=0.5).check()  # sane values pass


# ----------------------------------------------------------------------------- D8


def test_d8_dev_labels_missing_from_train_warn_once_and_go_into_the_meta(bert, data, tmp_path, capsys):
    train_path, dev_path = data
    dev = list(read_records(dev_path))
    for r in dev:
        for s in r["spans"]:
            if s["label"] == "ORG":
                s["label"] = "DISEASE"
    unseen = _write(tmp_path / "dev_unseen.jsonl", dev)
    meta = _fit(bert, (train_path, unseen), tmp_path / "m")
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "DISEASE" in warnings[0] and str(unseen) in warnings[0], err
    assert meta["warnings"] == [warnings[0][len("warning: "):]]
    assert json.loads((tmp_path / "m" / META_FILE).read_text())["warnings"] == meta["warnings"]
    # the ordinary case: no warning, an empty list
    assert _fit(bert, data, tmp_path / "ok")["warnings"] == []
    assert "warning" not in capsys.readouterr().err


def test_d8_dev_without_usable_entities_is_a_data_error_before_loading(data, tmp_path):
    train_path, dev_path = data
    train = list(read_records(train_path))
    no_spans = _write(tmp_path / "dev_none.jsonl", [dict(r, spans=[]) for r in read_records(dev_path)])
    r = _selftrain(["--train", train_path, "--dev", no_spans, "--model", "never-loaded", "--out", tmp_path / "m"])
    assert r.exit_code == 65 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"ner-selftrain: error: {no_spans}: no spans in the dev data")
    alien = [dict(r, spans=[dict(s, label="X" + s["label"]) for s in r["spans"]]) for r in read_records(dev_path)]
    with pytest.raises(DataError, match="none of the dev labels"):
        train_tagger(TrainArgs(model="never-loaded"), train, alien, tmp_path / "m")
    assert not (tmp_path / "m").exists()


# ----------------------------------------------------------------------------- D9


def test_d9_foreign_files_in_the_model_dir_are_refused_not_deleted(bert, data, tmp_path):
    train_path, dev_path = data
    out = tmp_path / "tagger"
    meta = _fit(bert, data, out)
    assert META_FILE in meta["files"] and set(meta["files"]) == {p.name for p in out.iterdir()}
    notes = out / "MY_NOTES.txt"
    notes.write_text("mine")
    r = _selftrain(["--train", train_path, "--dev", dev_path, "--model", "never-loaded", "--out", out])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "MY_NOTES.txt" in r.stderr, r.stderr
    assert notes.read_text() == "mine"
    notes.unlink()
    assert _fit(bert, data, out, seed=7)["training_args"]["seed"] == 7  # nertools' own files: replaced


def test_d9_without_a_manifest_the_final_write_refuses_and_keeps_the_run(bert, data, tmp_path):
    out = tmp_path / "old"
    _fit(bert, data, out)
    meta = json.loads((out / META_FILE).read_text())
    del meta["files"]  # a directory written before the manifest existed
    (out / META_FILE).write_text(json.dumps(meta))
    (out / "notes").mkdir()
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(NertoolsError, match=r"nertools did not write \(notes\).*--resume"):
        _fit(bert, data, out, seed=8)
    assert sorted(p.name for p in out.iterdir()) == before and (out / "notes").is_dir()
    assert _siblings(out) == ["old", "old.checkpoint"]  # the finished run waits in its checkpoint
    (out / "notes").rename(tmp_path / "notes")
    assert _fit(bert, data, out, seed=8, resume=True)["training_args"]["seed"] == 8
    assert _siblings(out) == ["old"]


# ----------------------------------------------------------------------------- D14, D26, B12


def test_d14_full_disk_at_the_model_write_then_d26_resume_names_what_differs(bert, data, tmp_path, monkeypatch):
    import nertools.tagging.train as tagging_train

    train_path, dev_path = data
    out = tmp_path / "m"
    real = tagging_train.write_model_files

    def full(model, tokenizer, meta, directory):
        (Path(directory) / "config.json").write_text("{")  # half written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tagging_train, "write_model_files", full)
    r = _selftrain(["--train", train_path, "--dev", dev_path, "--model", bert, "--out", out, "--max-steps", "2",
                    "--batch-size", "8", "--lr", "3e-3", "-q"])
    assert r.exit_code == 1, r.output
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"ner-selftrain: error: cannot write {out}: "
                                                              "No space left on device"), r.stderr
    assert "--resume" in r.stderr
    assert _siblings(out) == ["m.checkpoint"]  # no half-written model, no temporaries
    monkeypatch.setattr(tagging_train, "write_model_files", real)

    base = ["--train", train_path, "--dev", dev_path, "--model", bert, "--out", out, "--max-steps", "2",
            "--batch-size", "8", "--resume", "-q"]
    r = _selftrain(base + ["--lr", "1e-3"])
    assert r.exit_code == 1 and "--lr (0.003 in the checkpoint, 0.001 now)" in r.stderr, r.stderr
    other = _write(tmp_path / "train2.jsonl", list(read_records(train_path))[:40])
    r = _selftrain(["--train", other] + base[2:] + ["--lr", "3e-3"])
    assert r.exit_code == 1 and f"--train {other}: its content differs" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
    r = _selftrain(base + ["--lr", "3e-3"])
    assert r.exit_code == 0, r.stderr
    assert _siblings(out) == ["m"] and Tagger.load(out, device="cpu").scheme.labels == ("LOC", "ORG", "PER")


def test_d14_full_disk_at_a_checkpoint_keeps_the_previous_one(bert, data, tmp_path, monkeypatch):
    import nertools.training.checkpoint as ckpt_module

    out = tmp_path / "m"
    real, calls = ckpt_module.torch_save, []

    def fills_up(obj, path):
        calls.append(path)
        if len(calls) > 2:  # the second checkpoint (state.pt + best.pt make one)
            Path(path).write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(obj, path)

    monkeypatch.setattr(ckpt_module, "torch_save", fills_up, raising=False)
    with pytest.raises(NertoolsError, match="cannot write the checkpoint .*No space left on device.*--resume"):
        _fit(bert, data, out, max_steps=4)
    assert _siblings(out) == ["m.checkpoint"]
    assert json.loads((checkpoint_path(out) / "state.json").read_text())["step"] == 2


def test_d14_a_real_failing_write_is_an_oserror_not_a_torch_runtime_error(tmp_path):
    """torch.save reports a full disk as ``RuntimeError: ... unexpected pos``; torch_save gives
    the OSError, and write_error turns safetensors' I/O error into its reason. Real write
    failures: a file-size limit (EFBIG) in a child process."""
    from nertools.training.checkpoint import write_error

    code = """
import resource, signal, sys, torch
from safetensors.torch import save_file
from nertools.training.checkpoint import torch_save, write_error
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (50000, 50000))
big = {"x": torch.randn(100000)}
for name, save in (("torch_save", torch_save), ("safetensors", save_file)):
    try:
        save(big, sys.argv[1] + "/" + name)
    except Exception as e:
        print(name, type(e).__name__, getattr(e, "errno", None), write_error(e))
"""
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
    lines = r.stdout.splitlines()
    assert len(lines) == 2, r.stdout + r.stderr
    assert lines[0] == f"torch_save OSError {errno.EFBIG} File too large"
    assert lines[1].startswith("safetensors SafetensorError None File too large")
    assert write_error(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 2"))
    assert write_error(RuntimeError("something else")) is None


def test_d14_ner_selftrain_with_a_real_write_failure_is_one_line(bert, data, tmp_path):
    """The probe's full-disk case (a torch RuntimeError traceback before): the child process
    may not write files over 120 kB (EFBIG, the same write path as ENOSPC)."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (120_000, 120_000))

    train_path, dev_path = data
    out = tmp_path / "m"
    r = subprocess.run(["ner-selftrain", "--train", str(train_path), "--dev", str(dev_path), "--model", str(bert),
                        "--out", str(out), "--max-steps", "2", "--batch-size", "8", "--threads", "1", "-q"],
                       capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"ner-selftrain: error: cannot write the checkpoint {checkpoint_path(out)}: "
                               "File too large"), r.stderr
    assert _siblings(out) == []


def test_b12_cuda_out_of_memory_is_one_line_with_a_hint(bert, data, tmp_path, monkeypatch):
    from nertools.training.loop import Trainer

    train_path, dev_path = data

    def oom(self, indices, step):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79 GiB total)")

    monkeypatch.setattr(Trainer, "micro_step", oom)
    r = _selftrain(["--train", train_path, "--dev", dev_path, "--model", bert, "--out", tmp_path / "m",
                    "--max-steps", "2", "-q"])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("ner-selftrain: error: out of memory on cpu after 0 step(s): lower --batch-size")
    assert "--max-length" in r.stderr and "Tried to allocate" in r.stderr
    assert _siblings(tmp_path / "m") == []


def test_b12_out_of_memory_when_moving_the_model_is_one_line_too(tmp_path):
    from test_training_loop import ToyTask, toy_config, toy_model

    from nertools.training import Trainer

    model = toy_model()

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    model.to = oom
    cfg, device = toy_config()
    with pytest.raises(NertoolsError, match="out of memory on cpu moving the model there: use a smaller batch"):
        Trainer(model, ToyTask(), cfg, out=tmp_path / "m", device=device)


# ----------------------------------------------------------------------------- D11


def test_signal_guard_holds_signals_back_in_critical_blocks():
    from nertools.training.signals import SignalGuard

    previous = signal.getsignal(signal.SIGTERM)
    done = []
    with pytest.raises(KeyboardInterrupt):
        with SignalGuard() as guard:
            with guard.critical():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
                done.append("write finished")
            done.append("not reached")
    assert done == ["write finished"]
    assert signal.getsignal(signal.SIGTERM) == previous
    with pytest.raises(KeyboardInterrupt):  # outside a critical block: at once
        with SignalGuard():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)


def test_recover_a_checkpoint_left_aside_by_a_kill(tmp_path):
    from nertools.training.checkpoint import leftover_temps, recover_checkpoint

    ckpt = tmp_path / "m.checkpoint"
    aside = tmp_path / ".m.checkpoint.old-123"
    aside.mkdir()
    (aside / "state.pt").write_bytes(b"x")
    (aside / "state.json").write_text("{}")
    assert leftover_temps(tmp_path / "m") == [aside]
    assert recover_checkpoint(ckpt) and (ckpt / "state.pt").exists() and not aside.exists()
    assert not recover_checkpoint(ckpt)


def _wait_for(predicate, proc, what, timeout=180):
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"exited before {what}: {proc.communicate()[1]}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _writing(out: Path):
    """A checkpoint write in progress: a temporary checkpoint directory holding state.pt."""
    return lambda: any((p / "state.pt").exists() for p in out.parent.glob(f".{out.name}.checkpoint.tmp-*"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_d11_a_signal_during_a_checkpoint_write_leaves_a_complete_checkpoint_and_no_temps(bert, data, tmp_path, sig):
    train_path, dev_path = data
    out = tmp_path / "run"
    cmd = ["ner-selftrain", "--train", str(train_path), "--dev", str(dev_path), "--model", str(bert), "--out", str(out),
           "--max-steps", "6", "--eval-every", "2", "--batch-size", "8", "--lr", "3e-3", "--patience", "0",
           "--threads", "1", "-q"]
    env = dict(os.environ, NERTOOLS_CHECKPOINT_WRITE_PAUSE="2")
    # SIGINT's default action in the child, whatever this process inherited: a shell's
    # background job ignores SIGINT, and Python then installs no KeyboardInterrupt handler
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_default_sigint)
    try:
        _wait_for(_writing(out), proc, "the first checkpoint write")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (130, 143), (proc.returncode, err)
    assert len(err.splitlines()) == 1 and err.startswith("ner-selftrain: ") and "Traceback" not in err, err
    assert _siblings(out) == ["run.checkpoint"]  # the write finished before the run stopped
    assert json.loads((checkpoint_path(out) / "state.json").read_text())["step"] == 2

    if sig == signal.SIGTERM:  # a SIGKILL's leftovers, then a run that finishes: nothing left
        stale = tmp_path / ".run.checkpoint.tmp-killed"
        stale.mkdir()
        (stale / "state.pt").write_bytes(b"half")
        done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert _siblings(out) == ["run"]
        assert [h["step"] for h in json.loads((out / META_FILE).read_text())["history"]] == [2, 4, 6]


def test_d11_sigterm_while_training_stops_cleanly_and_resume_finishes(bert, data, tmp_path):
    train_path, dev_path = data
    out = tmp_path / "run"
    cmd = ["ner-selftrain", "--train", str(train_path), "--dev", str(dev_path), "--model", str(bert), "--out", str(out),
           "--max-steps", "6", "--eval-every", "2", "--batch-size", "8", "--lr", "3e-3", "--patience", "0",
           "--threads", "1", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, NERTOOLS_CHECKPOINT_PAUSE="60"))
    try:
        _wait_for(lambda: (checkpoint_path(out) / "state.json").exists(), proc, "the first checkpoint")
        proc.send_signal(signal.SIGTERM)  # in the pause after the checkpoint: the run is not writing
        sent = time.time()
        _, err = proc.communicate(timeout=120)
        assert time.time() - sent < 30  # at once, not after the 60 s pause
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (130, 143) and len(err.splitlines()) == 1, (proc.returncode, err)
    assert _siblings(out) == ["run.checkpoint"]
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _siblings(out) == ["run"]
