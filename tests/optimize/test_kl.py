"""Tests for rlhfkit.optimize.kl: Monte Carlo KL estimators against closed forms, and the controllers."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from rlhfkit.optimize.kl import AdaptiveKL, FixedKL, kl_estimate

N_DRAWS = 400_000  # relative standard error of the k1/k3 means below is <= 0.45%: the 2% tolerance is >= 4 sigma


def _gaussian_kl(m1: float, s1: float, m2: float, s2: float) -> float:
    """KL(N(m1, s1^2) || N(m2, s2^2)) = log(s2/s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2."""
    return math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5


def _gaussian_logps(m1: float, s1: float, m2: float, s2: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = m1 + s1 * torch.randn(N_DRAWS, generator=g, dtype=torch.float64)  # a ~ pi_new
    return Normal(m1, s1).log_prob(x), Normal(m2, s2).log_prob(x)


def test_gaussian_kl_closed_form_by_hand() -> None:
    # N(0, 1) vs N(1, 1): (0 + 1) / 2 = 0.5;  N(0.5, 1) vs N(-0.5, 0.9): log 0.9 + 2 / 1.62 - 0.5
    assert _gaussian_kl(0.0, 1.0, 1.0, 1.0) == pytest.approx(0.5, abs=1e-15)
    assert _gaussian_kl(0.5, 1.0, -0.5, 0.9) == pytest.approx(math.log(0.9) + 2.0 / 1.62 - 0.5, abs=1e-15)


@pytest.mark.parametrize("estimator", ["k1", "k3"])
@pytest.mark.parametrize(("m1", "s1", "m2", "s2"), [(0.0, 1.0, 1.0, 1.0), (0.5, 1.0, -0.5, 0.9)])
def test_unbiased_estimators_match_gaussian_kl(estimator: str, m1: float, s1: float, m2: float, s2: float) -> None:
    logp_new, logp_base = _gaussian_logps(m1, s1, m2, s2, seed=0)
    est = kl_estimate(logp_new, logp_base, estimator)  # type: ignore[arg-type]
    assert est.shape == logp_new.shape
    exact = _gaussian_kl(m1, s1, m2, s2)
    assert est.mean().item() == pytest.approx(exact, rel=0.02)


def test_k2_mean_for_shifted_gaussians() -> None:
    # pi_new = N(0, 1), pi_base = N(m, 1): log_ratio = log pi_base - log pi_new = m x - m^2 / 2, so
    # E[k2] = E[(m x - m^2/2)^2] / 2 = (m^2 + m^4 / 4) / 2 = KL + m^4 / 8 (biased upwards).
    m = 1.0
    logp_new, logp_base = _gaussian_logps(0.0, 1.0, m, 1.0, seed=1)
    est = kl_estimate(logp_new, logp_base, "k2").mean().item()
    assert est == pytest.approx(m**2 / 2 + m**4 / 8, rel=0.02)
    assert est > _gaussian_kl(0.0, 1.0, m, 1.0) * 1.1  # visibly biased: not the KL


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_unbiased_estimators_match_categorical_kl(estimator: str) -> None:
    p_new = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    p_base = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    # KL = 0.5 log(0.5/0.2) + 0.3 log(1) + 0.2 log(0.2/0.5)
    exact = 0.5 * math.log(2.5) + 0.2 * math.log(0.4)
    assert exact == pytest.approx(0.27488721956224654, abs=1e-12)
    g = torch.Generator().manual_seed(0)
    a = torch.multinomial(p_new, N_DRAWS, replacement=True, generator=g)
    est = kl_estimate(p_new.log()[a], p_base.log()[a], estimator)  # type: ignore[arg-type]
    assert est.mean().item() == pytest.approx(exact, rel=0.02)


def test_estimators_by_hand() -> None:
    logp_new = torch.tensor([math.log(0.5), math.log(0.2), -1.0], dtype=torch.float64)
    logp_base = torch.tensor([math.log(0.25), math.log(0.4), -1.0], dtype=torch.float64)
    # log_ratio = log pi_base - log pi_new = log 0.5, log 2, 0
    lr = [math.log(0.5), math.log(2.0), 0.0]
    k1 = kl_estimate(logp_new, logp_base, "k1").tolist()
    k2 = kl_estimate(logp_new, logp_base, "k2").tolist()
    k3 = kl_estimate(logp_new, logp_base, "k3").tolist()
    assert k1 == pytest.approx([-x for x in lr], abs=1e-12)
    assert k2 == pytest.approx([0.5 * x * x for x in lr], abs=1e-12)
    assert k3 == pytest.approx([(0.5 - 1) - lr[0], (2.0 - 1) - lr[1], 0.0], abs=1e-12)
    assert k1[0] > 0 > k1[1]  # k1 can be negative per sample


def test_default_estimator_is_k1() -> None:
    a, b = torch.tensor([-0.1, -2.0]), torch.tensor([-0.5, -1.0])
    assert torch.equal(kl_estimate(a, b), kl_estimate(a, b, "k1"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_k3_is_never_negative(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    scales = [1e-12, 1e-8, 1e-4, 1e-2, 1.0, 10.0, 50.0]
    log_ratio = torch.cat([s * torch.randn(20_000, generator=g, dtype=dtype) for s in scales])
    logp_new = torch.randn(log_ratio.shape, generator=g, dtype=dtype)
    k3 = kl_estimate(logp_new, logp_new + log_ratio, "k3")
    assert bool((k3 >= 0).all())
    assert bool((kl_estimate(logp_new, logp_new + log_ratio, "k2") >= 0).all())
    assert bool((kl_estimate(logp_new, logp_new + log_ratio, "k1") < 0).any())


def test_identical_policies_give_zero() -> None:
    logp = torch.tensor([-0.3, -1.7, -4.0])
    for est in ("k1", "k2", "k3"):
        assert kl_estimate(logp, logp.clone(), est).abs().max().item() == 0.0  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["k4", "K1", "", "kl"])
def test_unknown_estimator_raises(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_estimate(torch.zeros(2), torch.zeros(2), bad)  # type: ignore[arg-type]


# -- controllers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kl", "n_steps", "expected_beta"),
    [
        (0.11, 10_000, 1.0 * (1 + 0.1 * 1.0)),  # e = 0.11/0.1 - 1 = 0.1 -> 1.1
        (0.09, 10_000, 1.0 * (1 - 0.1 * 1.0)),  # e = -0.1 -> 0.9
        (0.3, 5_000, 1.0 * (1 + 0.2 * 0.5)),  # e = 2 clipped to 0.2, n/h = 0.5 -> 1.1
        (10.0, 10_000, 1.2),  # clipped: at most +20% per horizon
        (0.0, 2_000, 1.0 * (1 - 0.2 * 0.2)),  # e = -1 clipped to -0.2, n/h = 0.2 -> 0.96
        (0.0, 10_000, 0.8),  # at most -20% per horizon
        (0.1, 10_000, 1.0),  # on target: unchanged
        (0.5, 0, 1.0),  # no steps: unchanged
    ],
)
def test_adaptive_kl_step(kl: float, n_steps: int, expected_beta: float) -> None:
    ctl = AdaptiveKL(beta=1.0, target=0.1, horizon=10_000.0)
    ctl.update(kl, n_steps)
    assert ctl.beta == pytest.approx(expected_beta, abs=1e-12)


def test_adaptive_kl_direction_and_compounding() -> None:
    ctl = AdaptiveKL(beta=0.5, target=0.02, horizon=1_000.0)
    ctl.update(0.04, 500)  # e = 1 -> 0.2; beta * 1.1
    assert ctl.beta == pytest.approx(0.55, abs=1e-12)
    ctl.update(0.04, 500)
    assert ctl.beta == pytest.approx(0.605, abs=1e-12)
    ctl.update(0.015, 1_000)  # e = -0.25 -> -0.2; beta * 0.8
    assert ctl.beta == pytest.approx(0.484, abs=1e-12)
    ctl.update(0.019, 1_000)  # e = -0.05; beta * 0.95
    assert ctl.beta == pytest.approx(0.4598, abs=1e-12)


def test_adaptive_kl_default_horizon() -> None:
    ctl = AdaptiveKL(beta=2.0, target=1.0)
    ctl.update(1.1, 1_000)  # e = 0.1, n/h = 0.1 -> 2 * 1.01
    assert ctl.beta == pytest.approx(2.02, abs=1e-12)


def test_fixed_kl_never_changes() -> None:
    ctl = FixedKL(beta=0.3)
    for kl, n in [(100.0, 10_000), (0.0, 10_000), (-1.0, 5)]:
        ctl.update(kl, n)
        assert ctl.beta == 0.3
