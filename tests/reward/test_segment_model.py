"""The control reward model's segment returns: the plain sum and a stated recency discount."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rlhfkit.reward.config import RewardConfig
from rlhfkit.reward.nets import RewardEnsemble
from rlhfkit.reward.segment_model import SegmentRewardModel
from rlhfkit.types import Segment


def _segments(lengths: list[int]) -> list[Segment]:
    rng = np.random.default_rng(0)
    return [
        Segment(
            observations=rng.normal(size=(n, 3)).astype(np.float32),
            actions=rng.normal(size=(n, 1)).astype(np.float32),
            true_rewards=np.zeros(n),
        )
        for n in lengths
    ]


@pytest.mark.parametrize("recency", [1.0, 0.9, 0.5])
def test_a_segments_return_weighs_each_step_by_recency_to_the_steps_after_it(recency: float) -> None:
    torch.manual_seed(0)
    model = SegmentRewardModel(RewardEnsemble(3, 1, None, size=2, hidden=(8,)), recency=recency)
    segs = _segments([5, 3])  # the second is padded to 5 steps: its own last step weighs 1
    got = model.returns(model.encode(segs))
    for i, s in enumerate(segs):
        with torch.no_grad():
            obs, act = (torch.tensor(np.asarray(a), dtype=torch.float32)[None] for a in (s.observations, s.actions))
            r = model.ensemble(obs, act)[:, 0]  # (K, T)
        n = len(s)
        weights = torch.tensor([recency ** (n - 1 - t) for t in range(n)])
        torch.testing.assert_close(got[:, i], (r * weights).sum(-1))


def test_the_recency_discount_is_checked() -> None:
    with pytest.raises(ValueError, match=r"recency_discount.*in \(0, 1\]"):
        RewardConfig(recency_discount=0.0)
    with pytest.raises(ValueError, match=r"recency must be in \(0, 1\]"):
        SegmentRewardModel(RewardEnsemble(3, 1, None, size=1), recency=1.5)


def test_a_control_runs_reward_model_takes_the_configs_recency_discount(tmp_path: Path) -> None:
    from rlhfkit.domains.base import DomainContext
    from rlhfkit.domains.control import ControlConfig, ControlDomain
    from rlhfkit.optimize.kl import KLConfig

    ctx = DomainContext("pendulum", 0, 1, RewardConfig(ensemble_size=1, recency_discount=0.8), KLConfig(), tmp_path)
    assert ControlDomain(ctx, ControlConfig()).reward_model().recency == 0.8
