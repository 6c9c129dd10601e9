"""Tasks whose episodes end before a segment's length: shorter segments, a bounded sampler, a warning on no signal.

A fresh policy on InvertedPendulum, Hopper or Walker2d falls within a few steps; segments that never
crossed an episode's end never fit, and the sampler used to loop forever without a word. Here a toy
env stands in for them: every episode ends after :data:`HORIZON` steps, by a termination (it fell),
by a time limit, or with the same reward at every step (Acrobot-v1's -1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhfkit.config import ConfigError, load_config
from rlhfkit.domains.control import segments_from_rollout
from rlhfkit.loop import NoSignalWarning, Run
from rlhfkit.models.control import ActorCritic, RolloutCollector, SpaceSpec, make_vector_env
from rlhfkit.reward.nets import RewardEnsemble
from rlhfkit.reward.segment_model import SegmentRewardModel

HORIZON = 5
"""Steps in every episode of the toy env; the runs below ask for segments of :data:`SEGMENT` steps."""
SEGMENT = 20
MIN_GAIN = 1.5
"""Least rise of the true return per episode over the base policy's (at most 5: the action, in [-1, 1], per step)."""


class ShortLived(gym.Env[np.ndarray, np.ndarray]):
    """Episodes of HORIZON steps; the reward is the action (push up), or -1 whatever is done (``constant``)."""

    def __init__(self, end: str = "terminated", constant: bool = False) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.end, self.constant, self.t = end, constant, 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t / HORIZON, 0.5], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        reward = -1.0 if self.constant else float(np.clip(action[0], -1.0, 1.0))
        over = self.t >= HORIZON
        return self._obs(), reward, over and self.end == "terminated", over and self.end == "truncated", {}


ENVS = {
    "falls": {"end": "terminated"},
    "time-limit": {"end": "truncated"},
    "same-reward": {"end": "terminated", "constant": True},
}
for _name, _kwargs in ENVS.items():
    gym.register(id=f"rlhfkit-test/{_name}-v0", entry_point=ShortLived, kwargs=_kwargs)

RUN = f"""
task = "env:rlhfkit-test/{{env}}-v0"
rounds = {{rounds}}
seed = 0

[feedback]
initial_comparisons = 24
comparisons_per_round = 12

[reward]
ensemble_size = 2
epochs = 20

[control]
env_steps_per_round = 4096
eval_episodes = 4
segment_length = {SEGMENT}

[control.ppo]
n_envs = 2
n_steps = 256
"""


def _config(tmp_path: Path, env: str, rounds: int = 1) -> Path:
    path = tmp_path / f"{env}.toml"
    path.write_text(RUN.format(env=env, rounds=rounds), encoding="utf-8")
    return path


def _rollout(env: str) -> Any:
    envs = make_vector_env(lambda: gym.make(f"rlhfkit-test/{env}-v0"), 2)
    policy = ActorCritic(SpaceSpec.of(envs.single_observation_space, envs.single_action_space, ""), (8,))
    return RolloutCollector(envs, 0).collect(policy, 4 * SEGMENT, update_obs_stats=False)


def test_an_episode_that_ends_in_the_window_is_a_shorter_segment_only_if_it_terminated() -> None:
    segments = segments_from_rollout(_rollout("falls"), SEGMENT)
    assert len(segments) == 2 * 4 * SEGMENT // HORIZON  # every episode, whole
    assert {len(s) for s in segments} == {HORIZON} and all(s.info["episode_step"] == 0 for s in segments)
    assert segments_from_rollout(_rollout("time-limit"), SEGMENT) == []  # a cut-off future is not compared


def test_segments_of_different_lengths_are_summed_over_their_own_steps() -> None:
    full = segments_from_rollout(_rollout("falls"), HORIZON - 2)  # episodes longer than the window: full ones
    short = segments_from_rollout(_rollout("falls"), SEGMENT)
    model = SegmentRewardModel(RewardEnsemble(2, 1, None, 2, (8,)))
    mixed = model.encode([full[0], short[0]])
    assert mixed[0].shape[:2] == (2, HORIZON) and mixed[2].sum(-1).tolist() == [HORIZON - 2, HORIZON]
    with torch.no_grad():
        alone = torch.cat([model.returns(model.encode([s])) for s in (full[0], short[0])], dim=1)
        torch.testing.assert_close(model.returns(mixed), alone)  # the padding adds nothing
    assert model.units(mixed, torch.arange(2)).tolist() == [HORIZON - 2, HORIZON]


@pytest.mark.slow
def test_a_task_whose_episodes_end_before_a_segment_learns(tmp_path: Path) -> None:
    run = Run.create(load_config(_config(tmp_path, "falls", rounds=3)), tmp_path / "run", progress=False)
    history = run.run()
    lengths = {len(g.content) for g in run.store.generations().values()}
    returns = [round(h["true_return"], 2) for h in history]
    print(f"segment lengths {sorted(lengths)}; true return by round {returns}")
    assert lengths == {HORIZON}
    assert history[-1]["true_return"] >= history[0]["true_return"] + MIN_GAIN


def test_segments_that_can_never_fit_stop_with_one_error_naming_the_option(tmp_path: Path) -> None:
    run = Run.create(load_config(_config(tmp_path, "time-limit")), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match=rf"control\.segment_length = {SEGMENT}: .* after {HORIZON} steps on average"):
        run.run()


def test_answers_that_are_all_ties_are_warned_about(tmp_path: Path) -> None:
    run = Run.create(load_config(_config(tmp_path, "same-reward")), tmp_path / "run", progress=False)
    with pytest.warns(NoSignalWarning, match="every one of the 24 stored comparisons is a tie or skipped"):
        run.run()
