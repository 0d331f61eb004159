"""Checkpoints of a training run: what is saved, how it is written, how a run resumes.

A checkpoint is the directory ``OUT.checkpoint/`` beside the model directory ``OUT``:

* ``state.pt`` — model, optimizer, scheduler and grad-scaler state, the task's own state
  (e.g. BOND's teacher), the :class:`RunState`, every RNG state and the run's configuration
  (a resume with other arguments or data is refused);
* ``best.pt`` — the best model so far (by the dev metric), when there is one;
* ``state.json`` — ``step``, ``total_steps`` and the best score, for people and tests.

It is built in a temporary directory beside the target and renamed into place
(:func:`nertools.core.atomic.atomic_dir`), so a crash — even SIGKILL — leaves the previous
complete checkpoint or the new one (the trainer also holds SIGINT/SIGTERM back while it
writes, :mod:`nertools.training.signals`). Restoring the RNG states with the rest makes a
resumed run reproduce the uninterrupted one exactly.

A write that fails (a full disk, a read-only file system) raises :class:`WriteFailed`, one
line naming the path and the reason; the temporary directory is removed and the previous
checkpoint stays.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from nertools.core.atomic import TEMP_PREFIX, atomic_dir, discard
from nertools.errors import NertoolsError

CHECKPOINT_SUFFIX = ".checkpoint"
STATE_FILE = "state.pt"
BEST_FILE = "best.pt"
SUMMARY_FILE = "state.json"
#: Test hook: seconds the trainer sleeps after each checkpoint (lets a test kill a run mid-way).
PAUSE_ENV = "NERTOOLS_CHECKPOINT_PAUSE"
#: Test hook: seconds to sleep inside each checkpoint write, before it is renamed into place
#: (lets a test signal a run while it writes).
WRITE_PAUSE_ENV = "NERTOOLS_CHECKPOINT_WRITE_PAUSE"


class WriteFailed(NertoolsError, OSError):
    """Writing a checkpoint or a model directory failed (disk full, permissions, ...): one
    line and exit code 1. Also an :class:`OSError`, so callers catching those still do."""


def write_error(exc: BaseException) -> str | None:
    """The reason a file write failed, when ``exc`` is such a failure (``None`` otherwise):
    an :class:`OSError`, safetensors' I/O error, or torch's serializer giving up."""
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"{reason} ({exc.filename})" if exc.filename else reason
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if type(exc).__name__ == "SafetensorError" and "I/O error" in text:
        return text.split("I/O error:", 1)[1].strip()
    if isinstance(exc, RuntimeError) and ("inline_container" in text or "PytorchStreamWriter" in text):
        return f"the file could not be written completely ({text}); is the disk full?"
    return None


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path``; a failing write raises the :class:`OSError` itself (torch
    alone reports a full disk as ``RuntimeError: ... unexpected pos``)."""
    import torch

    with open(path, "wb") as fh:
        sink = _RecordingWriter(fh)
        try:
            torch.save(obj, sink)
        except RuntimeError:
            if sink.error is not None:
                raise sink.error from None
            raise


class _RecordingWriter:
    """A file wrapper that remembers the OSError of a failed write."""

    def __init__(self, fh):
        self.fh, self.error = fh, None

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.fh.flush()


@dataclass
class RunState:
    """What a checkpoint restores besides model/optimizer/scheduler weights."""

    step: int = 0            # optimiser steps done
    micro: int = 0           # micro-batches consumed (position in the data order)
    best_f1: float = -1.0    # best dev score so far (the task's metric; the name is historical)
    best_step: int = 0
    best_stage: int = 1
    best_metrics: dict = field(default_factory=dict)
    bad_evals: int = 0
    history: list = field(default_factory=list)
    finished: bool = False


def checkpoint_path(out: str | os.PathLike) -> Path:
    """``OUT.checkpoint`` beside the model directory ``OUT``."""
    out = Path(out)
    return out.parent / (out.name + CHECKPOINT_SUFFIX)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_output_paths(out: str | os.PathLike, resume: bool,
                       is_model_dir: Callable[[Path], bool] = lambda p: False) -> None:
    """Refuse an ``out`` that is something else than a model directory (``is_model_dir``
    tells; an empty directory is fine), and an interrupted run's checkpoint without
    ``resume`` (it is not silently thrown away)."""
    out_path = Path(out)
    ckpt = checkpoint_path(out_path)
    if out_path.exists() and (not out_path.is_dir() or
                              (not is_model_dir(out_path) and any(out_path.iterdir()))):
        raise NertoolsError(f"--out {out} exists and is not a nertools model directory; "
                            "choose another path")
    if ckpt.exists() and not resume:
        raise NertoolsError(f"{ckpt} holds an interrupted run: pass --resume to continue it, "
                            "or delete it to start over")


# --------------------------------------------------------------------------- RNG


def rng_state() -> dict:
    """The Python, numpy, torch (and CUDA) RNG states."""
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (torch seeds CUDA too)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- files


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], *, best: dict | None = None,
                    summary: dict | None = None) -> None:
    """Write the checkpoint directory ``path`` atomically (see the module doc).

    ``state`` is pickled to ``state.pt`` (it may hold tensors, optimizer states and RNG
    states); ``best`` (a state dict) to ``best.pt``; ``summary`` to ``state.json``.
    """
    try:
        with atomic_dir(path, fsync=True) as tmp:
            torch_save(state, tmp / STATE_FILE)
            if best is not None:
                torch_save(best, tmp / BEST_FILE)
            (tmp / SUMMARY_FILE).write_text(json.dumps(summary or {}), encoding="utf-8")
            pause_for_tests(WRITE_PAUSE_ENV)
    except Exception as e:
        reason = write_error(e)
        if reason is None:
            raise
        raise WriteFailed(f"cannot write the checkpoint {path}: {reason}") from None


def pause_for_tests(env: str) -> None:
    """Sleep the seconds the environment variable ``env`` names (test hooks; unset: none)."""
    pause = float(os.environ.get(env, "0") or 0)
    if pause:
        time.sleep(pause)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict, dict | None]:
    """``(state, best)`` of a checkpoint directory (``best`` is ``None`` when absent)."""
    import torch

    path = Path(path)
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    best = None
    if (path / BEST_FILE).exists():
        best = torch.load(path / BEST_FILE, map_location="cpu", weights_only=True)
    return state, best


def remove_checkpoint(path: str | os.PathLike) -> None:
    """Delete a checkpoint directory: first renamed aside (a stop mid-way never leaves a
    half-deleted checkpoint that ``--resume`` would trip on), then removed."""
    path = Path(path)
    if not path.exists():
        return
    aside = path.parent / f".{path.name}.removed-{os.getpid()}"
    os.rename(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


def leftover_temps(out: str | os.PathLike) -> list[Path]:
    """Temporary siblings of the model directory ``out`` and of its checkpoint that a killed
    run left (``.OUT.tmp-*``, ``.OUT.checkpoint.tmp-*``, ``.OUT.old-*``, ...)."""
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        return []
    found = []
    for name in (out.name, checkpoint_path(out).name):
        for pattern in (f".{name}{TEMP_PREFIX}*", f".{name}.old-*", f".{name}.removed-*"):
            found.extend(parent.glob(pattern))
    return sorted(set(found))


def remove_temps(paths: Iterable[Path]) -> None:
    for p in paths:
        discard(p)


def recover_checkpoint(path: str | os.PathLike) -> bool:
    """A checkpoint that a SIGKILL caught between the two renames of its replacement lies
    aside as ``.NAME.old-PID``: put it back when ``path`` is missing. Returns whether it did."""
    path = Path(path)
    if path.exists():
        return False
    aside = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
    complete = [p for p in aside if (p / STATE_FILE).is_file() and (p / SUMMARY_FILE).is_file()]
    if not complete:
        return False
    os.rename(complete[-1], path)
    return True


def foreign_files(directory: str | os.PathLike, owned: Iterable[str]) -> list[str]:
    """Names of the entries of ``directory`` that are not in ``owned`` (sorted)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    owned = set(owned)
    return sorted(p.name for p in directory.iterdir() if p.name not in owned)


def foreign_entries_error(out: str | os.PathLike, foreign: list[str], advice: str) -> NertoolsError:
    """The refusal to replace the directory ``out`` that holds the ``foreign`` entries
    (``advice`` continues "move them elsewhere")."""
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    n = len(foreign)
    it = "it" if n == 1 else "them"
    return NertoolsError(f"--out {out} holds {n} entr{'y' if n == 1 else 'ies'} that nertools did not write "
                         f"({shown}); replacing the directory would delete {it}: move {it} elsewhere{advice}")


def config_differences(saved: Any, now: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, saved value, current value)`` for every leaf where two nested dicts of
    run configuration differ."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for key in list(saved) + [k for k in now if k not in saved]:
            name = f"{prefix}.{key}" if prefix else str(key)
            out += config_differences(saved.get(key, _MISSING), now.get(key, _MISSING), name)
        return out
    return [] if saved == now else [(prefix, saved, now)]


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


_MISSING = _Missing()


def describe_config_differences(saved: dict, now: dict, fingerprints: dict) -> list[str]:
    """What differs between a checkpoint's run config and this run's, in the user's words:
    ``--lr (5e-05 in the checkpoint, 0.001 now)``, ``--train FILE: its content differs ...``,
    the label set. ``fingerprints``: ``{name: {"path", "sha256"}}`` of the run's data (the
    configs' ``data`` section); the configs are ``{"args", "data", "labels", ...}``."""
    found = []
    for key, old, new in config_differences(saved, now):
        section, _, name = key.partition(".")
        if section == "args" and name:
            found.append(f"--{name.replace('_', '-')} ({old!r} in the checkpoint, {new!r} now)")
        elif section == "data" and name in fingerprints:
            path = fingerprints[name]["path"] or f"the {name} records"
            flag = f"--{name} " if fingerprints[name]["path"] else ""
            found.append(f"{flag}{path}: its content differs from the {name} data of the checkpoint "
                         f"(sha256 {str(old)[:12]}... there, {str(new)[:12]}... now)")
        elif section == "labels":
            def show(v):
                return ", ".join(v) if isinstance(v, list) else repr(v)

            found.append(f"the label set of the training data ({show(old)} in the checkpoint, {show(new)} now)")
        else:
            found.append(f"{key} ({old!r} in the checkpoint, {new!r} now)")
    return found
