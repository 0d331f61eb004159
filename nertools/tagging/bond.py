"""BOND self-training (Liang et al., KDD 2020), as used by GeNER: the maths and the schedule.

Training runs in two stages (:func:`stage_at`):

* **Stage I** (steps ``1..t_early``): the student is fine-tuned on the (pseudo/distant) labels
  with ordinary cross-entropy.
* **Stage II** (steps after ``t_early``): a *teacher* copy of the model relabels every batch.
  Its token distributions ``q`` become soft labels ``p ∝ q² / f`` with ``f`` the class
  frequency (the sum of ``q`` over the batch's tokens, per class), renormalised per token
  (:func:`soft_labels`). Tokens whose largest soft probability is below a threshold are
  ignored (:func:`confidence_mask`). The student minimises ``KL(p ‖ softmax(student logits))``
  averaged over the kept tokens (:func:`kl_loss`). Every ``t_update`` steps the student is
  copied into the teacher (:func:`is_teacher_update`).

Two deliberate differences from the official BOND/GeNER code:

* the official code passes *raw logits* to ``torch.nn.KLDivLoss``, which expects
  log-probabilities; here the student's logits go through ``log_softmax`` first, so the loss
  really is the KL divergence (it is >= 0 and 0 exactly when the distributions agree);
* the official code selects its checkpoint by *test* F1; nertools selects by *dev* F1 only.

All functions here are pure tensor functions so they can be unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported inside the functions: the constants load without it
    import torch

#: BOND's CoNLL-2003 script: learning rate, stage-I length, teacher update period, confidence
#: threshold. The script uses T_update 456 (the paper's range is 300-450 steps).
BOND_LR = 1e-5
BOND_T_EARLY = 900
BOND_T_UPDATE = 456
BOND_THRESHOLD = 0.9
#: Sentences in CoNLL-2003 train, the data size the BOND defaults were tuned for.
BOND_REFERENCE_SIZE = 14041


def soft_labels(q: torch.Tensor, mask: torch.Tensor | None = None, power: float = 2.0,
                eps: float = 1e-12) -> torch.Tensor:
    """BOND's soft labels from teacher probabilities ``q`` (``[..., C]``).

    ``f_c = Σ_tokens q_c`` over the tokens selected by ``mask`` (all tokens when ``None``;
    padding and non-first sub-tokens must be excluded by the caller's mask);
    ``p_c ∝ q_c^power / f_c``, normalised over ``c`` for each token. Tokens outside ``mask``
    get whatever the formula gives; the caller ignores them.
    """
    q = q.float()
    if mask is None:
        f = q.reshape(-1, q.shape[-1]).sum(0)
    else:
        f = (q * mask.unsqueeze(-1).to(q.dtype)).reshape(-1, q.shape[-1]).sum(0)
    t = q.pow(power) / (f + eps)
    return t / t.sum(-1, keepdim=True).clamp_min(eps)


def confidence_mask(p: torch.Tensor, threshold: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``True`` for tokens whose largest soft probability is at least ``threshold``
    (and that are ``valid``, when a validity mask is given)."""
    keep = p.max(-1).values >= threshold
    if valid is not None:
        keep = keep & valid.bool()
    return keep


def kl_loss(soft: torch.Tensor, student_logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``KL(soft ‖ softmax(student_logits))``: summed over classes, averaged over kept tokens.

    ``soft`` and ``student_logits`` are ``[..., C]``, ``keep`` is a boolean ``[...]`` mask.
    Returns a zero that still carries the graph when no token is kept.
    """
    import torch
    import torch.nn.functional as F

    log_q = F.log_softmax(student_logits.float(), dim=-1)
    soft = soft.float()
    # xlogy: 0 * log 0 = 0 for classes the soft label gives no mass
    per_token = (torch.special.xlogy(soft, soft) - soft * log_q).sum(-1)
    k = keep.bool()
    n = int(k.sum())
    if n == 0:
        return student_logits.sum() * 0.0
    return per_token[k].sum() / n


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Token cross-entropy ``Σ w·CE / Σ w`` over tokens with ``labels != -100``.

    ``weights`` lets stage I (and supervised training) down-weight tokens labelled ``O`` in
    partly labelled pseudo data (``--o-weight``).
    """
    import torch.nn.functional as F

    valid = labels != -100
    if not bool(valid.any()):
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits[valid].float(), labels[valid], reduction="none")
    w = weights[valid].to(ce.dtype)
    total = w.sum()
    if float(total) <= 0:
        return logits.sum() * 0.0
    return (ce * w).sum() / total


def stage_at(step: int, t_early: int) -> int:
    """Stage (1 or 2) of optimisation step ``step`` (1-based): stage I for ``step <= t_early``."""
    return 1 if step <= t_early else 2


def is_teacher_update(step: int, t_early: int, t_update: int) -> bool:
    """Whether the student is copied into the teacher *before* step ``step`` (1-based).

    The teacher is initialised at the first stage-II step (``t_early + 1``) and refreshed every
    ``t_update`` steps after that.
    """
    if step <= t_early:
        return False
    return (step - t_early - 1) % t_update == 0


@dataclass(frozen=True)
class BondSchedule:
    t_early: int
    t_update: int
    threshold: float


def scaled_schedule(n_train: int, batch_size: int, *, t_early: int | None = None,
                    t_update: int | None = None, threshold: float | None = None) -> BondSchedule:
    """BOND's CoNLL defaults, scaled down for small training sets.

    BOND's CoNLL-2003 script (14,041 sentences, batch 16) runs stage I for 900 steps (about
    one epoch) and refreshes the teacher every 456 steps. For ``n_train`` sentences both are
    scaled by ``s = min(1, n_train / 14041)``, with floors so that a tiny data set still
    learns something in stage I: ``T_early = max(100, round(900 s))``,
    ``T_update = max(25, round(456 s))``. Explicit values win. (``batch_size`` is accepted for
    callers that count windows, not sentences; the rule itself uses the sentence count.)
    """
    s = min(1.0, n_train / BOND_REFERENCE_SIZE)
    te = t_early if t_early is not None else max(100, round(BOND_T_EARLY * s))
    tu = t_update if t_update is not None else max(25, round(BOND_T_UPDATE * s))
    th = BOND_THRESHOLD if threshold is None else threshold
    if te < 0 or tu < 1:
        raise ValueError("T_early must be >= 0 and T_update >= 1")
    return BondSchedule(te, tu, th)
