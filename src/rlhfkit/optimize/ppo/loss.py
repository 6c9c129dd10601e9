"""The PPO core shared by every domain: GAE and the clipped-surrogate update.

It knows nothing of torques or tokens. A policy only has to provide

- ``log_prob(obs, actions) -> (log pi(a|s), entropy)`` and
- ``value(obs) -> V(s)``,

where ``obs`` and ``actions`` are whatever tensors the domain uses, indexable
along their first axis. Rewards arrive already shaped (learned reward minus the
KL penalty), so the KL to the base policy enters through the reward, as in
Ziegler et al. (2019).

For a language model, where one completion is one episode of token actions, the
same core takes ``(B, T)`` tensors with a mask of real tokens; :func:`token_kl`,
:func:`token_rewards` and :func:`token_gae` build its per-token KL estimates,
rewards (``-beta * kl_t``, plus the completion's score at its last token) and
advantages. The trainers that drive it: ``env_trainer.py`` (gymnasium
environments) and ``lm_trainer.py`` (language-model tokens).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from rlhfkit.checks import non_negative, positive, require, unit_interval
from rlhfkit.optimize.kl import KLEstimator, kl_estimate


class Policy(Protocol):
    """What the PPO update needs from a policy."""

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def value(self, obs: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters (Schulman et al. 2017), names as in the paper and CleanRL."""

    RENAMED: ClassVar[dict[str, str]] = {"learning_rate": "lr"}
    """Old field names a config file may still hold -> their names now; loading one names the new key."""

    n_envs: int = 4
    """Parallel environments (a synchronous vector env)."""
    n_steps: int = 512
    """Steps per env per rollout; a rollout holds n_envs * n_steps transitions."""
    update_epochs: int = 10
    """Passes over each rollout."""
    minibatch_size: int = 256
    """Transitions per gradient step."""
    lr: float = 1e-3
    """Adam learning rate (annealed linearly when anneal_lr)."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to 0 over the whole training budget (all rounds of a run)."""
    gamma: float = 0.9
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_coef: float = 0.2
    """Surrogate clipping epsilon."""
    ent_coef: float = 0.0
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float | None = None
    """Stop an update's epochs early when the approximate KL to the rollout policy exceeds this."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the actor and critic MLPs."""
    log_std_init: float = 0.0
    """Initial log std of a Gaussian policy."""
    normalize_obs: bool = True
    """Standardise observations with running statistics."""
    normalize_reward: bool = True
    """Scale rewards by a running std of the discounted return (as SB3's VecNormalize)."""

    def __post_init__(self) -> None:
        require(
            self,
            {
                "n_envs": (positive, ">= 1"),
                "n_steps": (positive, ">= 1"),
                "update_epochs": (positive, ">= 1"),
                "minibatch_size": (positive, ">= 1"),
                "lr": (positive, "> 0"),
                "gamma": (lambda g: 0 < g <= 1, "in (0, 1]"),
                "gae_lambda": (unit_interval, "in [0, 1]"),
                "clip_coef": (positive, "> 0"),
                "ent_coef": (non_negative, ">= 0"),
                "vf_coef": (non_negative, ">= 0"),
                "max_grad_norm": (positive, "> 0"),
                "target_kl": (lambda v: v is None or v > 0, "> 0 (or left out)"),
                "hidden": (lambda h: len(h) > 0 and all(w > 0 for w in h), "a non-empty list of positive widths"),
            },
        )


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    ended: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over ``(T, N)`` arrays.

    ``next_values[t]`` is ``V(s_{t+1})`` for the true successor of step t (the
    final observation where the episode ended). ``terminated[t]``: the episode
    reached a terminal state (no bootstrap); ``ended[t]``: it terminated or was
    truncated (the advantage trace stops)::

        delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
        A_t     = delta_t + gamma * lambda * (1 - ended_t) * A_{t+1}

    Returns ``(advantages, returns = advantages + values)``.
    """
    not_term = 1.0 - terminated.to(rewards.dtype)
    not_end = 1.0 - ended.to(rewards.dtype)
    deltas = rewards + gamma * not_term * next_values - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * gae_lambda * not_end[t] * running
        advantages[t] = running
    return advantages, advantages + values


@dataclass(frozen=True)
class PPOStats:
    """Diagnostics of one update (means over minibatches)."""

    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_frac: float
    n_gradient_steps: int


def _mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean()


def _masked_mean(x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``real`` is True; padding adds nothing, even nan."""
    return torch.where(real, x, 0.0).sum() / real.sum().clamp(min=1)


def ppo_update(
    policy: nn.Module,
    optimizer: torch.optim.Optimizer,
    obs: torch.Tensor,
    actions: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    config: PPOConfig,
    generator: torch.Generator | None = None,
    mask: torch.Tensor | None = None,
) -> PPOStats:
    """Clipped-surrogate PPO on one flattened batch (first axis = samples).

    ``policy`` must provide ``log_prob`` and ``value`` (see :class:`Policy`).
    Advantages are standardised per minibatch.

    ``mask`` (optional, the shape of ``old_logp``, e.g. ``(B, T)`` for B token
    sequences): 1 on real entries, 0 on padding. Minibatches are still drawn
    along the first axis (whole sequences), but every mean (the losses, the
    diagnostics and the advantage standardisation) is then over real entries
    only, so padding neither dilutes a loss nor shifts the advantages' mean and
    std. Without it every entry is real.
    """
    if mask is not None and mask.shape != old_logp.shape:
        raise ValueError(f"mask must have the shape of old_logp {tuple(old_logp.shape)}, got {tuple(mask.shape)}")
    n = obs.shape[0]
    stats: dict[str, list[float]] = {k: [] for k in ("pl", "vl", "ent", "kl", "cf")}
    steps = 0
    for _ in range(config.update_epochs):
        perm = torch.randperm(n, generator=generator)
        epoch_kls = []
        for start in range(0, n, config.minibatch_size):
            idx = perm[start : start + config.minibatch_size]
            real = None if mask is None else mask[idx].bool()
            mean = _mean if real is None else functools.partial(_masked_mean, real=real)
            logp, entropy = policy.log_prob(obs[idx], actions[idx])  # type: ignore[operator]
            log_ratio = logp - old_logp[idx]
            if real is not None:  # padding gets ratio exactly 1, whatever its log-probs (even inf or nan)
                log_ratio = torch.where(real, log_ratio, 0.0)
            ratio = log_ratio.exp()
            adv = advantages[idx]
            if real is None:
                if adv.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            elif (n_real := int(real.sum())) > 1:
                centred = adv - mean(adv)
                std = (mean(centred.pow(2)) * n_real / (n_real - 1)).sqrt()  # Bessel-corrected, as Tensor.std
                adv = centred / (std + 1e-8)
            pg_loss = mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)))
            v_loss = 0.5 * mean((policy.value(obs[idx]) - returns[idx]).pow(2))  # type: ignore[operator]
            ent = mean(entropy)
            loss = pg_loss - config.ent_coef * ent + config.vf_coef * v_loss
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            optimizer.step()
            steps += 1
            with torch.no_grad():
                approx_kl = float(mean((ratio - 1) - log_ratio))  # k3 of pi_old || pi
                epoch_kls.append(approx_kl)
                stats["pl"].append(float(pg_loss))
                stats["vl"].append(float(v_loss))
                stats["ent"].append(float(ent))
                stats["kl"].append(approx_kl)
                stats["cf"].append(float(mean(((ratio - 1).abs() > config.clip_coef).float())))
        if config.target_kl is not None and np.mean(epoch_kls) > config.target_kl:
            break
    return PPOStats(
        policy_loss=float(np.mean(stats["pl"])),
        value_loss=float(np.mean(stats["vl"])),
        entropy=float(np.mean(stats["ent"])),
        approx_kl=float(np.mean(stats["kl"])),
        clip_frac=float(np.mean(stats["cf"])),
        n_gradient_steps=steps,
    )


# -- token-level pieces for a language model (one completion = one episode) --------


def _check_prefix_mask(mask: torch.Tensor) -> None:
    if mask.ndim != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a (B, T) bool tensor, got {mask.dtype} of shape {tuple(mask.shape)}")
    if not torch.all(mask[:, 0]) or torch.any(mask[:, 1:] & ~mask[:, :-1]):
        raise ValueError("mask must mark a non-empty prefix of each row (real tokens, then padding)")


def token_kl(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, estimator: KLEstimator) -> torch.Tensor:
    """Per-token estimates ``(B, T)`` of KL(pi || ref) at tokens sampled from pi, exactly 0 where ``mask`` is False.

    ``logp``, ``ref_logp``: ``(B, T)`` log-probs of the sampled tokens under the
    sampling policy and the reference; see :func:`rlhfkit.optimize.kl.kl_estimate`.
    Summed over a row it estimates the KL of the whole completion.
    """
    return torch.where(mask, kl_estimate(logp, ref_logp, estimator), 0.0)


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token rewards ``(B, T)`` of KL-penalised RLHF (Ziegler et al. 2019; Stiennon et al. 2020)::

        r_t = -beta * kl_t + [t = last real token] * score

    ``scores``: ``(B,)`` the reward model's score of each completion; ``kl``:
    ``(B, T)`` per-token KL estimates; ``mask``: ``(B, T)`` bool, True on a
    prefix of real tokens (eos included). Positions after the end get exactly 0,
    whatever ``kl`` holds there. Summed over a row, the rewards are
    ``score - beta * (the completion's KL estimate)``.
    """
    _check_prefix_mask(mask)
    if kl.shape != mask.shape or scores.shape != mask.shape[:1]:
        raise ValueError(
            f"kl must have the shape of mask {tuple(mask.shape)} and scores ({mask.shape[0]},); "
            f"got {tuple(kl.shape)} and {tuple(scores.shape)}"
        )
    rewards = torch.where(mask, -beta * kl, 0.0)
    last = mask.sum(-1) - 1
    rows = torch.arange(mask.shape[0], device=mask.device)
    rewards[rows, last] += scores.to(rewards.dtype)
    return rewards


def token_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, gae_lambda: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE along the token axis of ``(B, T)`` completions; returns ``(advantages, returns)``, each ``(B, T)``.

    Each row is one episode that ends at its last real token (``mask``, a prefix
    of True): that token is terminal, so nothing is bootstrapped past it, not even
    for a completion cut at ``max_new_tokens``, which the reward model scored as
    it stands. With ``V_t`` the value of the state before token t::

        delta_t = r_t + gamma * V_{t+1} - V_t        (V_{t+1} = 0 at the last real token)
        A_t     = delta_t + gamma * lambda * A_{t+1}  (A_{t+1} = 0 at the last real token)

    Advantages and returns (``A_t + V_t``) are exactly 0 after the end; rewards
    and values there are ignored. Built on :func:`compute_gae`
    with tokens as its time axis and completions as its envs.
    """
    _check_prefix_mask(mask)
    if rewards.shape != mask.shape or values.shape != mask.shape:
        raise ValueError(
            f"rewards and values must have the shape of mask {tuple(mask.shape)}, "
            f"got {tuple(rewards.shape)} and {tuple(values.shape)}"
        )
    rewards = torch.where(mask, rewards, 0.0)
    values = torch.where(mask, values, 0.0)
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
    is_last = mask & ~torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)
    done = is_last | ~mask  # terminal at the last real token; padding is a run of empty terminal steps
    adv, ret = compute_gae(rewards.T, values.T, next_values.T, done.T, done.T, gamma, gae_lambda)
    return adv.T.contiguous(), ret.T.contiguous()
