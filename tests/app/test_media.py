"""Segment videos: the env is put back into each observed state and drawn as it draws itself."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlhfkit.app.media import HEIGHT, MediaBusyError, MediaCache, MediaError, encode, render_frames
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


def test_a_symlink_in_the_cache_is_rendered_over_never_followed(tmp_path: Path) -> None:
    seg, _ = _live("Pendulum-v1", 4)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for annotators")
    cache = MediaCache(tmp_path / "media")
    (tmp_path / "media").mkdir()
    link = tmp_path / "media" / "abc.gif"
    link.symlink_to(secret)
    assert cache.cached("abc", "gif") is None
    path = cache.get("abc", seg, "gif")
    assert path == link and not path.is_symlink() and path.read_bytes()[:6] == b"GIF89a"
    assert secret.read_text() == "not for annotators" and cache.renders == 1


def test_renders_beyond_the_queue_limit_are_refused_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from rlhfkit.app import media

    seg, _ = _live("Pendulum-v1", 3)
    started, release = threading.Event(), threading.Event()
    real = media.render_frames

    def slow(segment: Segment) -> tuple[list[np.ndarray], float, bool]:
        started.set()
        assert release.wait(30)
        return real(segment)

    monkeypatch.setattr(media, "render_frames", slow)
    cache = MediaCache(tmp_path)
    worker = threading.Thread(target=cache.get, args=("first", seg, "gif"), kwargs={"queue_limit": 1})
    worker.start()
    assert started.wait(30)
    with pytest.raises(MediaBusyError):
        cache.get("second", seg, "gif", queue_limit=1)
    release.set()
    worker.join(30)
    assert cache.get("second", seg, "gif", queue_limit=1).is_file() and cache.renders == 2


def test_rendering_prints_no_runtime_dir_warning(tmp_path: Path) -> None:
    """SDL complained "XDG_RUNTIME_DIR is invalid or not set" on every classic-control render."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from rlhfkit.app.media import render_frames\n"
        "from rlhfkit.types import Segment\n"
        "obs = np.stack([np.cos(np.linspace(0, 1, 4)), np.sin(np.linspace(0, 1, 4)), np.zeros(4)], axis=1)\n"
        "seg = Segment(obs, np.zeros((4, 1)), np.zeros(4), info={'env_id': 'Pendulum-v1'})\n"
        "for _ in range(2):\n"
        "    frames, _, replay = render_frames(seg)\n"
        "    assert replay and len(frames) == 4\n"
        "print('rendered')\n"
    )
    import rlhfkit

    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "SDL_VIDEODRIVER")}
    env["PYTHONPATH"] = str(Path(rlhfkit.__file__).parents[1])  # this checkout's rlhfkit, whatever the folder
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0 and "rendered" in r.stdout, r.stderr
    assert "XDG_RUNTIME_DIR" not in r.stderr, r.stderr
