"""Direct preference losses on sequence log-probs: pure ``(tensors, labels) -> terms``.

Each pair is a prompt with two completions, "chosen" (c) and "rejected" (r), and
the summed token log-probs of each completion under the policy being trained
(``pi``) and under a frozen reference policy (``ref``). The implicit reward of a
completion is ``beta * (log pi(y) - log ref(y))`` and the loss fits the
difference of the two implicit rewards to the label::

    h_raw = (log pi(c) - log ref(c)) - (log pi(r) - log ref(r))
    h     = beta * h_raw

Labels are distributions ``mu = (mu_c, mu_r)`` over which side is preferred, as
in :mod:`rlhfkit.reward.losses`: ``(1, 0)`` chosen preferred, ``(0, 1)``
rejected preferred, ``(0.5, 0.5)`` about equal, graded answers as given.
Incomparable pairs are masked out by ``usable``: they add zero loss and exactly
zero gradient and do not count in the mean.

- DPO (Rafailov et al. 2023, "Direct Preference Optimization") is the
  Bradley–Terry cross-entropy with ``h`` as the logit.
- IPO (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning
  from Human Preferences") regresses ``h_raw`` onto a fixed target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PreferenceTerms:
    """The named terms of a direct preference loss.

    ``loss``: mean over usable pairs (0 when there are none), the only term with
    a gradient. ``chosen_reward`` and ``rejected_reward``: implicit rewards
    ``beta * (log pi - log ref)`` of every pair, shape ``(B,)``, detached.
    ``reward_accuracy``: fraction of usable, non-tied pairs whose preferred side
    (by the label, not by the name "chosen") has the strictly larger implicit
    reward (0 when there are none). ``margin``: mean over usable pairs of
    ``chosen_reward - rejected_reward`` (0 when there are none).
    """

    loss: torch.Tensor
    chosen_reward: torch.Tensor
    rejected_reward: torch.Tensor
    reward_accuracy: torch.Tensor
    margin: torch.Tensor
    n_usable: int


@dataclass(frozen=True)
class _Pairs:
    """Validated inputs shared by both losses; masked rows already neutralised."""

    h_raw: torch.Tensor  # (B,), 0 on unusable rows, with a zero gradient there
    mu: torch.Tensor  # (B, 2), 0 on unusable rows
    usable: torch.Tensor  # (B,) bool
    chosen_reward: torch.Tensor  # (B,) detached
    rejected_reward: torch.Tensor  # (B,) detached


def _pairs(
    policy_chosen_logp: torch.Tensor,
    policy_rejected_logp: torch.Tensor,
    ref_chosen_logp: torch.Tensor,
    ref_rejected_logp: torch.Tensor,
    mu: torch.Tensor,
    usable: torch.Tensor | None,
    beta: float,
) -> _Pairs:
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    logps = (policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp)
    if any(x.ndim != 1 for x in logps) or len({x.shape for x in logps}) != 1:
        raise ValueError(
            "the four log-prob tensors must all have shape (B,), got " + ", ".join(str(tuple(x.shape)) for x in logps)
        )
    n = policy_chosen_logp.shape[0]
    if mu.shape != (n, 2):
        raise ValueError(f"mu must have shape (B, 2) = ({n}, 2), got {tuple(mu.shape)}")
    if usable is None:
        usable = torch.ones(n, dtype=torch.bool, device=mu.device)
    elif usable.shape != (n,) or usable.dtype != torch.bool:
        raise ValueError(f"usable must be a bool tensor of shape ({n},), got {usable.dtype} {tuple(usable.shape)}")
    dtype = policy_chosen_logp.dtype
    chosen_logratio = policy_chosen_logp - ref_chosen_logp
    rejected_logratio = policy_rejected_logp - ref_rejected_logp
    # Mask before the nonlinearity, not after: torch.where passes an exact 0 back to
    # unusable rows even if their log-probs are -inf or nan (0 * inf would be nan).
    h_raw = torch.where(usable, chosen_logratio - rejected_logratio, 0.0)
    mu = torch.where(usable[:, None], mu.to(dtype), 0.0)
    return _Pairs(
        h_raw=h_raw,
        mu=mu,
        usable=usable,
        chosen_reward=(beta * chosen_logratio).detach(),
        rejected_reward=(beta * rejected_logratio).detach(),
    )


def _terms(pairs: _Pairs, per_pair_loss: torch.Tensor) -> PreferenceTerms:
    """Mean the per-pair loss over usable pairs and add the detached diagnostics."""
    n_usable = int(pairs.usable.sum().item())
    dtype = per_pair_loss.dtype
    weight = pairs.usable.to(dtype)
    loss = (per_pair_loss * weight).sum() / max(n_usable, 1)
    reward_diff = torch.where(pairs.usable, pairs.chosen_reward - pairs.rejected_reward, 0.0)
    margin = reward_diff.sum() / max(n_usable, 1)
    preferred = pairs.mu[:, 0] - pairs.mu[:, 1]
    decisive = pairs.usable & (preferred != 0)
    # Equal implicit rewards are wrong for either preferred side.
    correct = (torch.sign(reward_diff) == torch.sign(preferred)) & decisive
    reward_accuracy = correct.to(dtype).sum() / max(int(decisive.sum().item()), 1)
    return PreferenceTerms(
        loss=loss,
        chosen_reward=pairs.chosen_reward,
        rejected_reward=pairs.rejected_reward,
        reward_accuracy=reward_accuracy.detach(),
        margin=margin.detach(),
        n_usable=n_usable,
    )


def dpo_loss(
    policy_chosen_logp: torch.Tensor,
    policy_rejected_logp: torch.Tensor,
    ref_chosen_logp: torch.Tensor,
    ref_rejected_logp: torch.Tensor,
    mu: torch.Tensor,
    usable: torch.Tensor | None = None,
    beta: float = 0.1,
) -> PreferenceTerms:
    """DPO with soft labels (Rafailov et al. 2023, eq. 7)::

        h    = beta * [(log pi(c) - log ref(c)) - (log pi(r) - log ref(r))]
        loss = -[mu_c log sigmoid(h) + mu_r log sigmoid(-h)]

    With ``mu = (1, 0)`` this is standard DPO. A soft label makes it the
    Bradley–Terry cross-entropy of :func:`rlhfkit.reward.losses.bradley_terry_loss`
    with the implicit rewards as returns, so there is no separate
    ``label_smoothing``: ``mu = (1 - eps, eps)`` is the "conservative DPO" of
    label smoothing. Its minimum in ``h`` is at ``sigmoid(h) = mu_c``, so a tie
    pulls ``h`` to 0 from either side and a graded label to ``logit(mu_c)``,
    rather than pushing the margin up without bound.

    Args:
        policy_chosen_logp, policy_rejected_logp: ``(B,)`` summed token log-probs
            of each completion under the trained policy (with gradient).
        ref_chosen_logp, ref_rejected_logp: ``(B,)`` the same under the frozen
            reference policy (no gradient expected).
        mu: ``(B, 2)`` label distributions over (chosen, rejected); rows of
            unusable pairs are ignored (any value, e.g. zeros).
        usable: ``(B,)`` bool, False for incomparable pairs. Default: all usable.
        beta: > 0, the inverse temperature of the implicit reward (the strength
            of the KL anchor to ``ref``).
    """
    pairs = _pairs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, mu, usable, beta)
    h = beta * pairs.h_raw
    # logsigmoid(h) and logsigmoid(-h) are stable for any h.
    nll = -(pairs.mu[:, 0] * F.logsigmoid(h) + pairs.mu[:, 1] * F.logsigmoid(-h))
    return _terms(pairs, nll)


def ipo_loss(
    policy_chosen_logp: torch.Tensor,
    policy_rejected_logp: torch.Tensor,
    ref_chosen_logp: torch.Tensor,
    ref_rejected_logp: torch.Tensor,
    mu: torch.Tensor,
    usable: torch.Tensor | None = None,
    beta: float = 0.1,
) -> PreferenceTerms:
    """IPO with soft labels (Azar et al. 2023, the sampled loss of section 5.2)::

        h_raw  = (log pi(c) - log ref(c)) - (log pi(r) - log ref(r))
        target = (mu_c - mu_r) / (2 beta)
        loss   = (h_raw - target)^2

    ``beta`` plays the role of the paper's ``tau``. With ``mu = (1, 0)`` the
    target is the paper's ``1 / (2 tau)``; a tie targets 0 (pull neither side,
    only towards equal log-ratios); ``(0, 1)`` targets ``-1 / (2 beta)``.

    Soft labels: IPO's population loss regresses ``h(y, y')`` onto
    ``I(y, y') / tau``, where ``I`` is the preference indicator, summed over both
    orders of each pair. Putting the label mass in for ``I`` -- ``mu_c`` for
    (c, r) and ``mu_r`` for (r, c), with ``h(r, c) = -h(c, r)`` -- gives::

        (h_raw - mu_c / tau)^2 + (h_raw + mu_r / tau)^2
            = 2 (h_raw - (mu_c - mu_r) / (2 tau))^2 + const,

    so the target above is the exact soft-label generalisation, and the hard
    label recovers the paper's loss. Unlike DPO the target is finite for hard
    labels too: the margin cannot run off to infinity. Note the loss is on the
    unscaled ``h_raw`` (as in the paper), so its size scales as ``1 / beta^2``
    relative to DPO's.

    Args: as :func:`dpo_loss`.
    """
    pairs = _pairs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, mu, usable, beta)
    target = (pairs.mu[:, 0] - pairs.mu[:, 1]) / (2.0 * beta)
    # Unusable rows have h_raw = target = 0 and so a zero loss with a zero gradient.
    return _terms(pairs, (pairs.h_raw - target) ** 2)
