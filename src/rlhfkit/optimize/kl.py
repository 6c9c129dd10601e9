"""KL estimators and controllers for the penalty beta * KL(pi_new || pi_base).

The estimators take log-probabilities of actions **sampled from pi_new** under
both policies, with ``log_ratio = log pi_base(a) - log pi_new(a)`` (Schulman,
"Approximating KL divergence", 2020):

- ``k1 = -log_ratio``: unbiased, high variance, can be negative per sample;
- ``k2 = log_ratio^2 / 2``: biased, low variance, always >= 0;
- ``k3 = (exp(log_ratio) - 1) - log_ratio``: unbiased and always >= 0.

All have expectation close to (k1, k3: exactly) KL(pi_new || pi_base) under a ~ pi_new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from rlhfkit.checks import positive, require

KLEstimator = Literal["k1", "k2", "k3"]


@dataclass(frozen=True)
class KLConfig:
    """The penalty beta * KL(pi_new || pi_base) to the base policy, the same in every domain.

    An *action* is what the policy emits at one step: an env step's action (control) or a token (text).
    """

    beta: float = 0.0
    """Initial (or fixed) penalty weight beta, per nat of KL per action."""
    estimator: KLEstimator = "k1"
    """Per-action KL estimator: k1 = log pi - log pi_base, k2 = (log r)^2 / 2, k3 = (r - 1) - log r with
    r = pi_base / pi (see rlhfkit.optimize.kl)."""
    adaptive: bool = False
    """Adapt beta towards `target` with the Ziegler et al. (2019) controller."""
    target: float = 0.05
    """Target KL for the adaptive controller, in nats per action."""
    horizon: float = 10000.0
    """Controller horizon: beta moves by at most 20% per `horizon` actions (env steps or tokens)."""

    def __post_init__(self) -> None:
        require(
            self,
            {
                "beta": (
                    (lambda b: 0 < b < float("inf"), "> 0 and finite when adaptive (the controller scales it)")
                    if self.adaptive
                    else (lambda b: 0 <= b < float("inf"), ">= 0 and finite")
                ),
                "target": (positive, "> 0"),
                "horizon": (positive, "> 0"),
            },
        )


def kl_estimate(logp_new: torch.Tensor, logp_base: torch.Tensor, estimator: KLEstimator = "k1") -> torch.Tensor:
    """Per-sample KL(pi_new || pi_base) estimates for actions drawn from pi_new (same shape as inputs)."""
    log_ratio = logp_base - logp_new
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; choose k1, k2 or k3")


class KLController(Protocol):
    """Holds the penalty weight beta and may adapt it after each policy update."""

    beta: float

    def update(self, kl: float, n_steps: int) -> None: ...


@dataclass
class FixedKL:
    """A constant beta."""

    beta: float

    def update(self, kl: float, n_steps: int) -> None:
        del kl, n_steps


@dataclass
class AdaptiveKL:
    """Ziegler et al. (2019) proportional controller towards a target KL.

    After an update that saw ``n_steps`` samples with mean KL ``kl``::

        e    = clip(kl / target - 1, -0.2, 0.2)
        beta = beta * (1 + e * n_steps / horizon)

    so beta grows when the policy drifts past the target and shrinks below it.
    """

    beta: float
    target: float
    horizon: float = 10_000.0

    def update(self, kl: float, n_steps: int) -> None:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n_steps / self.horizon


def kl_controller(config: KLConfig) -> KLController:
    """The controller ``config`` asks for: :class:`AdaptiveKL` or :class:`FixedKL`."""
    return AdaptiveKL(config.beta, config.target, config.horizon) if config.adaptive else FixedKL(config.beta)
