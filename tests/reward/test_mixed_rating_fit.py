"""The fit's rating term: profiled (scale-free) by default, learned calibration on request."""

from __future__ import annotations

import pytest
import torch

from rlhfkit.reward.calibration import Calibration, kind_terms
from rlhfkit.reward.config import RewardConfig
from rlhfkit.reward.fit_data import FitData


def _ratings_data() -> tuple[FitData, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    n = 30
    true = torch.randn(n, generator=g)
    who = torch.arange(n) % 2
    y = (torch.where(who == 0, true, 0.6 * true + 0.3) + 0.1 * torch.randn(n, generator=g)).clamp(-1, 1)
    data = FitData(items=[None] * n, rating=(torch.arange(n), y, who), annotators=["a", "b"], counts={"rating": n})  # type: ignore[list-item]
    return data, true


def test_default_rating_term_does_not_pull_the_rewards_scale_or_level() -> None:
    assert RewardConfig().rating_fit == "profile"
    data, true = _ratings_data()
    cal = Calibration(data)
    batch = {"rating": torch.arange(30)}

    def loss(scores: torch.Tensor, rating_fit: str) -> float:
        terms = kind_terms(data, cal, lambda idx: scores[None, idx], batch, rating_fit)
        return float(terms["rating"].loss.detach())

    # A ranking-scaled reward (x 20) costs the profiled rating term nothing ...
    assert loss(20 * true + 5, "profile") == pytest.approx(loss(true, "profile"), abs=1e-5)
    # ... while learned calibration parameters at their start (a_j = 1, b_j = 0) punish it heavily.
    assert loss(20 * true + 5, "learned") > loss(true, "learned") + 100


def test_rating_fit_is_checked() -> None:
    with pytest.raises(ValueError, match="rating_fit"):
        RewardConfig(rating_fit="tobit")  # type: ignore[arg-type]
