"""One training loop for every model nertools trains: :class:`Trainer` runs a :class:`Task`.

The loop owns what every fine-tuning run needs and gets right once:

* AdamW over two parameter groups (no weight decay for biases and norm weights), a linear
  warmup then linear decay schedule, gradient clipping and accumulation;
* autocast: bf16 (fp16 where bf16 is missing, with a gradient scaler) on CUDA, none on CPU
  unless asked (:func:`autocast_dtype`); weights and optimiser state stay float32;
* the data order: a seeded permutation of the task's examples per epoch, cut into
  micro-batches; an epoch's last micro-batch always ends an optimiser step;
* every ``eval_every`` steps (default: once per epoch) and at the last step, the task scores
  the model on dev; the best model is kept, and training stops early when the score has not
  improved for ``patience`` evaluations (only evaluations in stages where the task says so
  count, see :meth:`Task.counts_for_patience`);
* a checkpoint after every evaluation (:mod:`nertools.training.checkpoint`); ``resume``
  continues from it and reproduces the uninterrupted run;
* at the end the best model is written by the task into a temporary directory beside
  ``out`` that replaces ``out`` by renames (:func:`nertools.core.atomic.atomic_dir`), and the
  checkpoint is deleted. Files in an existing ``out`` that the task did not write
  (:meth:`Task.owned_files`, else what it writes now) are never deleted: the run stops with
  an error naming them and keeps the checkpoint (move them, then ``resume`` to finish);
* SIGTERM stops a run like Ctrl-C, and neither signal interrupts a checkpoint or model
  write (:mod:`nertools.training.signals`); a failed write (disk full) and running out of
  GPU memory are one-line :class:`~nertools.errors.NertoolsError` messages (the latter with
  :meth:`Task.oom_hint`); temporary directories an earlier killed run left beside ``out``
  are removed when a run succeeds.

The task is the plug-in: it owns the model's inputs and outputs. It turns example indices
into a batch, computes the loss of a batch, scores the model on dev and writes the model
directory; optional hooks give it stages (BOND's stage I/II), a hook before each optimiser
step (BOND's teacher refresh) and state that checkpoints carry (the teacher). A tagger
(:class:`nertools.tagging.train.TaggerTask`), a bi-encoder (token encoder x label encoder,
BCE/CE over the batch's labels) or a seq2seq/causal generator each fit this shape: their
``collate`` builds their tensors and their ``loss`` runs their forward pass.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from nertools.core.atomic import atomic_dir
from nertools.errors import NertoolsError
from nertools.runtime import progress
from nertools.training.checkpoint import (PAUSE_ENV, RunState, WriteFailed, checkpoint_path,
                                          config_differences, foreign_entries_error, foreign_files,
                                          leftover_temps, load_checkpoint, pause_for_tests,
                                          recover_checkpoint, remove_checkpoint, remove_temps, rng_state,
                                          save_checkpoint, set_rng_state, write_error)
from nertools.training.signals import SignalGuard

if TYPE_CHECKING:  # torch is imported inside the functions
    import torch

def knob(default, help: str | None = None, **cli):
    """A field of a run's argument dataclass (ner-selftrain's TrainArgs, ner-biencoder's
    BiEncoderArgs, ner-align's): ``help`` and ``cli`` (``min``, ``max``, ``min_open``,
    ``choices``, ``cli=False``) become its command-line option (see
    :func:`nertools.cli.options.dataclass_options`)."""
    return field(default=default, metadata={"help": help, **cli})


#: Parameter-name fragments that get no weight decay (biases and layer/RMS norm weights).
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


@dataclass
class TrainerConfig:
    """The optimisation knobs of a run (the task has its own)."""

    lr: float
    batch_size: int = 16
    grad_accum: int = 1
    epochs: float = 3.0
    max_steps: int | None = None       # overrides epochs
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    eval_every: int | None = None      # None: once per epoch
    patience: int = 5                  # evaluations without improvement; 0 = never stop
    seed: int = 42                     # the data order (seed the model's init before building it)
    precision: str = "auto"            # autocast: auto|float32|bfloat16|float16
    metric: str = "f1"                 # key of Task.evaluate's dict; higher is better


@dataclass(frozen=True)
class StepContext:
    """What a task's :meth:`~Task.loss` and :meth:`~Task.evaluate` get besides model and batch.

    ``step`` is the 1-based optimiser step the loss is computed for (for ``evaluate``: the
    steps done); ``dtype`` is the autocast dtype (``float32``: autocast off).
    """

    step: int
    device: Any
    dtype: Any

    def autocast(self):
        """The autocast context of the run (a no-op context in float32)."""
        return autocast_context(self.device, self.dtype)


class Task:
    """The plug-in of :class:`Trainer`. Subclass it and implement the first five methods.

    Required: :meth:`num_examples`, :meth:`collate`, :meth:`loss`, :meth:`evaluate`,
    :meth:`save`. The others have neutral defaults.
    """

    #: Name of the dev metric in log lines (``dev F1 ...``).
    metric_label = "F1"

    def num_examples(self) -> int:
        """Training examples; the loop shuffles ``range(num_examples())`` every epoch."""
        raise NotImplementedError

    def collate(self, indices: Sequence[int]) -> Any:
        """The batch of the examples ``indices``: tensors (CPU is fine: dicts, lists and tuples
        of tensors are moved to the run's device) or anything :meth:`loss` understands."""
        raise NotImplementedError

    def loss(self, model, batch: Any, ctx: StepContext) -> "torch.Tensor":
        """The scalar loss of one micro-batch (run the forward pass under ``ctx.autocast()``)."""
        raise NotImplementedError

    def evaluate(self, model, ctx: StepContext) -> dict:
        """Dev metrics; must hold the trainer's ``metric`` key (higher is better). JSON-able."""
        raise NotImplementedError

    def save(self, model, directory: Path, state: RunState) -> dict:
        """Write the final model into the empty ``directory`` (it then replaces ``out``
        atomically) and return its metadata (what :meth:`Trainer.fit` returns)."""
        raise NotImplementedError

    # ---- optional hooks

    def stage(self, step: int) -> int:
        """The training stage of optimiser step ``step`` (recorded in the history)."""
        return 1

    def counts_for_patience(self, stage: int) -> bool:
        """Whether an evaluation without improvement in ``stage`` counts towards ``patience``."""
        return True

    def before_step(self, model, step: int) -> None:
        """Called before the first micro-batch of optimiser step ``step`` (1-based)."""

    def state_dict(self) -> Any:
        """Extra state a checkpoint must carry (e.g. a teacher model's weights)."""
        return None

    def load_state_dict(self, state: Any, model) -> None:
        """Restore :meth:`state_dict` on resume (``model`` already holds its checkpoint weights)."""

    def run_config(self) -> dict:
        """What a resumed run must share with the checkpoint's (arguments, data hashes, labels)."""
        return {}

    def describe(self) -> str:
        """A phrase for the start-of-run log line (data sizes, labels, ...)."""
        return ""

    def parameter_groups(self, model, config: TrainerConfig) -> list[dict] | None:
        """Optimizer parameter groups; ``None`` uses :func:`parameter_groups`."""
        return None

    def owned_files(self, directory: Path) -> set[str] | None:
        """The entries of an existing output ``directory`` that this task wrote there (e.g. a
        manifest in its metadata); ``None``: not known, only what :meth:`save` writes now
        counts as the task's. Anything else in ``directory`` is the user's and is kept."""
        return None

    def config_differences(self, saved: dict, now: dict) -> list[str]:
        """Phrases naming what differs between a checkpoint's :meth:`run_config` and this
        run's (for the refusal to resume); default: the differing keys and values."""
        return _phrases(config_differences(saved, now))

    def oom_hint(self) -> str:
        """What to change when a step runs out of (GPU) memory."""
        return "use a smaller batch size"


# --------------------------------------------------------------------------- precision


def autocast_dtype(spec: str, device) -> "torch.dtype":
    """The autocast dtype for ``--precision``: ``auto`` is bf16 (or fp16) on CUDA, fp32 on CPU."""
    import torch

    from nertools.runtime.models import resolve_dtype

    return resolve_dtype(spec, device) if spec != "auto" else (
        resolve_dtype("auto", device) if device.type == "cuda" else torch.float32)


def autocast_context(device, dtype):
    import torch

    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)


def needs_grad_scaler(device, dtype) -> bool:
    """fp16 autocast on CUDA needs loss scaling; bf16 and fp32 do not."""
    import torch

    return device.type == "cuda" and dtype == torch.float16


def parameter_groups(model, weight_decay: float, no_decay: Sequence[str] = NO_DECAY) -> list[dict]:
    """AdamW groups: decayed weights, then biases and norm weights without decay
    (trainable parameters only, in the model's order)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [{"params": [p for n, p in named if not any(k in n for k in no_decay)],
             "weight_decay": weight_decay},
            {"params": [p for n, p in named if any(k in n for k in no_decay)],
             "weight_decay": 0.0}]


def to_device(batch: Any, device) -> Any:
    """``batch`` with every tensor in it (dicts, lists, tuples) moved to ``device``."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _phrases(differences: Sequence[tuple[str, Any, Any]], limit: int = 40) -> list[str]:
    """``key (saved in the checkpoint, current now)`` for each difference, values shortened."""
    def show(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= limit else text[:limit - 3] + "..."

    return [f"{key} ({show(a)} in the checkpoint, {show(b)} now)" for key, a, b in differences]


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA (or other accelerator) out-of-memory error from torch."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    first = str(exc).strip().splitlines()[0].lower() if str(exc).strip() else ""
    return isinstance(exc, RuntimeError) and "out of memory" in first


def cpu_state(model) -> dict:
    """A detached CPU copy of ``model``'s state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    """The example order of ``epoch``: a permutation that depends on ``seed`` and ``epoch`` only."""
    import torch

    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    return torch.randperm(n, generator=g).tolist()


# --------------------------------------------------------------------------- the loop


class Trainer:
    """Runs ``task`` on ``model`` and writes the model directory ``out`` (see the module doc).

    ``device`` is a name (``auto``, ``cpu``, ``cuda:N``) or a ``torch.device``; the model is
    moved there. ``log`` receives the progress lines (default: stderr, silenced by
    ``--quiet``). Call :meth:`fit`.
    """

    def __init__(self, model, task: Task, config: TrainerConfig, *, out: str | Path,
                 device: Any = "auto", resume: bool = False,
                 log: Callable[[str], None] = progress.log):
        import torch
        from torch.optim import AdamW
        from transformers import get_linear_schedule_with_warmup

        from nertools.runtime.models import resolve_device

        self.model, self.task, self.config = model, task, config
        self.out = Path(out)
        self.checkpoint_dir = checkpoint_path(self.out)
        self.resume, self.log = resume, log
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.dtype = autocast_dtype(config.precision, self.device)
        self.state = RunState()
        self._guard_memory(lambda: model.to(self.device), "moving the model there")

        n = task.num_examples()
        if n < 1:
            raise NertoolsError("no training examples")
        self.micro_per_epoch = math.ceil(n / config.batch_size)
        self.steps_per_epoch = max(1, math.ceil(self.micro_per_epoch / config.grad_accum))
        self.total_steps = config.max_steps or max(1, math.ceil(config.epochs * self.steps_per_epoch))
        self.eval_every = config.eval_every or self.steps_per_epoch

        groups = task.parameter_groups(model, config) or parameter_groups(model, config.weight_decay)
        self.optimizer = AdamW(groups, lr=config.lr)
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(config.warmup_ratio * self.total_steps), self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(self.device, self.dtype))
        self.best_state: dict | None = None
        self._running = [0.0, 0]  # loss sum and micro-batches since the last evaluation
        self._signals = SignalGuard()  # installed by fit(); critical() holds signals back

    # ---- checkpoints

    def run_config(self) -> dict:
        return {"task": self.task.run_config(), "trainer": asdict(self.config)}

    def save_checkpoint(self) -> None:
        saved = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "task": self.task.state_dict(), "run_state": asdict(self.state), "rng": rng_state(),
                 "run_config": self.run_config()}
        with self._signals.critical():
            try:
                save_checkpoint(self.checkpoint_dir, saved, best=self.best_state,
                                summary={"step": self.state.step, "total_steps": self.total_steps,
                                         "best_f1": self.state.best_f1})
            except WriteFailed as e:
                raise WriteFailed(f"{e}; the previous checkpoint (if any) is kept: free some space "
                                  "and rerun with --resume") from None
        pause_for_tests(PAUSE_ENV)  # outside the critical block: a test may signal the run here

    def restore(self) -> bool:
        """Continue from the checkpoint if there is one; ``False`` when there is none."""
        ckpt = self.checkpoint_dir
        if recover_checkpoint(ckpt):
            self.log(f"note: put back the checkpoint {ckpt} that a killed run had left aside")
        if not ckpt.exists():
            self.log(f"note: no checkpoint at {ckpt}; starting a fresh run")
            return False
        saved, best = load_checkpoint(ckpt)
        if saved.get("run_config") != self.run_config():
            raise NertoolsError(f"{ckpt} was written by a run with other arguments or data: "
                                f"{self.describe_differences(saved.get('run_config'))}; "
                                "delete it or rerun with the same options")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        self.state = RunState(**saved["run_state"])
        self.task.load_state_dict(saved.get("task"), self.model)
        self.best_state = best
        set_rng_state(saved["rng"])
        self.log(f"resumed from {ckpt} at step {self.state.step}/{self.total_steps}")
        return True

    def describe_differences(self, saved: dict | None) -> str:
        """What differs between a checkpoint's run configuration and this run's: the task's
        phrases, and the trainer's own settings where the task names nothing."""
        if not isinstance(saved, dict) or not {"task", "trainer"} <= set(saved):
            return "it holds no run configuration (another version of nertools wrote it)"
        now = self.run_config()
        found = (self.task.config_differences(saved["task"], now["task"])
                 or _phrases(config_differences(saved["trainer"], now["trainer"])))
        return "; ".join(found) or "the run configuration"

    # ---- steps

    def context(self, step: int) -> StepContext:
        return StepContext(step, self.device, self.dtype)

    def micro_step(self, indices: Sequence[int], step: int) -> float:
        """Forward and backward of one micro-batch (gradients accumulate); returns its loss."""
        batch = to_device(self.task.collate(indices), self.device)
        loss = self.task.loss(self.model, batch, self.context(step))
        self.scaler.scale(loss / self.config.grad_accum).backward()
        return loss.item()

    def optimizer_step(self) -> None:
        import torch

        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1

    def evaluate(self) -> dict:
        """Score on dev, record the history entry, keep the model if it is the best so far."""
        state, metric = self.state, self.config.metric
        metrics = self.task.evaluate(self.model, self.context(state.step))
        score = metrics[metric]
        stage = self.task.stage(state.step)
        loss = self._running[0] / max(1, self._running[1])
        state.history.append({"step": state.step, "stage": stage, f"dev_{metric}": score,
                              "loss": round(loss, 5)})
        if score > state.best_f1:
            state.best_f1, state.best_step, state.best_stage = score, state.step, stage
            state.best_metrics = metrics
            state.bad_evals = 0
            self.best_state = cpu_state(self.model)
        elif self.task.counts_for_patience(stage):
            state.bad_evals += 1
        self.log(f"step {state.step}/{self.total_steps} stage {stage} loss {loss:.4f} "
                 f"dev {self.task.metric_label} {score:.2f} (best {state.best_f1:.2f} @ {state.best_step})")
        return metrics

    # ---- the run

    def fit(self) -> dict:
        """Train, select, write ``out``; returns what :meth:`Task.save` returned."""
        with self._signals:
            leftovers = leftover_temps(self.out)  # of an earlier killed run; removed on success
            if self.resume:
                self.restore()
            desc = self.task.describe()
            self.log((f"{desc}; " if desc else "") + f"{self.steps_per_epoch} steps/epoch; "
                     f"{self.total_steps} steps; lr {self.config.lr:g}")
            started = time.time()
            self._guard_memory(self._train)
            if self.best_state is None:  # resumed from a finished checkpoint without best.pt
                self._guard_memory(self.evaluate)
            self.model.load_state_dict(self.best_state)
            self.log(f"trained {self.state.step} steps in {time.time() - started:.0f}s; best dev "
                     f"{self.task.metric_label} {self.state.best_f1:.2f} at step {self.state.best_step}")
            meta = self.write_output()
            with self._signals.critical():
                remove_checkpoint(self.checkpoint_dir)
                remove_temps(leftovers)
            return meta

    def write_output(self) -> dict:
        """The task writes the model into a temporary directory that then replaces ``out``
        (signals held back). Refused, keeping ``out`` and the checkpoint, when ``out`` holds
        entries the task did not write, or when the write fails."""
        owned = (self.task.owned_files(self.out) if self.out.is_dir() else None) or set()
        try:
            with self._signals.critical(), atomic_dir(self.out, fsync=True) as tmp:
                meta = self.task.save(self.model, tmp, self.state)
                foreign = foreign_files(self.out, owned | set(os.listdir(tmp)))
                if foreign:
                    raise foreign_entries_error(self.out, foreign, (
                        f", then rerun with --resume to write {self.out} from {self.checkpoint_dir} "
                        "without training again"))
        except NertoolsError:
            raise
        except Exception as e:
            reason = write_error(e)
            if reason is None:
                raise
            raise WriteFailed(f"cannot write {self.out}: {reason}; the trained run is kept in "
                              f"{self.checkpoint_dir}: free some space and rerun with --resume") from None
        return meta

    def _guard_memory(self, fn: Callable[[], Any], when: str | None = None) -> Any:
        """Run ``fn``; running out of GPU memory becomes one line with the task's hint."""
        try:
            return fn()
        except RuntimeError as e:
            if not is_out_of_memory(e):
                raise
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            when = when or f"after {self.state.step} step(s)"
            raise NertoolsError(f"out of memory on {self.device} {when}: {self.task.oom_hint()} "
                                f"({first[:120]})") from None

    def _train(self) -> None:
        cfg, state = self.config, self.state
        n = self.task.num_examples()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        order, order_epoch = [], -1
        accumulated = 0  # micro-batches in the current optimiser step (checkpoints fall between steps)
        while state.step < self.total_steps and not state.finished:
            epoch, k = divmod(state.micro, self.micro_per_epoch)
            if order_epoch != epoch:
                order, order_epoch = epoch_order(cfg.seed, epoch, n), epoch
            step = state.step + 1
            if accumulated == 0:
                self.task.before_step(self.model, step)
            loss = self.micro_step(order[k * cfg.batch_size:(k + 1) * cfg.batch_size], step)
            self._running[0] += loss
            self._running[1] += 1
            state.micro += 1
            accumulated += 1
            if accumulated < cfg.grad_accum and state.micro % self.micro_per_epoch:
                continue  # accumulate; an epoch's last micro-batch always ends a step
            accumulated = 0
            self.optimizer_step()
            if state.step % self.eval_every == 0 or state.step == self.total_steps:
                self.evaluate()
                self._running = [0.0, 0]
                if cfg.patience and state.bad_evals >= cfg.patience:
                    self.log(f"early stop: dev {self.task.metric_label} has not improved for "
                             f"{cfg.patience} evaluations")
                    state.finished = True
                self.save_checkpoint()
