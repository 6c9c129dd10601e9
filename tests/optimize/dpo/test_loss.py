"""Tests for rlhfkit.optimize.dpo.loss: DPO and IPO against hand-computed numbers."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from rlhfkit.optimize.dpo.loss import PreferenceTerms, dpo_loss, ipo_loss
from rlhfkit.reward.losses import bradley_terry_loss

LossFn = Callable[..., PreferenceTerms]

# The hand pair: beta = 0.5, log pi(c) = -3, log ref(c) = -4, log pi(r) = -5, log ref(r) = -4.5.
#   chosen log-ratio   = -3 - (-4)   =  1      chosen_reward   = 0.5 * 1    =  0.5
#   rejected log-ratio = -5 - (-4.5) = -0.5    rejected_reward = 0.5 * -0.5 = -0.25
#   h_raw = 1 - (-0.5) = 1.5,  h = beta * h_raw = 0.75
BETA = 0.5
PAIR = (-3.0, -5.0, -4.0, -4.5)  # policy_chosen, policy_rejected, ref_chosen, ref_rejected
H = 0.75
# DPO: -log sigmoid(h) = log(1 + e^-h),  -log sigmoid(-h) = log(1 + e^h)
NLL_C = math.log(1.0 + math.exp(-0.75))  # 0.38687...
NLL_R = math.log(1.0 + math.exp(0.75))  # 1.13687...
# IPO, target = (mu_c - mu_r) / (2 beta) = mu_c - mu_r at beta = 0.5:
#   (1, 0): (1.5 - 1)^2 = 0.25;  (0.5, 0.5): 1.5^2 = 2.25;  (0.8, 0.2): (1.5 - 0.6)^2 = 0.81;  (0, 1): 2.5^2 = 6.25


def _t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def _mu(*rows: tuple[float, float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def _inputs(
    rows: list[tuple[float, float, float, float]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Leaf tensors (policy_chosen, policy_rejected, ref_chosen, ref_rejected), each (B,); policy ones need grad."""
    pc, pr, rc, rr = (torch.tensor(col, dtype=torch.float64) for col in zip(*rows, strict=True))
    return pc.requires_grad_(True), pr.requires_grad_(True), rc, rr


def test_hand_numbers_are_what_we_think() -> None:
    assert math.isclose(NLL_C, 0.3868710061149, rel_tol=0, abs_tol=1e-12)
    assert math.isclose(NLL_R, 1.1368710061149, rel_tol=0, abs_tol=1e-12)
    assert math.isclose(NLL_R - NLL_C, H, rel_tol=0, abs_tol=1e-14)  # log(1 + e^h) - log(1 + e^-h) = h


@pytest.mark.parametrize(
    ("mu", "expected"),
    [
        ((1.0, 0.0), NLL_C),  # hard: standard DPO
        ((0.0, 1.0), NLL_R),  # hard, the other way
        ((0.5, 0.5), 0.5 * NLL_C + 0.5 * NLL_R),  # tie
        ((0.8, 0.2), 0.8 * NLL_C + 0.2 * NLL_R),  # graded
    ],
)
def test_dpo_single_pair(mu: tuple[float, float], expected: float) -> None:
    terms = dpo_loss(*_inputs([PAIR]), _mu(mu), beta=BETA)
    assert terms.loss.item() == pytest.approx(expected, abs=1e-12)
    assert terms.chosen_reward.tolist() == pytest.approx([0.5], abs=1e-15)
    assert terms.rejected_reward.tolist() == pytest.approx([-0.25], abs=1e-15)
    assert terms.margin.item() == pytest.approx(H, abs=1e-15)
    assert terms.n_usable == 1
    assert not terms.chosen_reward.requires_grad and not terms.rejected_reward.requires_grad


@pytest.mark.parametrize(
    ("mu", "expected"),
    [
        ((1.0, 0.0), (1.5 - 1.0) ** 2),
        ((0.0, 1.0), (1.5 + 1.0) ** 2),
        ((0.5, 0.5), 1.5**2),
        ((0.8, 0.2), (1.5 - 0.6) ** 2),
    ],
)
def test_ipo_single_pair(mu: tuple[float, float], expected: float) -> None:
    terms = ipo_loss(*_inputs([PAIR]), _mu(mu), beta=BETA)
    assert terms.loss.item() == pytest.approx(expected, abs=1e-12)
    assert terms.margin.item() == pytest.approx(H, abs=1e-15)  # implicit rewards are scaled by beta in both


def test_ipo_hard_target_is_one_over_two_beta() -> None:
    # beta = 0.1: target 1 / 0.2 = 5; at h_raw = 5 the loss and its gradient vanish.
    pc, pr, rc, rr = _inputs([(-1.0, -6.0, -1.0, -1.0)])  # h_raw = 0 - (-5) = 5
    terms = ipo_loss(pc, pr, rc, rr, _mu((1.0, 0.0)), beta=0.1)
    terms.loss.backward()
    assert terms.loss.item() == pytest.approx(0.0, abs=1e-24)
    assert pc.grad is not None and pc.grad.abs().item() < 1e-12


@pytest.mark.parametrize(
    ("loss_fn", "per_pair"),
    [
        (dpo_loss, [NLL_C, 0.5 * (NLL_C + NLL_R), 0.8 * NLL_C + 0.2 * NLL_R]),
        (ipo_loss, [0.25, 2.25, 0.81]),
    ],
)
def test_batch_mean_skips_incomparable_rows_with_exactly_zero_gradient(loss_fn: LossFn, per_pair: list[float]) -> None:
    # Row 3 is incomparable; its log-probs are -inf and nan, which must not leak into loss or gradient.
    pc, pr, rc, rr = _inputs([PAIR, PAIR, (float("-inf"), float("nan"), -1.0, -1.0), PAIR])
    mu = _mu((1.0, 0.0), (0.5, 0.5), (0.0, 0.0), (0.8, 0.2))
    usable = torch.tensor([True, True, False, True])
    terms = loss_fn(pc, pr, rc, rr, mu, usable, beta=BETA)
    assert terms.loss.item() == pytest.approx(sum(per_pair) / 3, abs=1e-12)  # mean over the 3 usable rows
    assert terms.n_usable == 3
    assert terms.margin.item() == pytest.approx(H, abs=1e-15)
    terms.loss.backward()
    assert pc.grad is not None and pr.grad is not None
    assert torch.isfinite(pc.grad).all() and torch.isfinite(pr.grad).all()
    assert pc.grad[2].item() == 0.0 and pr.grad[2].item() == 0.0


@pytest.mark.parametrize("loss_fn", [dpo_loss, ipo_loss])
def test_incomparable_row_values_do_not_change_the_loss(loss_fn: LossFn) -> None:
    mu = _mu((1.0, 0.0), (0.3, 0.9))  # row 2's label is junk too: ignored
    usable = torch.tensor([True, False])
    a = loss_fn(*_inputs([PAIR, (-1.0, -2.0, -3.0, -4.0)]), mu, usable, beta=BETA)
    b = loss_fn(*_inputs([PAIR, (-50.0, 7.0, 0.0, -9.0)]), mu, usable, beta=BETA)
    only = loss_fn(*_inputs([PAIR]), mu[:1], beta=BETA)
    assert a.loss.item() == b.loss.item() == only.loss.item()


@pytest.mark.parametrize("loss_fn", [dpo_loss, ipo_loss])
def test_no_usable_rows_gives_zero_loss(loss_fn: LossFn) -> None:
    pc, pr, rc, rr = _inputs([PAIR, PAIR])
    terms = loss_fn(pc, pr, rc, rr, _mu((1.0, 0.0), (0.0, 1.0)), torch.tensor([False, False]), beta=BETA)
    assert terms.loss.item() == 0.0 and terms.n_usable == 0
    assert terms.reward_accuracy.item() == 0.0 and terms.margin.item() == 0.0
    terms.loss.backward()
    assert pc.grad is not None and torch.equal(pc.grad, torch.zeros(2, dtype=torch.float64))


def test_dpo_hard_label_gradient_raises_chosen_and_lowers_rejected_by_hand() -> None:
    # dL/dh = -sigmoid(-h);  dL/dpi_c = beta * dL/dh,  dL/dpi_r = -beta * dL/dh
    pc, pr, rc, rr = _inputs([PAIR])
    dpo_loss(pc, pr, rc, rr, _mu((1.0, 0.0)), beta=BETA).loss.backward()
    expected = -BETA / (1.0 + math.exp(H))  # -0.5 * sigmoid(-0.75) = -0.16102...
    assert pc.grad is not None and pr.grad is not None
    assert pc.grad.item() == pytest.approx(expected, abs=1e-14)
    assert pr.grad.item() == pytest.approx(-expected, abs=1e-14)
    assert pc.grad.item() < 0 < pr.grad.item()  # descent raises log pi(c) and lowers log pi(r)


def test_ipo_hard_label_gradient_raises_chosen_below_target_and_pulls_back_above() -> None:
    # Below the target (h_raw = 0 < 1) IPO pushes chosen up and rejected down, like DPO.
    pc, pr, rc, rr = _inputs([(-4.0, -4.0, -4.0, -4.0)])
    ipo_loss(pc, pr, rc, rr, _mu((1.0, 0.0)), beta=BETA).loss.backward()
    assert pc.grad is not None and pr.grad is not None
    assert pc.grad.item() == pytest.approx(2 * (0.0 - 1.0), abs=1e-14)  # dL/dpi_c = 2 (h_raw - target)
    assert pr.grad.item() == pytest.approx(2.0, abs=1e-14)
    # Above it (h_raw = 1.5 > 1) it pulls back: the margin is bounded, unlike DPO's.
    pc, pr, rc, rr = _inputs([PAIR])
    ipo_loss(pc, pr, rc, rr, _mu((1.0, 0.0)), beta=BETA).loss.backward()
    assert pc.grad is not None
    assert pc.grad.item() == pytest.approx(2 * (1.5 - 1.0), abs=1e-14)


@pytest.mark.parametrize("loss_fn", [dpo_loss, ipo_loss])
def test_tie_at_equal_log_ratios_pulls_neither_side(loss_fn: LossFn) -> None:
    # h = 0: different log-probs, but equal log-ratios (-1 - (-2) = -3 - (-4) = 1).
    pc, pr, rc, rr = _inputs([(-1.0, -3.0, -2.0, -4.0)])
    loss_fn(pc, pr, rc, rr, _mu((0.5, 0.5)), beta=BETA).loss.backward()
    assert pc.grad is not None and pr.grad is not None
    assert pc.grad.item() == 0.0 and pr.grad.item() == 0.0  # exactly


@pytest.mark.parametrize("loss_fn", [dpo_loss, ipo_loss])
@pytest.mark.parametrize("h_raw_sign", [1.0, -1.0])
def test_tie_gradient_step_moves_h_towards_zero(loss_fn: LossFn, h_raw_sign: float) -> None:
    rows = [PAIR if h_raw_sign > 0 else (PAIR[1], PAIR[0], PAIR[3], PAIR[2])]  # h_raw = +-1.5
    pc, pr, rc, rr = _inputs(rows)
    loss_fn(pc, pr, rc, rr, _mu((0.5, 0.5)), beta=BETA).loss.backward()
    assert pc.grad is not None and pr.grad is not None
    lr = 0.1
    with torch.no_grad():
        h_before = ((pc - rc) - (pr - rr)).item()
        h_after = ((pc - lr * pc.grad - rc) - (pr - lr * pr.grad - rr)).item()
    assert h_before == pytest.approx(1.5 * h_raw_sign, abs=1e-15)
    assert 0.0 < h_after * h_raw_sign < abs(h_before)  # closer to 0, same side: no overshoot


def test_dpo_tie_gradient_by_hand() -> None:
    # dL/dh = -(0.5 sigmoid(-h) - 0.5 sigmoid(h)) = 0.5 (sigmoid(h) - sigmoid(-h)); dL/dpi_c = beta * dL/dh
    pc, pr, rc, rr = _inputs([PAIR])
    dpo_loss(pc, pr, rc, rr, _mu((0.5, 0.5)), beta=BETA).loss.backward()
    sig = 1.0 / (1.0 + math.exp(-H))
    assert pc.grad is not None
    assert pc.grad.item() == pytest.approx(BETA * 0.5 * (sig - (1.0 - sig)), abs=1e-14)


def test_dpo_graded_label_minimum_is_at_logit_of_mu() -> None:
    # sigmoid(h) = 0.8 at h = log(0.8 / 0.2) = log 4: the gradient vanishes there.
    h_raw = math.log(4.0) / BETA
    pc, pr, rc, rr = _inputs([(-1.0, -1.0 - h_raw, -1.0, -1.0)])
    dpo_loss(pc, pr, rc, rr, _mu((0.8, 0.2)), beta=BETA).loss.backward()
    assert pc.grad is not None and abs(pc.grad.item()) < 1e-14


def test_dpo_is_bradley_terry_on_implicit_rewards() -> None:
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(6, generator=g, dtype=torch.float64) * 3 for _ in range(4))
    mu_c = torch.tensor([1.0, 0.0, 0.5, 0.8, 0.3, 1.0], dtype=torch.float64)
    mu = torch.stack([mu_c, 1 - mu_c], dim=1)
    usable = torch.tensor([True, True, True, True, True, False])
    dpo = dpo_loss(pc, pr, rc, rr, mu, usable, beta=0.2)
    bt = bradley_terry_loss(dpo.chosen_reward, dpo.rejected_reward, mu, usable)
    assert dpo.loss.item() == pytest.approx(bt.loss.item(), abs=1e-12)
    assert dpo.reward_accuracy.item() == pytest.approx(bt.accuracy.item(), abs=1e-15)


@pytest.mark.parametrize("loss_fn", [dpo_loss, ipo_loss])
def test_reward_accuracy_and_margin_by_hand(loss_fn: LossFn) -> None:
    # beta = 0.5; reward difference = 0.5 * h_raw per row.
    rows = [
        (-1.0, -3.0, -1.0, -1.0),  # h_raw =  2, mu (1, 0):     correct
        (-1.0, -3.0, -1.0, -1.0),  # h_raw =  2, mu (0, 1):     wrong
        (-3.0, -1.0, -1.0, -1.0),  # h_raw = -2, mu (0.3, 0.7): correct
        (-1.0, -5.0, -1.0, -1.0),  # h_raw =  4, tie:           not decisive
        (-1.0, -9.0, -1.0, -1.0),  # incomparable:              not counted at all
        (-2.0, -2.0, -1.0, -1.0),  # h_raw =  0, mu (1, 0):     wrong (a predicted tie)
    ]
    mu = _mu((1.0, 0.0), (0.0, 1.0), (0.3, 0.7), (0.5, 0.5), (1.0, 0.0), (1.0, 0.0))
    usable = torch.tensor([True, True, True, True, False, True])
    terms = loss_fn(*_inputs(rows), mu, usable, beta=BETA)
    assert terms.reward_accuracy.item() == pytest.approx(2 / 4, abs=1e-15)
    assert terms.margin.item() == pytest.approx(0.5 * (2 + 2 - 2 + 4 + 0) / 5, abs=1e-15)
    assert terms.chosen_reward.shape == terms.rejected_reward.shape == (6,)


@pytest.mark.parametrize("loss_fn", [dpo_loss, ipo_loss])
def test_bad_inputs_raise(loss_fn: LossFn) -> None:
    pc, pr, rc, rr = _inputs([PAIR, PAIR])
    mu = _mu((1.0, 0.0), (1.0, 0.0))
    with pytest.raises(ValueError, match="beta must be > 0"):
        loss_fn(pc, pr, rc, rr, mu, beta=0.0)
    with pytest.raises(ValueError, match="mu must have shape"):
        loss_fn(pc, pr, rc, rr, mu[:, :1], beta=BETA)
    with pytest.raises(ValueError, match="shape \\(B,\\)"):
        loss_fn(pc, pr[:1], rc, rr, mu, beta=BETA)
    with pytest.raises(ValueError, match="usable must be a bool"):
        loss_fn(pc, pr, rc, rr, mu, torch.tensor([1, 0]), beta=BETA)
