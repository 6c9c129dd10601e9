"""Loss functions for reward learning: pure ``(tensors, labels) -> terms``.

Bradley–Terry (Luce–Shepard) with soft labels. For a pair with predicted
returns ``r_A, r_B`` and label distribution ``mu = (mu_A, mu_B)``::

    P(A > B) = exp r_A / (exp r_A + exp r_B) = sigmoid(r_A - r_B)
    loss     = -[mu_A log P(A > B) + mu_B log P(B > A)]

A>B is ``mu = (1, 0)``, B>A ``(0, 1)``, about equal ``(0.5, 0.5)``, graded answers
as given. Incomparable answers are masked out: they add zero loss and zero
gradient and do not count in the mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class BradleyTerryTerms:
    """The named terms of the Bradley–Terry loss.

    ``loss`` is the mean cross-entropy over usable pairs (0 when there are none);
    ``accuracy`` is the fraction of usable, non-tied pairs whose preferred side
    has the larger predicted return; ``p_a`` is ``P(A > B)`` for every pair.
    """

    loss: torch.Tensor
    accuracy: torch.Tensor
    p_a: torch.Tensor
    n_usable: int


def bradley_terry_loss(
    return_a: torch.Tensor,
    return_b: torch.Tensor,
    mu: torch.Tensor,
    usable: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    slip: float = 0.0,
) -> BradleyTerryTerms:
    """Soft-label Bradley–Terry cross-entropy.

    Args:
        return_a, return_b: predicted returns, shape ``(N,)`` (or ``(K, N)`` for an
            ensemble of K members, each with the same labels).
        mu: ``(N, 2)`` label distributions; rows of unusable pairs are ignored
            (any finite value, e.g. zeros).
        usable: ``(N,)`` bool, False for incomparable answers. Default: all usable.
        weight: ``(N,)`` or ``(K, N)`` answer weights (e.g. each ensemble member's
            bootstrap counts): the loss is then each member's weighted mean over
            usable pairs, averaged over members. Default: 1 for every pair.
        slip: the stated chance that an answer is a slip (the human answered at random):
            ``P(A > B) = slip / 2 + (1 - slip) * sigmoid(r_A - r_B)``, so one contrary answer
            costs at most ``-log(slip / 2)`` however sure the model is. 0 = plain Bradley–Terry.
    """
    if not 0.0 <= slip < 1.0:
        raise ValueError(f"slip must be in [0, 1), got {slip}")
    if mu.ndim != 2 or mu.shape[-1] != 2:
        raise ValueError(f"mu must have shape (N, 2), got {tuple(mu.shape)}")
    if usable is None:
        usable = torch.ones(mu.shape[0], dtype=torch.bool, device=mu.device)
    usable_weight = usable.to(return_a.dtype)
    mu = torch.where(usable[:, None], mu.to(return_a.dtype), torch.zeros_like(mu, dtype=return_a.dtype))
    logits = return_a - return_b
    # log P(A>B) = logsigmoid(d), log P(B>A) = logsigmoid(-d): stable for any d.
    log_a, log_b = F.logsigmoid(logits), F.logsigmoid(-logits)
    if slip > 0.0:  # log(slip/2 + (1 - slip) p), as a log-sum-exp: stable for any d
        floor = torch.full_like(logits, math.log(slip / 2))
        log_a = torch.logaddexp(floor, math.log1p(-slip) + log_a)
        log_b = torch.logaddexp(floor, math.log1p(-slip) + log_b)
    nll = -(mu[:, 0] * log_a + mu[:, 1] * log_b)
    n_usable = int(usable.sum().item())
    if weight is None:
        loss = (nll * usable_weight).sum(dim=-1) / max(n_usable, 1)
    else:
        w = usable_weight * weight.to(return_a.dtype)
        loss = (nll * w).sum(dim=-1) / w.sum(dim=-1).clamp_min(1e-12)
    if loss.ndim > 0:
        loss = loss.mean()
    decisive = usable & (mu[:, 0] != mu[:, 1])
    # A predicted tie (r_A == r_B) is wrong for either preferred side.
    correct = (torch.sign(logits) == torch.sign(mu[:, 0] - mu[:, 1])).to(return_a.dtype)
    n_decisive = int(decisive.sum().item())
    accuracy = (correct * decisive.to(return_a.dtype)).sum(dim=-1) / max(n_decisive, 1)
    if accuracy.ndim > 0:
        accuracy = accuracy.mean()
    return BradleyTerryTerms(loss=loss, accuracy=accuracy.detach(), p_a=log_a.exp().detach(), n_usable=n_usable)


def reward_centering_penalty(step_rewards: torch.Tensor) -> torch.Tensor:
    """``mean(r)^2``: pulls the mean predicted per-step reward towards 0.

    Bradley–Terry is invariant to adding a constant to every reward, so the
    level is free; centering pins it, which keeps rewards comparable across
    rounds and ensemble members (Eisenstein et al. 2023 use the same idea).
    """
    return step_rewards.mean() ** 2


def expected_calibration_error(p_a: torch.Tensor, mu_a: torch.Tensor, n_bins: int = 10) -> float:
    """ECE of the predicted ``P(A > B)`` against the label ``mu_A``.

    Pairs are binned by confidence ``max(p, 1 - p)``; in each bin the mean
    confidence is compared with the mean label mass on the predicted side. The
    result is the bin-size-weighted mean absolute gap (Guo et al. 2017), with
    soft labels counted as fractional outcomes.
    """
    if p_a.numel() == 0:
        return float("nan")
    conf = torch.maximum(p_a, 1 - p_a)
    outcome = torch.where(p_a >= 0.5, mu_a, 1 - mu_a)
    edges = torch.linspace(0.5, 1.0, n_bins + 1)
    idx = torch.clamp(torch.bucketize(conf, edges[1:-1]), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            ece += float(m.float().mean()) * abs(float(conf[m].mean()) - float(outcome[m].mean()))
    return ece
