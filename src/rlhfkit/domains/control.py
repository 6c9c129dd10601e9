"""Control domain: gymnasium policies, rollouts, segments and evaluation.

A control policy is an actor-critic MLP: a Gaussian with a state-independent
log std for Box actions, a categorical for Discrete actions. It implements the
optimiser core's policy protocol (``sample`` with log-probs, ``log_prob`` of
given actions), so the same PPO update trains it and a language model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from rlhfkit.nets import mlp
from rlhfkit.types import Segment


class UnsupportedSpaceError(ValueError):
    """The environment's action or observation space is one the control policy can't handle."""


@dataclass(frozen=True)
class SpaceSpec:
    """What the policy and reward model need to know about an environment."""

    obs_dim: int
    act_dim: int
    n_actions: int | None
    """Number of discrete actions, or None for a Box action space."""
    low: np.ndarray | None
    high: np.ndarray | None

    @classmethod
    def of(cls, observation_space: gym.Space[Any], action_space: gym.Space[Any], env_id: str = "") -> SpaceSpec:
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise UnsupportedSpaceError(
                f"env {env_id!r}: observation space {observation_space} is not supported; "
                "the control policy needs a flat Box (wrap image or dict observations first)"
            )
        obs_dim = int(observation_space.shape[0])
        if isinstance(action_space, gym.spaces.Discrete):
            return cls(obs_dim, 1, int(action_space.n), None, None)
        if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
                raise UnsupportedSpaceError(f"env {env_id!r}: Box action space {action_space} must be bounded")
            return cls(obs_dim, int(action_space.shape[0]), None, action_space.low.copy(), action_space.high.copy())
        raise UnsupportedSpaceError(
            f"env {env_id!r}: action space {action_space} is not supported; "
            "the control policy handles Discrete and flat Box actions"
        )


class RunningMeanStd(nn.Module):
    """Running mean and variance (Chan et al. parallel update), kept as buffers."""

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, shape: Sequence[int], epsilon: float = 1e-4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(tuple(shape), dtype=torch.float64))
        self.register_buffer("var", torch.ones(tuple(shape), dtype=torch.float64))
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    def update(self, x: torch.Tensor) -> None:
        x = x.double().reshape(-1, *tuple(self.mean.shape))
        b_mean, b_var, b_count = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        new_mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: torch.Tensor, clip: float = 10.0) -> torch.Tensor:
        y = (x.double() - self.mean) / torch.sqrt(self.var + 1e-8)
        return y.clamp(-clip, clip).to(x.dtype)


class ActorCritic(nn.Module):
    """Gaussian or categorical MLP policy with a separate value MLP.

    Observations are standardised by a running mean/std that is updated only
    through :meth:`update_obs_stats` (during rollouts), never during updates.
    """

    def __init__(
        self,
        spec: SpaceSpec,
        hidden: Sequence[int] = (64, 64),
        log_std_init: float = 0.0,
        normalize_obs: bool = True,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.normalize_obs = normalize_obs
        self.obs_rms = RunningMeanStd((spec.obs_dim,))
        out = spec.n_actions if spec.n_actions is not None else spec.act_dim
        self.actor = mlp(spec.obs_dim, hidden, out, activation=nn.Tanh)
        self.critic = mlp(spec.obs_dim, hidden, 1, activation=nn.Tanh)
        # Orthogonal init with a small last layer: the initial policy is near
        # state-independent, as in most PPO implementations.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight, gain=float(np.sqrt(2)))
                nn.init.zeros_(m.bias)
        last_actor = self.actor[-1]
        last_critic = self.critic[-1]
        assert isinstance(last_actor, nn.Linear) and isinstance(last_critic, nn.Linear)
        nn.init.orthogonal_(last_actor.weight, gain=0.01)
        nn.init.orthogonal_(last_critic.weight, gain=1.0)
        self.log_std: nn.Parameter | None = None
        if spec.n_actions is None:
            self.log_std = nn.Parameter(torch.full((spec.act_dim,), float(log_std_init)))

    def _norm(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_rms.normalize(obs) if self.normalize_obs else obs

    def update_obs_stats(self, obs: torch.Tensor) -> None:
        if self.normalize_obs:
            self.obs_rms.update(obs)

    def distribution(self, obs: torch.Tensor) -> Distribution:
        """``pi(.|s)`` for a batch of observations ``(..., obs_dim)``."""
        out = self.actor(self._norm(obs))
        if self.log_std is None:
            return Categorical(logits=out)
        return Independent(Normal(out, self.log_std.exp().expand_as(out)), 1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """``V(s)``, shape ``obs.shape[:-1]``."""
        return self.critic(self._norm(obs)).squeeze(-1)

    # -- the optimiser core's policy protocol ---------------------------------

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions drawn from ``pi(.|obs)`` and their log-probs."""
        dist = self.distribution(obs)
        actions = dist.sample()
        return actions, dist.log_prob(actions)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log pi(a|s), entropy of pi(.|s))`` for given actions."""
        dist = self.distribution(obs)
        return dist.log_prob(actions), dist.entropy()

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions for an observation batch, as the env expects them (clipped to Box bounds)."""
        o = torch.as_tensor(obs, dtype=torch.float32)
        dist = self.distribution(o)
        if not deterministic:
            a = dist.sample()
        elif isinstance(dist, Categorical):
            a = dist.probs.argmax(-1)
        else:
            a = dist.mean
        return self.to_env(a.numpy())

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        if self.spec.n_actions is not None:
            return actions.astype(np.int64)
        assert self.spec.low is not None and self.spec.high is not None
        return np.clip(actions, self.spec.low, self.spec.high).astype(np.float32)

    def frozen_copy(self) -> ActorCritic:
        """A detached copy with gradients off, e.g. the base policy pi_phi."""
        base = copy.deepcopy(self)
        for p in base.parameters():
            p.requires_grad_(False)
        return base


EnvFactory = Callable[[], gym.Env[Any, Any]]


def make_vector_env(make_env: EnvFactory, n_envs: int) -> gym.vector.SyncVectorEnv:
    """Synchronous vector env with same-step autoreset (``final_obs`` in the info dict).

    Sync beats async on 2 cores for cheap envs, and same-step autoreset lets
    the rollout bootstrap truncated episodes from their real final observation.
    """
    return gym.vector.SyncVectorEnv(
        [make_env for _ in range(n_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )


@dataclass
class Rollout:
    """``T`` steps from ``N`` envs. All arrays are ``(T, N, ...)``.

    ``actions`` are what the policy sampled (for log-probs), ``env_actions`` what
    the env received (clipped); ``next_obs[t]`` is the true successor of
    ``obs[t]`` (the final observation where the episode ended at ``t``).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    env_actions: np.ndarray
    logp: torch.Tensor
    values: torch.Tensor
    next_values: torch.Tensor
    true_rewards: np.ndarray
    terminated: np.ndarray
    ended: np.ndarray
    episode_step: np.ndarray
    """Index of each step within its episode."""
    episode_returns: list[float]
    """True returns of the episodes that finished during the rollout."""

    @property
    def n_steps(self) -> int:
        return int(self.obs.shape[0] * self.obs.shape[1])


class RolloutCollector:
    """Steps a vector env with a policy, keeping the env state between calls."""

    def __init__(self, envs: gym.vector.VectorEnv[Any, Any, Any], seed: int) -> None:
        self.envs = envs
        obs, _ = envs.reset(seed=seed)
        self.obs = np.asarray(obs, dtype=np.float32)
        self.ep_step = np.zeros(envs.num_envs, dtype=np.int64)
        self.ep_return = np.zeros(envs.num_envs, dtype=np.float64)

    @torch.no_grad()
    def collect(self, policy: ActorCritic, n_steps: int, update_obs_stats: bool = True) -> Rollout:
        n_envs = self.envs.num_envs
        obs_buf, act_buf, env_act_buf, logp_buf, val_buf, next_val_buf = [], [], [], [], [], []
        rew_buf, term_buf, end_buf, step_buf = [], [], [], []
        finished: list[float] = []
        for _ in range(n_steps):
            obs_t = torch.as_tensor(self.obs)
            if update_obs_stats:
                policy.update_obs_stats(obs_t)
            actions, logp = policy.sample(obs_t)
            env_actions = policy.to_env(actions.numpy())
            next_obs, reward, terminated, truncated, info = self.envs.step(env_actions)
            next_obs = np.asarray(next_obs, dtype=np.float32)
            ended = np.logical_or(terminated, truncated)
            true_next = next_obs.copy()
            if ended.any():
                for i in np.flatnonzero(ended):
                    true_next[i] = info["final_obs"][i]
            obs_buf.append(obs_t)
            act_buf.append(actions)
            env_act_buf.append(env_actions)
            logp_buf.append(logp)
            val_buf.append(policy.value(obs_t))
            next_val_buf.append(policy.value(torch.as_tensor(true_next)))
            rew_buf.append(np.asarray(reward, dtype=np.float64))
            term_buf.append(np.asarray(terminated, dtype=bool))
            end_buf.append(ended)
            step_buf.append(self.ep_step.copy())
            self.ep_return += reward
            self.ep_step += 1
            for i in np.flatnonzero(ended):
                finished.append(float(self.ep_return[i]))
            self.ep_return[ended] = 0.0
            self.ep_step[ended] = 0
            self.obs = next_obs
        del n_envs
        return Rollout(
            obs=torch.stack(obs_buf),
            actions=torch.stack(act_buf),
            env_actions=np.stack(env_act_buf),
            logp=torch.stack(logp_buf),
            values=torch.stack(val_buf),
            next_values=torch.stack(next_val_buf),
            true_rewards=np.stack(rew_buf),
            terminated=np.stack(term_buf),
            ended=np.stack(end_buf),
            episode_step=np.stack(step_buf),
            episode_returns=finished,
        )


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
