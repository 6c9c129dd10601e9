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

Encoded = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""Observations ``(N, T, obs_dim)``, actions ``(N, T, ...)`` and a step mask ``(N, T)`` of ``N`` segments, ``T`` the
longest: a shorter segment (its episode terminated inside the window) is padded with zeros that the mask leaves
out."""


class SegmentRewardModel(nn.Module):
    """A :class:`~rlhfkit.reward.nets.RewardEnsemble` as a reward model of whole segments.

    ``discrete``: actions are integer indices (one-hot encoded by the ensemble's features).
    ``recency``: a stated myopia of the person judging (``RewardConfig.recency_discount``): in the fit a
    segment's return weighs its step t of T by ``recency ** (T - 1 - t)``, the latest step by 1, as the
    person is believed to; the per-step reward the policy optimises is unchanged. 1 = the plain sum.
    """

    def __init__(self, ensemble: RewardEnsemble, discrete: bool = False, recency: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < recency <= 1.0:
            raise ValueError(f"recency must be in (0, 1], got {recency}")
        self.ensemble = ensemble
        self.discrete = discrete
        self.recency = recency

    @property
    def size(self) -> int:
        return self.ensemble.size

    def encode(self, items: Sequence[Content]) -> Encoded:
        segs = [x for x in items if isinstance(x, Segment)]
        if len(segs) != len(items):
            raise TypeError("a SegmentRewardModel scores control segments only")
        T = max((len(s) for s in segs), default=0)
        obs = np.stack([_padded(np.asarray(s.observations, dtype=np.float32), T) for s in segs])
        act = np.stack([_padded(np.asarray(s.actions), T) for s in segs])
        mask = torch.zeros((len(segs), T))
        for i, s in enumerate(segs):
            mask[i, : len(s)] = 1.0
        act_t = torch.as_tensor(act)
        return torch.as_tensor(obs), (act_t.long() if self.discrete else act_t.float()), mask

    def set_stats(self, encoded: Encoded) -> None:
        """Standardise the step features with the mean and std of every real (unpadded) step of ``encoded``."""
        obs, act, mask = encoded
        real = mask.flatten().bool()
        self.ensemble.features.set_stats(obs.flatten(0, 1)[real], act.flatten(0, 1)[real])

    def returns(self, encoded: Encoded, idx: torch.Tensor | None = None) -> torch.Tensor:
        """``(K, n)`` segment returns of the rows ``idx`` (all when None): the per-step rewards summed over each
        segment's own steps, each weighted by ``recency ** (steps after it)``."""
        obs, act, mask = encoded
        if idx is not None:
            obs, act, mask = obs[idx], act[idx], mask[idx]
        return self.ensemble.segment_returns(
            obs, act, mask if self.recency == 1.0 else _recency_weights(mask, self.recency)
        )

    def features(self, encoded: Encoded) -> torch.Tensor:
        """``(N, T * dim)``: each segment's standardised step features, flattened over time (the ensemble's input; 0
        on a shorter segment's padding).

        Where query selection spreads segments out (k-center, ``feedback/selection.py``); B-Pref uses the raw
        flattened states.
        """
        obs, act, mask = encoded
        return (self.ensemble.features(obs, act) * mask.unsqueeze(-1)).flatten(1)  # a shorter segment's padding: 0

    def units(self, encoded: Encoded, idx: torch.Tensor) -> torch.Tensor:
        """Steps in each segment ``idx``: the reward centering pins the mean reward *per step*."""
        return encoded[2][idx].sum(-1)


def _recency_weights(mask: torch.Tensor, recency: float) -> torch.Tensor:
    """``(N, T)``: ``recency ** (steps after t in its own segment)`` on each segment's real steps, 0 on padding."""
    after = (mask.sum(-1, keepdim=True) - 1 - torch.arange(mask.shape[-1])).clamp(min=0)
    return recency**after * mask


def _padded(steps: np.ndarray, length: int) -> np.ndarray:
    """``steps`` (its first axis the time) followed by zeros up to ``length`` steps."""
    if len(steps) == length:
        return steps
    pad = np.zeros((length - len(steps), *steps.shape[1:]), dtype=steps.dtype)
    return np.concatenate([steps, pad])
