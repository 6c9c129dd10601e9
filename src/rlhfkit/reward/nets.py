"""Reward networks for control: a per-step MLP ``r(s, a)`` and ensembles of it.

Following Christiano et al. (2017), the reward of a segment is the sum of
per-step rewards, ``r(x) = sum_t r(s_t, a_t)``, so one network scores single
steps (for the policy optimiser) and whole segments (for the preference loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from rlhfkit.nets import mlp


class StepFeatures(nn.Module):
    """Turns ``(obs, act)`` into a normalised feature vector.

    Discrete actions (integer, shape ``(...,)``) become one-hot vectors of size
    ``n_actions``. Features are standardised with a mean and std kept as buffers,
    set from data by :meth:`set_stats` (so they travel with the checkpoint).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, obs_dim: int, act_dim: int, n_actions: int | None = None, use_action: bool = True) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.n_actions = n_actions
        self.use_action = use_action
        self.dim = obs_dim + ((n_actions if n_actions is not None else act_dim) if use_action else 0)
        self.register_buffer("mean", torch.zeros(self.dim))
        self.register_buffer("std", torch.ones(self.dim))

    def raw(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        if not self.use_action:
            return obs
        if self.n_actions is not None:
            act = nn.functional.one_hot(act.long().reshape(obs.shape[:-1]), self.n_actions).to(obs.dtype)
        else:
            act = act.reshape(*obs.shape[:-1], self.act_dim).to(obs.dtype)
        return torch.cat([obs, act], dim=-1)

    def set_stats(self, obs: torch.Tensor, act: torch.Tensor) -> None:
        x = self.raw(obs, act).reshape(-1, self.dim)
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp_min(1e-3) if x.shape[0] > 1 else torch.ones(self.dim))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return (self.raw(obs, act) - self.mean) / self.std


class RewardEnsemble(nn.Module):
    """K per-step MLPs sharing one feature normaliser.

    ``forward(obs, act)`` returns per-member step rewards of shape ``(K, ...)``
    for inputs of shape ``(..., obs_dim)``; :meth:`step_reward` the ensemble mean
    (what the policy optimises) and :meth:`segment_returns` per-member sums over
    the time axis. With ``K = 1`` this is the plain per-step MLP.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        n_actions: int | None = None,
        size: int = 3,
        hidden: Sequence[int] = (64, 64),
        use_action: bool = True,
    ) -> None:
        super().__init__()
        self.features = StepFeatures(obs_dim, act_dim, n_actions, use_action)
        self.members = nn.ModuleList(mlp(self.features.dim, hidden, 1) for _ in range(size))

    @property
    def size(self) -> int:
        return len(self.members)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        x = self.features(obs, act)
        return torch.stack([m(x).squeeze(-1) for m in self.members])

    def segment_returns(self, obs: torch.Tensor, act: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(K, N)`` returns of ``N`` segments given obs ``(N, T, obs_dim)``; ``mask`` ``(N, T)``: the steps that count
        (0 on a shorter segment's padding)."""
        rewards = self(obs, act)
        return (rewards if mask is None else rewards * mask).sum(-1)

    @torch.no_grad()
    def step_reward(self, obs: np.ndarray | torch.Tensor, act: np.ndarray | torch.Tensor) -> np.ndarray:
        """Ensemble-mean reward per step, as a float64 numpy array of shape ``obs.shape[:-1]``."""
        o = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        a = torch.as_tensor(np.asarray(act))
        if self.features.n_actions is None:
            a = a.float()
        return self(o, a).mean(0).double().numpy()
