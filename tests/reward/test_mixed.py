"""``reward/fit.fit_reward``: the learning-rate schedule."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from rlhfkit.experiments.kinds_eval import ask, fit_answers, make_setup
from rlhfkit.reward.config import RewardConfig


def _lrs_seen(monkeypatch: pytest.MonkeyPatch, config: RewardConfig, steps: int) -> list[float]:
    setup = make_setup("describe", seed=0, pool_size=80, test_size=40, test_pairs=100)
    queries, feedback = ask(setup, {"comparison": 40}, seed=0)
    seen: list[float] = []
    step = torch.optim.AdamW.step

    def spy(self: torch.optim.AdamW, *args: Any, **kwargs: Any) -> Any:
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    fit_answers(setup, queries, feedback, config, steps)
    return seen


def test_cosine_schedule_decays_to_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    config = RewardConfig(ensemble_size=1, batch_size=64, lr=0.01, lr_schedule="cosine")
    lrs = _lrs_seen(monkeypatch, config, steps=50)  # 40 comparisons: one step an epoch, 50 epochs
    assert len(lrs) == 50
    assert lrs[0] == pytest.approx(0.01)
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    assert lrs[-1] < 0.01 * 0.01
    assert lrs[25] == pytest.approx(0.005, rel=0.05)


def test_constant_schedule_keeps_the_rate_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    config = RewardConfig(ensemble_size=1, batch_size=64, lr=0.01)
    assert config.lr_schedule == "constant"
    lrs = _lrs_seen(monkeypatch, config, steps=20)
    assert lrs == [pytest.approx(0.01)] * 20


def test_schedule_is_checked() -> None:
    with pytest.raises(ValueError, match="lr_schedule"):
        RewardConfig(lr_schedule="linear")  # type: ignore[arg-type]
