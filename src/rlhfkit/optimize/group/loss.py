"""Group-baseline policy gradients: G sampled completions per prompt, no critic.

For each of P prompts the policy samples G completions and a reward model scores
each one, giving ``rewards`` of shape ``(P, G)``. The other completions of the
same prompt serve as the baseline, in place of a learned value function:

- RLOO (Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style
  Optimization for Learning from Human Feedback in LLMs"): the leave-one-out
  mean of the other G - 1 rewards;
- GRPO (Shao et al. 2024, "DeepSeekMath", section 4.1): the group mean, with the
  difference divided by the group std.

The sequence advantage is then broadcast over the completion's tokens in a
PPO-style clipped surrogate (:func:`policy_gradient_loss`), with the KL to the
reference policy in the loss rather than in the reward, as GRPO does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhfkit.optimize.kl import KLEstimator, kl_estimate


def _check_groups(rewards: torch.Tensor) -> None:
    if rewards.ndim != 2:
        raise ValueError(
            f"rewards must have shape (P, G) = (prompts, completions per prompt), got {tuple(rewards.shape)}"
        )
    if rewards.shape[1] < 2:
        raise ValueError(
            f"a group baseline needs G >= 2 completions per prompt, got G = {rewards.shape[1]} "
            f"(rewards of shape {tuple(rewards.shape)})"
        )


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Leave-one-out advantages, ``(P, G) -> (P, G)``::

        A_i = r_i - mean_{j != i} r_j = r_i - (sum_j r_j - r_i) / (G - 1)

    The baseline of completion i does not depend on i's own sample, so the
    policy gradient stays unbiased (Kool et al. 2019; Ahmadian et al. 2024). It
    equals ``G / (G - 1)`` times the group-centred reward. Needs ``G >= 2``.
    """
    _check_groups(rewards)
    g = rewards.shape[1]
    others_mean = (rewards.sum(dim=1, keepdim=True) - rewards) / (g - 1)
    return rewards - others_mean


def grpo_advantages(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """Group-normalised advantages, ``(P, G) -> (P, G)`` (Shao et al. 2024, outcome supervision)::

        A_i = (r_i - mean(r)) / (std(r) + eps)     (scale=True)
        A_i =  r_i - mean(r)                       (scale=False)

    Mean and std are per group (per row), std is the population std
    (``unbiased=False``). A group whose rewards are all equal gets zero
    advantages, not nan. ``scale=False`` drops the division, which Liu et al.
    (2025, "Dr. GRPO") argue for: dividing by the std up-weights prompts that are
    nearly always or nearly never solved. Needs ``G >= 2``: with one completion
    the baseline is the reward itself and every advantage is 0.
    """
    _check_groups(rewards)
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True, correction=0) + eps)


@dataclass(frozen=True)
class PolicyGradientTerms:
    """The named terms of :func:`policy_gradient_loss`; ``loss = pg_loss + beta * kl``.

    ``loss``, ``pg_loss`` and ``kl`` keep their gradient, so a caller may weight
    the terms differently; ``clip_frac`` is detached. All are scalars.
    """

    loss: torch.Tensor
    pg_loss: torch.Tensor
    kl: torch.Tensor
    clip_frac: torch.Tensor


def policy_gradient_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_coef: float = 0.2,
    beta: float = 0.04,
    kl_estimator: KLEstimator = "k3",
) -> PolicyGradientTerms:
    """Token-level clipped surrogate with a sequence advantage, plus ``beta * KL(pi || ref)``.

    For token t of completion b, with ``rho = exp(logp - old_logp)`` and ``A_b``
    the completion's advantage broadcast over its tokens (PPO, Schulman et al.
    2017; GRPO, Shao et al. 2024, eq. 3)::

        pg_{b,t} = -min(rho * A_b, clip(rho, 1 - clip_coef, 1 + clip_coef) * A_b)
        kl_{b,t} = exp(ref - logp) - (ref - logp) - 1              (k3)
        loss     = masked_mean(pg) + beta * masked_mean(kl)

    **Averaging.** ``masked_mean`` is one mean over all real tokens of the batch,
    ``sum(x * mask) / sum(mask)``, so every token weighs the same. GRPO as
    published means per sequence first and then over sequences; that gives each
    token of a short completion more weight than one of a long completion, so a
    long wrong answer is penalised less per token than a short one (the length
    bias discussed by Yu et al. 2025, "DAPO", and Liu et al. 2025, "Dr. GRPO").
    The price: the loss scale depends on the batch's token count.

    **The KL term.** ``k3`` is Schulman's (2020) low-variance, always
    non-negative estimator of ``KL(pi || ref)`` at tokens sampled from ``pi``;
    see :mod:`rlhfkit.optimize.kl`. Its gradient per token is
    ``(1 - exp(ref - logp)) * grad logp``: it pulls ``logp`` towards ``ref``
    from either side. Strictly, in expectation over ``pi`` that gradient is the
    gradient of the *forward* ``KL(ref || pi)``, not of ``KL(pi || ref)``; the
    two gradients agree to first order in ``pi - ref``, which is small where beta
    keeps the policy. ``k1`` has zero expected gradient when used in a loss and
    is only useful as a diagnostic.

    Args:
        logp: ``(B, T)`` per-token log-probs of the sampled completions under the
            policy being trained (with gradient).
        old_logp: ``(B, T)`` the same under the policy that sampled them
            (detached here).
        ref_logp: ``(B, T)`` the same under the frozen reference policy
            (detached here), or None for no KL term (then ``beta`` must be 0).
        advantages: ``(B,)`` one advantage per completion, e.g. a flattened
            :func:`grpo_advantages` or :func:`rloo_advantages`.
        mask: ``(B, T)`` bool, True on completion tokens, False on padding and
            prompt tokens. Masked tokens add nothing and get exactly zero
            gradient, whatever their log-prob values (even inf or nan).
        clip_coef: > 0, the surrogate's clipping epsilon.
        beta: >= 0, the weight of the KL penalty.
        kl_estimator: ``"k1"``, ``"k2"`` or ``"k3"`` (see above).

    Returns ``kl`` as the masked mean of the chosen estimator (0 when
    ``ref_logp`` is None) and ``clip_frac`` as the fraction of real tokens
    whose clipped branch is active, i.e. whose surrogate gradient is zero
    (``rho > 1 + clip_coef`` with ``A > 0``, or ``rho < 1 - clip_coef`` with
    ``A < 0``). That differs from :func:`rlhfkit.optimize.ppo.loss.ppo_update`'s
    ``|rho - 1| > clip_coef``, which also counts tokens the min leaves unclipped.
    """
    if logp.ndim != 2:
        raise ValueError(f"logp must have shape (B, T), got {tuple(logp.shape)}")
    shapes = {"old_logp": old_logp.shape, "mask": mask.shape}
    if ref_logp is not None:
        shapes["ref_logp"] = ref_logp.shape
    for name, shape in shapes.items():
        if shape != logp.shape:
            raise ValueError(f"{name} must have the shape of logp {tuple(logp.shape)}, got {tuple(shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages must have shape (B,) = ({logp.shape[0]},), got {tuple(advantages.shape)}")
    if clip_coef <= 0:
        raise ValueError(f"clip_coef must be > 0, got {clip_coef!r}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    if ref_logp is None and beta != 0:
        raise ValueError(f"beta = {beta!r} needs ref_logp; pass ref_logp or set beta = 0")

    n_tokens = max(int(mask.sum().item()), 1)

    def masked_mean(x: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, x, 0.0).sum() / n_tokens

    # Neutralise padding *before* exp: torch.where then sends an exact 0 back to
    # masked tokens, where 0 * exp(huge) after the fact would be nan.
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    log_ratio = torch.where(mask, logp - old_logp.detach(), zero)
    ratio = log_ratio.exp()
    adv = advantages.detach().to(logp.dtype)[:, None]
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * adv
    pg_loss = masked_mean(-torch.min(unclipped, clipped))
    clip_active = ((ratio > 1.0 + clip_coef) & (adv > 0)) | ((ratio < 1.0 - clip_coef) & (adv < 0))
    clip_frac = masked_mean(clip_active.to(logp.dtype)).detach()

    if ref_logp is None:
        kl = zero
    else:
        kl_per_token = kl_estimate(
            torch.where(mask, logp, zero), torch.where(mask, ref_logp.detach(), zero), kl_estimator
        )
        kl = masked_mean(kl_per_token)
    return PolicyGradientTerms(loss=pg_loss + beta * kl, pg_loss=pg_loss, kl=kl, clip_frac=clip_frac)
