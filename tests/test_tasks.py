"""Tests for rlhfkit.tasks: true rewards agree with the environments, and task lookup errors."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhfkit.tasks import TASKS, UnknownTaskError, cartpole_true, get_task, pendulum_true


def _pendulum_rollout(actions: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Observations before each step and the env's own rewards."""
    env = gym.make("Pendulum-v1")
    try:
        obs, _ = env.reset(seed=seed)
        obs_before, rewards = [], []
        for a in actions:
            obs_before.append(np.asarray(obs, dtype=np.float64))
            obs, r, terminated, truncated, _ = env.step(a)
            rewards.append(float(r))
            if terminated or truncated:
                obs, _ = env.reset()
    finally:
        env.close()
    return np.stack(obs_before), np.asarray(rewards)


def test_pendulum_true_equals_env_reward() -> None:
    rng = np.random.default_rng(0)
    actions = rng.uniform(-2.0, 2.0, size=(300, 1)).astype(np.float32)
    obs, env_rewards = _pendulum_rollout(actions, seed=3)
    assert np.ptp(env_rewards) > 1.0  # the rollout covers a range of states
    # step by step
    for o, a, r in zip(obs, actions, env_rewards, strict=True):
        assert float(pendulum_true(o[None], a[None])[0]) == pytest.approx(r, abs=1e-4)
    # and batched over the whole rollout
    np.testing.assert_allclose(pendulum_true(obs, actions), env_rewards, atol=1e-4, rtol=0)


def test_pendulum_true_clips_torque_like_the_env() -> None:
    rng = np.random.default_rng(1)
    actions = rng.uniform(-6.0, 6.0, size=(100, 1)).astype(np.float32)
    assert np.abs(actions).max() > 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the env checker warns about out-of-bounds actions
        obs, env_rewards = _pendulum_rollout(actions, seed=4)
    np.testing.assert_allclose(pendulum_true(obs, actions), env_rewards, atol=1e-4, rtol=0)


def test_pendulum_true_by_hand() -> None:
    # theta = pi/2 (cos 0, sin 1), thetadot = 2, u = 1: -(pi^2/4 + 0.1 * 4 + 0.001)
    r = pendulum_true(np.array([[0.0, 1.0, 2.0]]), np.array([[1.0]]))
    assert r.shape == (1,)
    assert r[0] == pytest.approx(-(np.pi**2 / 4 + 0.4 + 0.001), abs=1e-12)
    # shapes: (N, T, 3) observations with (N, T, 1) or (N, T) actions
    obs = np.zeros((2, 5, 3))
    obs[..., 0] = 1.0
    assert pendulum_true(obs, np.zeros((2, 5, 1))).shape == (2, 5)
    assert pendulum_true(obs, np.zeros((2, 5))).shape == (2, 5)


def test_cartpole_env_reports_true_reward() -> None:
    env = get_task("cartpole").make_env()
    try:
        obs, _ = env.reset(seed=0)
        for _ in range(20):
            before = np.asarray(obs)
            a = env.action_space.sample()
            obs, r, terminated, truncated, _ = env.step(a)
            assert r == pytest.approx(float(cartpole_true(before[None], np.array([a]))[0]), abs=1e-12)
            assert r != 1.0  # not CartPole's own +1 per step
            if terminated or truncated:
                break
    finally:
        env.close()


def test_builtin_tasks() -> None:
    assert set(TASKS) == {"pendulum", "cartpole", "reacher", "halfcheetah"}
    t = get_task("pendulum")
    assert t.env_id == "Pendulum-v1"
    assert t.true_reward is None  # the env's own reward
    assert t.proxy_reward is not None


def test_unknown_task_suggests_close_name() -> None:
    with pytest.raises(UnknownTaskError, match="did you mean pendulum") as e:
        get_task("pendulm")
    assert "env:<gymnasium id>" in str(e.value)


def test_unknown_task_without_close_name() -> None:
    with pytest.raises(UnknownTaskError) as e:
        get_task("zzzzqqq")
    assert "did you mean" not in str(e.value)
    assert "pendulum, cartpole" in str(e.value)


def test_unknown_env_id_suggests_close_id() -> None:
    with pytest.raises(UnknownTaskError, match="Pendulum-v1"):
        get_task("env:Pendulm-v1")


def test_env_task() -> None:
    t = get_task("env:CartPole-v1")
    assert (t.name, t.env_id, t.true_reward, t.proxy_reward) == ("env:CartPole-v1", "CartPole-v1", None, None)
    env = t.make_env()
    try:
        env.reset(seed=0)
        _, r, *_ = env.step(0)
        assert r == 1.0  # the env's own reward
    finally:
        env.close()


def test_unknown_task_error_is_value_error() -> None:
    assert issubclass(UnknownTaskError, ValueError)


@pytest.mark.parametrize("name", ["pendulum", "cartpole", "reacher", "halfcheetah"])
def test_every_builtin_task_steps_and_its_proxy_scores_a_segment(name: str) -> None:
    from rlhfkit.domains.control import segments_from_rollout
    from rlhfkit.models.control import ActorCritic, RolloutCollector, SpaceSpec, make_vector_env

    task = get_task(name)
    envs = make_vector_env(task.make_env, 2)
    spec = SpaceSpec.of(envs.single_observation_space, envs.single_action_space, task.env_id)
    torch.manual_seed(0)  # the policy's initial weights, not whatever the tests before left in torch's generator
    # Enough steps that some episode of a young policy outlasts a segment (CartPole's often end after ~20 steps).
    ro = RolloutCollector(envs, 0).collect(ActorCritic(spec), 4 * (task.segment_length + 5))
    envs.close()
    segments = segments_from_rollout(ro, task.segment_length, task.env_id)
    # an episode that terminates inside a window (a pole that falls) gives a shorter segment, ending at the fall
    assert segments and all(len(s) <= task.segment_length for s in segments)
    full = [s for s in segments if len(s) == task.segment_length]
    assert full and task.proxy_reward is not None
    proxy = task.proxy_reward(full[0].observations, full[0].actions)
    assert proxy.shape == (task.segment_length,) and np.all(np.isfinite(proxy))
    # The proxy is a different objective from the true reward, not a rescaling of it.
    true = full[0].true_rewards
    assert not np.allclose(proxy, true)


def test_every_task_tells_people_what_better_means() -> None:
    """Each built-in task has instructions for people (the default of feedback.instructions); any gymnasium id too."""
    for task in TASKS.values():
        assert len(task.instructions) > 80, task.name
    assert "Pendulum-v1" in get_task("env:Pendulum-v1").instructions
