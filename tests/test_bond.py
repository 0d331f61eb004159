"""BOND self-training maths (nertools.tagging.bond): soft labels, masking, the KL loss, the schedule."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from nertools.tagging import bond


def test_soft_labels_hand_computed():
    # f = column sums = [1.5, 0.5]; q^2/f = [[.54, .02], [.24, .32]]; rows normalised
    q = torch.tensor([[0.9, 0.1], [0.6, 0.4]])
    p = bond.soft_labels(q)
    expected = torch.tensor([[0.54 / 0.56, 0.02 / 0.56], [0.24 / 0.56, 0.32 / 0.56]])
    assert torch.allclose(p, expected, atol=1e-6)
    # the frequency term flips the second token to the rare class
    assert p[1].argmax() == 1 and q[1].argmax() == 0


def test_soft_labels_rows_sum_to_one_and_sharpen():
    torch.manual_seed(0)
    q = torch.softmax(torch.randn(3, 5, 4), -1)
    p = bond.soft_labels(q)
    assert torch.allclose(p.sum(-1), torch.ones(3, 5), atol=1e-6)
    # with uniform class frequency the power 2 only sharpens: max prob does not drop
    q_bal = torch.tensor([[0.7, 0.3], [0.3, 0.7]])
    p_bal = bond.soft_labels(q_bal)
    assert torch.all(p_bal.max(-1).values > q_bal.max(-1).values)


def test_soft_labels_frequency_ignores_masked_tokens():
    q = torch.tensor([[[0.9, 0.1], [0.6, 0.4], [0.0, 1.0]]])  # last token is padding
    mask = torch.tensor([[True, True, False]])
    p_masked = bond.soft_labels(q, mask)
    p_ref = bond.soft_labels(q[:, :2])
    assert torch.allclose(p_masked[:, :2], p_ref, atol=1e-6)
    # without the mask the padding's mass on class 1 changes f and the labels
    assert not torch.allclose(bond.soft_labels(q)[:, :2], p_ref, atol=1e-3)


def test_confidence_mask_threshold_and_validity():
    p = torch.tensor([[0.95, 0.05], [0.6, 0.4], [0.1, 0.9]])
    assert bond.confidence_mask(p, 0.9).tolist() == [True, False, True]
    valid = torch.tensor([True, True, False])
    assert bond.confidence_mask(p, 0.9, valid).tolist() == [True, False, False]
    assert bond.confidence_mask(p, 0.0).all()


def _kl(p: list[float], logits: list[float]) -> float:
    z = [math.exp(x) for x in logits]
    q = [x / sum(z) for x in z]
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def test_kl_loss_is_kl_with_log_softmax_batch_mean_over_kept():
    soft = torch.tensor([[0.8, 0.2], [1.0, 0.0], [0.5, 0.5]])
    logits = torch.tensor([[2.0, -1.0], [0.3, 0.1], [5.0, -5.0]])
    keep = torch.tensor([True, True, False])
    loss = bond.kl_loss(soft, logits, keep)
    expected = (_kl([0.8, 0.2], [2.0, -1.0]) + _kl([1.0, 0.0], [0.3, 0.1])) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_kl_loss_zero_when_student_matches_and_nonnegative():
    soft = torch.tensor([[0.7, 0.2, 0.1]])
    logits = soft.log() + 3.0  # softmax(logits) == soft
    assert bond.kl_loss(soft, logits, torch.tensor([True])).item() == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(1)
    for _ in range(5):
        s = torch.softmax(torch.randn(4, 3), -1)
        lg = torch.randn(4, 3) * 4
        assert bond.kl_loss(s, lg, torch.ones(4, dtype=torch.bool)).item() >= 0


def test_kl_loss_differs_from_official_raw_logit_kldivloss():
    soft = torch.tensor([[0.7, 0.3]])
    logits = torch.tensor([[2.0, 1.0]])
    with warnings.catch_warnings():  # torch warns about reduction="mean", the BOND code's default
        warnings.simplefilter("ignore")
        official = torch.nn.KLDivLoss()(logits, soft)  # the BOND code's call: raw logits
    ours = bond.kl_loss(soft, logits, torch.tensor([True]))
    assert official.item() < 0  # not a divergence at all
    assert ours.item() == pytest.approx(_kl([0.7, 0.3], [2.0, 1.0]), rel=1e-4)


def test_kl_loss_no_kept_token_is_zero_with_gradient():
    logits = torch.randn(2, 3, requires_grad=True)
    loss = bond.kl_loss(torch.full((2, 3), 1 / 3), logits, torch.tensor([False, False]))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad == 0)


def test_kl_loss_gradient_moves_student_towards_soft_label():
    soft = torch.tensor([[0.9, 0.1]])
    logits = torch.zeros(1, 2, requires_grad=True)
    bond.kl_loss(soft, logits, torch.tensor([True])).backward()
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]  # descent raises class 0


def test_weighted_cross_entropy_o_weight():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [9.0, 9.0, 9.0]])
    labels = torch.tensor([0, 1, 0, -100])
    ones = torch.ones(4)
    full = bond.weighted_cross_entropy(logits, labels, ones)
    ref = torch.nn.functional.cross_entropy(logits[:3], labels[:3])
    assert full.item() == pytest.approx(ref.item(), rel=1e-6)
    # O weight 0: only the entity token counts
    w = torch.tensor([0.0, 1.0, 0.0, 1.0])
    only_entity = bond.weighted_cross_entropy(logits, labels, w)
    assert only_entity.item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits[1:2], labels[1:2]).item(), rel=1e-6)
    # O weight 0.5: weighted mean
    ce = torch.nn.functional.cross_entropy(logits[:3], labels[:3], reduction="none")
    half = bond.weighted_cross_entropy(logits, labels, torch.tensor([0.5, 1.0, 0.5, 1.0]))
    assert half.item() == pytest.approx(((0.5 * ce[0] + ce[1] + 0.5 * ce[2]) / 2).item(), rel=1e-6)


def test_stage_schedule():
    assert [bond.stage_at(s, 3) for s in range(1, 7)] == [1, 1, 1, 2, 2, 2]
    updates = [s for s in range(1, 12) if bond.is_teacher_update(s, 3, 2)]
    assert updates == [4, 6, 8, 10]  # teacher initialised at the first stage-II step
    assert [s for s in range(1, 6) if bond.is_teacher_update(s, 0, 5)] == [1]


def test_scaled_schedule_defaults():
    full = bond.scaled_schedule(14041, 16)
    assert (full.t_early, full.t_update, full.threshold) == (900, 456, 0.9)
    big = bond.scaled_schedule(100000, 16)
    assert (big.t_early, big.t_update) == (900, 456)
    tenth = bond.scaled_schedule(1404, 16)
    assert (tenth.t_early, tenth.t_update) == (100, 46)
    small = bond.scaled_schedule(140, 16)
    assert (small.t_early, small.t_update) == (100, 25)
    explicit = bond.scaled_schedule(140, 16, t_early=7, t_update=3, threshold=0.5)
    assert (explicit.t_early, explicit.t_update, explicit.threshold) == (7, 3, 0.5)
