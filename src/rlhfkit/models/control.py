"""The control policy and its rollouts in gymnasium vector environments.

A control policy is an actor-critic MLP: a Gaussian with a state-independent
log std for Box actions, a categorical for Discrete actions. It implements the
optimiser core's policy protocol (``sample`` with log-probs, ``log_prob`` of
given actions), so the same PPO update trains it and a language model.
:class:`RolloutCollector` steps a vector env with it and keeps what PPO needs
(log-probs, values, episode ends), as :class:`~rlhfkit.models.text.TextPolicy`
samples completions with their log-probs.
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
