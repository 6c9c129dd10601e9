"""Control domain: segments cut from rollouts, evaluation, and a policy's rollout to show.

The policy (:class:`~rlhfkit.models.control.ActorCritic`) and the rollouts it is
trained on (:class:`~rlhfkit.models.control.RolloutCollector`) are in
:mod:`rlhfkit.models.control`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from rlhfkit.models.control import ActorCritic, EnvFactory, Rollout
from rlhfkit.types import Segment


def segments_from_rollout(rollout: Rollout, length: int, env_id: str = "") -> list[Segment]:
    """Cut each env's stream into non-overlapping windows of ``length`` steps.

    Windows never cross an episode boundary: after an episode ends the next
    window starts at the first step of the new episode.
    """
    segments: list[Segment] = []
    T, N = rollout.ended.shape
    obs = rollout.obs.numpy()
    for i in range(N):
        t = 0
        while t + length <= T:
            start_step = int(rollout.episode_step[t, i])
            ends = np.flatnonzero(rollout.ended[t : t + length - 1, i])
            if ends.size:
                t += int(ends[0]) + 1
                continue
            segments.append(
                Segment(
                    observations=obs[t : t + length, i],
                    actions=rollout.env_actions[t : t + length, i],
                    true_rewards=rollout.true_rewards[t : t + length, i],
                    info={"env_id": env_id, "env_index": i, "episode_step": start_step},
                )
            )
            t += length
    return segments


@torch.no_grad()
def evaluate_policy(
    policy: ActorCritic,
    make_env: EnvFactory,
    n_episodes: int,
    seed: int,
    reward_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    base: ActorCritic | None = None,
    deterministic: bool = True,
) -> dict[str, float]:
    """Mean true return over ``n_episodes`` (seeded), and optionally learned return and KL to base.

    ``kl_to_base`` is the exact ``KL(pi(.|s) || pi_base(.|s))`` averaged over the
    visited states (closed form for Gaussians and categoricals).
    """
    env = make_env()
    true_returns, learned_returns, kls = [], [], []
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=seed + ep)
        done = False
        ret, learned = 0.0, 0.0
        while not done:
            o = np.asarray(obs, dtype=np.float32)[None]
            a = policy.act(o, deterministic=deterministic)
            if reward_fn is not None:
                learned += float(reward_fn(o, a)[0])
            if base is not None:
                ot = torch.as_tensor(o)
                kls.append(float(torch.distributions.kl_divergence(policy.distribution(ot), base.distribution(ot))[0]))
            obs, r, terminated, truncated, _ = env.step(a[0])
            ret += float(r)
            done = bool(terminated or truncated)
        true_returns.append(ret)
        learned_returns.append(learned)
    env.close()
    out = {"true_return": float(np.mean(true_returns)), "true_return_std": float(np.std(true_returns))}
    if reward_fn is not None:
        out["learned_return"] = float(np.mean(learned_returns))
    if base is not None:
        out["kl_to_base"] = float(np.mean(kls))
    return out


def policy_rollout(policy: ActorCritic, make_env: EnvFactory, seed: int, max_steps: int, env_id: str = "") -> Segment:
    """The first ``max_steps`` steps of one deterministic episode from ``env.reset(seed=seed)``.

    What the policy does, to show a person (the report's rollout of the base and the
    latest policy). ``true_rewards`` are the env's rewards, which the tasks make the true
    reward; ``info`` holds ``env_id`` (for the renderer) and ``seed``.
    """
    env = make_env()
    observations, actions, rewards = [], [], []
    try:
        obs, _ = env.reset(seed=seed)
        for _ in range(max_steps):
            o = np.asarray(obs, dtype=np.float32)
            a = policy.act(o[None], deterministic=True)[0]
            observations.append(o)
            actions.append(a)
            obs, r, terminated, truncated, _ = env.step(a)
            rewards.append(float(r))
            if terminated or truncated:
                break
    finally:
        env.close()
    return Segment(np.array(observations), np.array(actions), np.array(rewards), {"env_id": env_id, "seed": seed})
