"""Tests for rlhfkit.optimize.group.loss: group baselines and the token-level surrogate against hand numbers."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from rlhfkit.optimize.group.loss import grpo_advantages, policy_gradient_loss, rloo_advantages
from rlhfkit.optimize.kl import KLEstimator, kl_estimate

# Two prompts, three completions each.
REWARDS = ((1.0, 2.0, 6.0), (0.0, 0.0, 3.0))


def _t(*rows: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_rloo_by_hand() -> None:
    # Row 1: 1 - (2 + 6)/2 = -3,   2 - (1 + 6)/2 = -1.5,  6 - (1 + 2)/2 = 4.5
    # Row 2: 0 - (0 + 3)/2 = -1.5, 0 - (0 + 3)/2 = -1.5,  3 - (0 + 0)/2 = 3
    adv = rloo_advantages(_t(*REWARDS))
    torch.testing.assert_close(adv, _t((-3.0, -1.5, 4.5), (-1.5, -1.5, 3.0)), rtol=0, atol=1e-14)


def test_rloo_is_g_over_g_minus_one_times_centred() -> None:
    rewards = _t(*REWARDS)
    assert torch.allclose(rloo_advantages(rewards), 1.5 * grpo_advantages(rewards, scale=False), atol=1e-14)


def test_grpo_by_hand() -> None:
    # Row 1: mean 3, deviations (-2, -1, 3), population variance (4 + 1 + 9)/3 = 14/3
    # Row 2: mean 1, deviations (-1, -1, 2), population variance (1 + 1 + 4)/3 = 2
    eps = 1e-4
    s1 = math.sqrt(14.0 / 3.0) + eps
    s2 = math.sqrt(2.0) + eps
    adv = grpo_advantages(_t(*REWARDS), eps=eps)
    torch.testing.assert_close(adv, _t((-2 / s1, -1 / s1, 3 / s1), (-1 / s2, -1 / s2, 2 / s2)), rtol=0, atol=1e-14)
    centred = grpo_advantages(_t(*REWARDS), scale=False)
    torch.testing.assert_close(centred, _t((-2.0, -1.0, 3.0), (-1.0, -1.0, 2.0)), rtol=0, atol=1e-14)


def test_grpo_equal_rewards_give_zero_not_nan() -> None:
    adv = grpo_advantages(_t((0.7, 0.7, 0.7, 0.7)))
    assert torch.equal(adv, torch.zeros(1, 4, dtype=torch.float64))


@pytest.mark.parametrize("advantages", [rloo_advantages, grpo_advantages])
def test_group_baselines_need_groups_of_two(advantages: Callable[[torch.Tensor], torch.Tensor]) -> None:
    with pytest.raises(ValueError, match="G >= 2"):
        advantages(_t((1.0,), (2.0,)))
    with pytest.raises(ValueError, match="shape \\(P, G\\)"):
        advantages(torch.tensor([1.0, 2.0]))


# The surrogate. Two completions of length <= 3; the second has one real token.
MASK = torch.tensor([[True, True, True], [True, False, False]])
ADV = torch.tensor([2.0, -1.0], dtype=torch.float64)


def test_on_policy_loss_is_minus_token_mean_advantage_by_hand() -> None:
    # old_logp == logp: rho = 1, pg_{b,t} = -A_b. Real tokens: three with A = 2, one with A = -1:
    #   loss = -(2 + 2 + 2 - 1) / 4 = -5/4   (a per-sequence mean first would give -(2 - 1)/2 = -1/2)
    logp = _t((-1.0, -2.0, -0.5), (-0.3, -4.0, -5.0)).requires_grad_(True)
    terms = policy_gradient_loss(logp, logp.detach().clone(), None, ADV, MASK, clip_coef=0.2, beta=0.0)
    assert terms.loss.item() == pytest.approx(-5.0 / 4.0, abs=1e-14)
    assert terms.pg_loss.item() == pytest.approx(-5.0 / 4.0, abs=1e-14)
    assert terms.kl.item() == 0.0 and terms.clip_frac.item() == 0.0
    terms.loss.backward()
    # d pg / d logp = -A * rho / n_tokens on real tokens, 0 on padding.
    assert logp.grad is not None
    torch.testing.assert_close(logp.grad, _t((-0.5, -0.5, -0.5), (0.25, 0.0, 0.0)), rtol=0, atol=1e-14)


def test_masked_tokens_get_exactly_zero_gradient_whatever_their_values() -> None:
    inf, nan = float("inf"), float("nan")
    logp = _t((-1.0, -2.0, -0.5), (-0.3, 800.0, nan)).requires_grad_(True)
    old = _t((-1.1, -1.9, -0.5), (-0.2, -800.0, inf))
    ref = _t((-1.3, -2.2, -0.4), (-0.6, nan, -inf))
    terms = policy_gradient_loss(logp, old, ref, ADV, MASK, clip_coef=0.2, beta=0.1)
    assert torch.isfinite(terms.loss)
    terms.loss.backward()
    assert logp.grad is not None
    assert torch.isfinite(logp.grad).all()
    assert torch.equal(logp.grad[~MASK], torch.zeros(2, dtype=torch.float64))
    assert (logp.grad[MASK] != 0).all()
    # And padding values do not move the loss.
    clean = policy_gradient_loss(
        torch.where(MASK, logp.detach(), 0.0),
        torch.where(MASK, old, 0.0),
        torch.where(MASK, ref, 0.0),
        ADV,
        MASK,
        beta=0.1,
    )
    assert terms.loss.item() == pytest.approx(clean.loss.item(), abs=1e-15)


def test_clipping_by_hand() -> None:
    # clip_coef = 0.2, one token per completion.
    #   rho = 1.5, A = +1: -min(1.5, 1.2)   = -1.2, clipped (zero gradient)
    #   rho = 1.5, A = -1: -min(-1.5, -1.2) =  1.5, unclipped, d/dlogp = -A rho = 1.5
    #   rho = 0.5, A = -1: -min(-0.5, -0.8) =  0.8, clipped (zero gradient)
    old = _t((-1.0,), (-1.0,), (-1.0,))
    logp = (old + torch.log(_t((1.5,), (1.5,), (0.5,)))).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    mask = torch.ones(3, 1, dtype=torch.bool)
    terms = policy_gradient_loss(logp, old, None, adv, mask, clip_coef=0.2, beta=0.0)
    assert terms.pg_loss.item() == pytest.approx((-1.2 + 1.5 + 0.8) / 3, abs=1e-14)
    assert terms.clip_frac.item() == pytest.approx(2 / 3, abs=1e-15)
    terms.loss.backward()
    assert logp.grad is not None
    assert logp.grad[:, 0].tolist() == pytest.approx([0.0, 1.5 / 3, 0.0], abs=1e-14)


def test_k3_term_by_hand() -> None:
    # ref - logp = (-0.5, 1.0): k3 = e^(ref - logp) - (ref - logp) - 1
    #   = (e^-0.5 + 0.5 - 1, e^1 - 1 - 1) = (0.10653..., 0.71828...)
    logp = _t((-1.0, -2.0)).requires_grad_(True)
    ref = _t((-1.5, -1.0))
    k3 = [math.exp(-0.5) + 0.5 - 1.0, math.exp(1.0) - 1.0 - 1.0]
    beta = 0.1
    zero_adv = torch.zeros(1, dtype=torch.float64)
    terms = policy_gradient_loss(logp, logp.detach(), ref, zero_adv, torch.ones(1, 2, dtype=torch.bool), beta=beta)
    assert terms.kl.item() == pytest.approx(sum(k3) / 2, abs=1e-14)
    assert terms.pg_loss.item() == 0.0
    assert terms.loss.item() == pytest.approx(beta * sum(k3) / 2, abs=1e-14)
    terms.loss.backward()
    # d k3 / d logp = 1 - e^(ref - logp), meaned over 2 tokens and times beta.
    assert logp.grad is not None
    assert logp.grad[0].tolist() == pytest.approx(
        [beta * (1 - math.exp(-0.5)) / 2, beta * (1 - math.exp(1.0)) / 2], abs=1e-14
    )


def test_kl_gradient_pulls_logp_towards_ref() -> None:
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(4, 5, generator=g, dtype=torch.float64) - 2.0
    ref = torch.randn(4, 5, generator=g, dtype=torch.float64) - 2.0
    logp.requires_grad_(True)
    mask = torch.ones(4, 5, dtype=torch.bool)
    terms = policy_gradient_loss(logp, logp.detach(), ref, torch.zeros(4, dtype=torch.float64), mask, beta=1.0)
    terms.loss.backward()
    assert logp.grad is not None
    gap = logp.detach() - ref
    assert (torch.sign(logp.grad) == torch.sign(gap)).all()  # descent lowers logp above ref, raises it below
    stepped = logp.detach() - 0.5 * logp.grad
    assert ((stepped - ref).abs() < gap.abs()).all()


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl_is_the_masked_mean_of_the_estimator(estimator: KLEstimator) -> None:
    g = torch.Generator().manual_seed(1)
    logp = torch.randn(2, 3, generator=g, dtype=torch.float64)
    ref = torch.randn(2, 3, generator=g, dtype=torch.float64)
    terms = policy_gradient_loss(logp, logp, ref, ADV, MASK, beta=0.3, kl_estimator=estimator)
    expected = kl_estimate(logp, ref, estimator)[MASK].mean()
    assert terms.kl.item() == pytest.approx(expected.item(), abs=1e-14)
    assert terms.loss.item() == pytest.approx(terms.pg_loss.item() + 0.3 * expected.item(), abs=1e-14)


def test_bad_inputs_raise() -> None:
    logp = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="needs ref_logp"):
        policy_gradient_loss(logp, logp, None, ADV, MASK, beta=0.1)
    with pytest.raises(ValueError, match="mask must have the shape"):
        policy_gradient_loss(logp, logp, logp, ADV, MASK[:, :2])
    with pytest.raises(ValueError, match="mask must be a bool"):
        policy_gradient_loss(logp, logp, logp, ADV, MASK.float())
    with pytest.raises(ValueError, match="advantages must have shape"):
        policy_gradient_loss(logp, logp, logp, ADV[:1], MASK)
    with pytest.raises(ValueError, match="clip_coef"):
        policy_gradient_loss(logp, logp, logp, ADV, MASK, clip_coef=0.0)


def test_grpo_learns_a_bandit() -> None:
    """End to end: a categorical policy over 4 one-token answers learns to pick the best one."""
    torch.manual_seed(0)
    reward_of = torch.tensor([0.0, 0.2, 1.0, 0.1])
    logits = torch.zeros(4, requires_grad=True)
    ref_logp_all = torch.log_softmax(torch.zeros(4), dim=0)
    opt = torch.optim.Adam([logits], lr=0.05)
    start = float(torch.softmax(logits.detach(), 0) @ reward_of)
    for _ in range(60):
        with torch.no_grad():
            old_logp_all = torch.log_softmax(logits, 0)
            answers = torch.multinomial(old_logp_all.exp(), 4 * 8, replacement=True)  # P = 4 prompts, G = 8
            adv = grpo_advantages(reward_of[answers].view(4, 8)).flatten()
        for _ in range(2):  # two epochs on the batch: the second is off-policy and may clip
            logp = torch.log_softmax(logits, 0)[answers][:, None]
            terms = policy_gradient_loss(
                logp,
                old_logp_all[answers][:, None],
                ref_logp_all[answers][:, None],
                adv,
                torch.ones(32, 1, dtype=torch.bool),
                clip_coef=0.2,
                beta=0.01,
            )
            opt.zero_grad()
            terms.loss.backward()
            opt.step()
    end = float(torch.softmax(logits.detach(), 0) @ reward_of)
    assert start == pytest.approx(0.325)
    assert end > 0.9
