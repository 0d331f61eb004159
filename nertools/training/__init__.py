"""The training loop every nertools model shares (tagger today; bi-encoders and generators next).

- :mod:`nertools.training.loop`: :class:`Trainer` (optimiser groups, LR schedule, gradient
  accumulation, autocast, dev evaluation with best-model selection and early stopping, the
  atomic model directory) and :class:`Task`, the plug-in a model supplies (batches, loss,
  evaluation, saving);
- :mod:`nertools.training.checkpoint`: checkpoints and resume (:class:`RunState`, RNG states,
  atomic checkpoint directories, :class:`WriteFailed` for a write that fails);
- :mod:`nertools.training.signals`: SIGTERM stops a run like Ctrl-C, and neither signal
  interrupts a write (:class:`SignalGuard`).

torch is imported inside the functions: importing this package is cheap.
"""

from nertools.training.checkpoint import (RunState, WriteFailed, check_output_paths, checkpoint_path,
                                          load_checkpoint, rng_state, save_checkpoint, seed_everything,
                                          set_rng_state)
from nertools.training.loop import (NO_DECAY, StepContext, Task, Trainer, TrainerConfig, autocast_dtype,
                                    needs_grad_scaler, parameter_groups)
from nertools.training.signals import SignalGuard

__all__ = ["NO_DECAY", "RunState", "SignalGuard", "StepContext", "Task", "Trainer", "TrainerConfig",
           "WriteFailed", "autocast_dtype",
           "check_output_paths", "checkpoint_path", "load_checkpoint", "needs_grad_scaler",
           "parameter_groups", "rng_state", "save_checkpoint", "seed_everything", "set_rng_state"]
