"""Segment videos: the env is put back into each observed state and drawn as it draws itself."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlhfkit.app.media import HEIGHT, MediaCache, MediaError, encode, render_frames
from rlhfkit.types import Segment


def _live(env_id: str, steps: int, seed: int = 3) -> tuple[Segment, list[np.ndarray]]:
    """A random rollout with the env's own frames after each step (frame t shows observation t)."""
    env = gym.make(env_id, render_mode="rgb_array")
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    observations, actions, frames = [], [], [env.render()]
    for _ in range(steps):
        a = env.action_space.sample()
        observations.append(obs)
        actions.append(a)
        obs, *_ = env.step(a)
        frames.append(env.render())
    env.close()
    seg = Segment(np.array(observations), np.array(actions), np.zeros(steps), info={"env_id": env_id})
    return seg, frames[:steps]


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1", "Acrobot-v1", "MountainCarContinuous-v0"])
def test_replayed_frames_are_the_envs_own(env_id: str) -> None:
    seg, live = _live(env_id, 8)
    frames, fps, replay = render_frames(seg)
    assert replay and len(frames) == 8 and frames[0].shape[0] == HEIGHT and fps <= 30
    from rlhfkit.app.media import _scale

    for t in range(1, 8):  # frame 0 of a segment cannot know the torque that led there
        assert np.array_equal(frames[t], _scale(live[t])), f"{env_id} frame {t}"
    assert not np.array_equal(frames[1], frames[7])  # it moves


def test_mujoco_state_is_restored_from_observations() -> None:
    seg, _ = _live("Reacher-v5", 5)
    frames, _, replay = render_frames(seg)
    assert replay and len(frames) == 5 and frames[0].shape == (HEIGHT, HEIGHT, 3)
    assert frames[0].std() > 1.0 and not np.array_equal(frames[0], frames[4])


def test_unknown_layout_gets_an_observation_plot_and_unknown_env_an_error() -> None:
    seg = Segment(np.random.default_rng(0).normal(size=(6, 3)), np.zeros((6, 1)), np.zeros(6), info={})
    frames, _, replay = render_frames(seg)
    assert not replay and len(frames) == 6 and not np.array_equal(frames[0], frames[5])
    with pytest.raises(MediaError, match="unknown env id"):
        render_frames(seg, env_id="NoSuchEnv-v9")


def test_encoded_files_and_the_cache(tmp_path: Path) -> None:
    seg, _ = _live("Pendulum-v1", 6)
    frames, fps, _ = render_frames(seg)
    assert encode(frames, fps, "webm")[:4] == b"\x1a\x45\xdf\xa3"
    assert encode(frames, fps, "gif")[:6] == b"GIF89a"
    cache = MediaCache(tmp_path)
    first = cache.get("abc", seg, "webm")
    assert cache.get("abc", seg, "webm") == first and cache.renders == 1
    assert not list(tmp_path.glob(".render-*"))  # no temporary file left behind
    with pytest.raises(MediaError):
        cache.path("../etc/passwd", "webm")
