"""Checkpoints of a training run: what is saved, how it is written, how a run resumes.

A checkpoint is the directory ``OUT.checkpoint/`` beside the model directory ``OUT``:

* ``state.pt`` — model, optimizer, scheduler and grad-scaler state, the task's own state
  (e.g. BOND's teacher), the :class:`RunState`, every RNG state and the run's configuration
  (a resume with other arguments or data is refused);
* ``best.pt`` — the best model so far (by the dev metric), when there is one;
* ``state.json`` — ``step``, ``total_steps`` and the best score, for people and tests.

It is built in a temporary directory beside the target and renamed into place
(:func:`nertools.core.atomic.atomic_dir`), so a crash — even SIGKILL — leaves the previous
complete checkpoint or the new one. Restoring the RNG states with the rest makes a resumed
run reproduce the uninterrupted one exactly.
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
from typing import Any, Callable

from nertools.core.atomic import atomic_dir
from nertools.errors import NertoolsError

CHECKPOINT_SUFFIX = ".checkpoint"
STATE_FILE = "state.pt"
BEST_FILE = "best.pt"
SUMMARY_FILE = "state.json"
#: Test hook: seconds to sleep after each checkpoint (lets a test kill a run mid-way).
PAUSE_ENV = "NERTOOLS_CHECKPOINT_PAUSE"


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
    import torch

    with atomic_dir(path, fsync=True) as tmp:
        torch.save(state, tmp / STATE_FILE)
        if best is not None:
            torch.save(best, tmp / BEST_FILE)
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary or {}), encoding="utf-8")
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
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
    shutil.rmtree(path, ignore_errors=True)
