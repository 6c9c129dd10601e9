"""Unsupervised exploration before feedback (PEBBLE): the state-entropy reward and what it does to a policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rlhfkit.config import ConfigError, load_config
from rlhfkit.domains.control import probe_spec
from rlhfkit.loop import Run, seed_everything
from rlhfkit.models.control import ActorCritic, RolloutCollector, make_vector_env
from rlhfkit.optimize.ppo.explore import explore, knn_distances, state_entropy_reward
from rlhfkit.optimize.ppo.loss import PPOConfig
from rlhfkit.tasks import get_task


def test_knn_distances_are_to_the_kth_nearest_other_state() -> None:
    points = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])
    # nearest other point of each: 1, 1, 2, 3, 4; second nearest: 3, 2, 3, 4, 7
    np.testing.assert_allclose(knn_distances(points, k=1), [1, 1, 2, 3, 4])
    np.testing.assert_allclose(knn_distances(points, k=2), [3, 2, 3, 4, 7])
    with pytest.raises(ValueError, match="the 5-th nearest neighbour needs more than 5 states, got 5"):
        knn_distances(points, k=5)


def test_the_reward_is_log_one_plus_the_distance_for_every_step_of_every_env() -> None:
    obs = np.array([[[0.0, 0.0], [0.0, 3.0]], [[4.0, 0.0], [4.0, 3.0]]])  # (T=2, N=2, 2): a 3-4-5 rectangle
    r = state_entropy_reward(obs, np.zeros((2, 2, 1)), k=2)
    assert r.shape == (2, 2)
    np.testing.assert_allclose(r, np.log1p(4.0))  # every corner: neighbours at 3 and 4


def _spread(policy: ActorCritic, task_name: str) -> tuple[float, float]:
    """The states of 4 x 1,024 steps of the policy: their particle entropy (mean log(1 + 5-NN distance), over the
    first 256 steps of each env) and their mean absolute angular speed (Pendulum's third observation)."""
    task = get_task(task_name)
    envs = make_vector_env(task.make_env, 4)
    try:
        ro = RolloutCollector(envs, 123).collect(policy, 1024, update_obs_stats=False)
    finally:
        envs.close()
    obs = ro.obs.numpy()
    return float(np.mean(np.log1p(knn_distances(obs[:256].reshape(-1, 3))))), float(np.abs(obs[..., 2]).mean())


def test_exploration_spreads_a_fresh_policys_states() -> None:
    torch.set_num_threads(1)
    task = get_task("pendulum")
    ppo = PPOConfig(**task.defaults["control"]["ppo"])  # the settings a pendulum run's PPO takes
    seed_everything(0)
    policy = ActorCritic(probe_spec(task), ppo.hidden, ppo.log_std_init, ppo.normalize_obs)
    fresh = ActorCritic(probe_spec(task), ppo.hidden, ppo.log_std_init, ppo.normalize_obs)
    fresh.load_state_dict(policy.state_dict())
    assert explore(policy, task.make_env, ppo, 32768, seed=2) == 32768
    (entropy_before, speed_before), (entropy_after, speed_after) = (
        _spread(fresh, "pendulum"),
        _spread(policy, "pendulum"),
    )
    # measured with seed_everything(0), (1), (2): entropy 0.252 -> 0.289, 0.215 -> 0.262, 0.229 -> 0.268;
    # mean |speed| 2.63 -> 3.59, 2.66 -> 3.43, 2.57 -> 3.29
    assert entropy_after >= entropy_before + 0.02
    assert speed_after >= speed_before + 0.3


def test_a_run_explores_before_its_first_queries_and_counts_the_steps(tiny_config: Path, tmp_path: Path) -> None:
    text = tiny_config.read_text().replace("segment_length = 25\n", "segment_length = 25\nexplore_steps = 1024\n")
    with_explore = tmp_path / "explore.toml"
    with_explore.write_text(text)
    steps = {}
    for name, path in (("plain", tiny_config), ("explore", with_explore)):
        history = Run.create(load_config(path), tmp_path / name, progress=False).run()
        steps[name] = [int(h["env_steps"]) for h in history]
    assert steps["explore"][0] == steps["plain"][0] == 0
    assert steps["explore"][1] - steps["plain"][1] == 1024  # the same sampling and PPO, plus the exploration


def test_a_negative_exploration_budget_is_refused_by_name(tiny_config: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        tiny_config.read_text().replace("segment_length = 25\n", "segment_length = 25\nexplore_steps = -1\n")
    )
    with pytest.raises(ConfigError, match="explore_steps"):
        load_config(bad)
