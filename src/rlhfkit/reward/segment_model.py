"""The control reward model in the fit: the per-step MLP ensemble, summed over each segment.

Following Christiano et al. (2017), a segment's return is the sum of per-step
rewards, ``r(x) = sum_t r(s_t, a_t)``: one network (``reward/nets.py``) scores
single steps for the policy optimiser and whole segments for the fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from rlhfkit.reward.nets import RewardEnsemble
from rlhfkit.types import Content, Segment

Encoded = tuple[torch.Tensor, torch.Tensor]
"""Observations ``(N, T, obs_dim)`` and actions ``(N, T, ...)`` of ``N`` segments of one length ``T``."""


class SegmentRewardModel(nn.Module):
    """A :class:`~rlhfkit.reward.nets.RewardEnsemble` as a reward model of whole segments.

    ``discrete``: actions are integer indices (one-hot encoded by the ensemble's features).
    """

    def __init__(self, ensemble: RewardEnsemble, discrete: bool = False) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.discrete = discrete

    @property
    def size(self) -> int:
        return self.ensemble.size

    def encode(self, items: Sequence[Content]) -> Encoded:
        segs = [x for x in items if isinstance(x, Segment)]
        if len(segs) != len(items):
            raise TypeError("a SegmentRewardModel scores control segments only")
        lengths = {len(s) for s in segs}
        if len(lengths) > 1:
            raise ValueError(f"segments in one fit must share a length, got lengths {sorted(lengths)}")
        obs = torch.as_tensor(np.stack([s.observations for s in segs]), dtype=torch.float32)
        act = torch.as_tensor(np.stack([s.actions for s in segs]))
        return obs, (act.long() if self.discrete else act.float())

    def set_stats(self, encoded: Encoded) -> None:
        """Standardise the step features with the mean and std of every step of ``encoded``."""
        obs, act = encoded
        self.ensemble.features.set_stats(obs.flatten(0, 1), act.flatten(0, 1))

    def returns(self, encoded: Encoded, idx: torch.Tensor | None = None) -> torch.Tensor:
        """``(K, n)`` segment returns of the rows ``idx`` (all when None)."""
        obs, act = encoded
        if idx is not None:
            obs, act = obs[idx], act[idx]
        return self.ensemble.segment_returns(obs, act)

    def features(self, encoded: Encoded) -> torch.Tensor:
        """``(N, T * dim)``: each segment's standardised step features, flattened over time (the ensemble's input).

        Where query selection spreads segments out (k-center, ``feedback/selection.py``); B-Pref uses the raw
        flattened states.
        """
        obs, act = encoded
        return self.ensemble.features(obs, act).flatten(1)

    def units(self, encoded: Encoded, idx: torch.Tensor) -> torch.Tensor:
        """Steps in each segment ``idx``: the reward centering pins the mean reward *per step*."""
        return torch.full((len(idx),), float(encoded[0].shape[1]))
