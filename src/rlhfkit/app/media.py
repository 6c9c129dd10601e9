"""Control segments as short videos (WebM) or animated images (GIF), rendered once and cached.

A stored :class:`~rlhfkit.types.Segment` holds observations, not pixels. To show
it, the segment's environment is created with ``render_mode="rgb_array"`` and,
for every step, put into the state the observation describes, then rendered:
the frames are the environment's own drawing of that state.

Which envs can be put back into a state from an observation:

- classic control: Pendulum (angle from cos/sin, the last torque drawn as the
  env draws it), CartPole, MountainCar (both), Acrobot (angles from cos/sin);
- MuJoCo envs whose observation starts with ``qpos[k:]`` followed by ``qvel``
  (HalfCheetah, Hopper, Walker2d, Swimmer, Ant, ...; ``k`` is found by checking
  a reset observation against the simulator state), and Reacher. The ``k``
  excluded root coordinates are not observed, so they are held at their reset
  value: the body moves in place instead of across the floor.

Any other env gets an animated plot of its observation traces, labelled as such.

Frame rate: the env's ``render_fps``, at most :data:`MAX_FPS` so that a person
can follow fast simulators. Frames are scaled to :data:`HEIGHT` pixels high.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rlhfkit.types import Segment

os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering; must be set before mujoco loads

MediaFormat = Literal["webm", "gif"]
FORMATS: dict[str, str] = {"webm": "video/webm", "gif": "image/gif"}
MAX_FPS = 30
HEIGHT = 240
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Frame = np.ndarray  # (H, W, 3) uint8

_RENDER_LOCK = threading.Lock()
"""One render at a time: env renderers (pygame, MuJoCo's GL context) are not safe to
use, or even to import, from two threads at once."""


class MediaError(ValueError):
    """A segment that cannot be rendered (no env id, unknown env)."""


class MediaBusyError(RuntimeError):
    """Too many renders are running or waiting; ask again in a moment."""


def _private_runtime_dir() -> None:
    """Give SDL (pygame, which classic-control envs draw with) a runtime folder when the session has none.

    Without ``XDG_RUNTIME_DIR`` SDL prints "XDG_RUNTIME_DIR is invalid or not set"
    on every ``pygame.init()``, i.e. on every render. The folder it gets is this
    user's own (mode 0700), as a login session's would be. SDL writes nothing there,
    but the variable is set for the whole process: programs it starts later inherit
    it (a browser keeps its settings under ``dconf/`` there).
    """
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    path = Path(tempfile.gettempdir()) / f"rlhfkit-runtime-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
        if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o077:
            path = Path(tempfile.mkdtemp(prefix="rlhfkit-runtime-"))
    except OSError:
        return  # only a warning line is at stake
    os.environ["XDG_RUNTIME_DIR"] = str(path)


# -- putting an env into the state an observation describes -------------------------


def _angle(c: float, s: float) -> float:
    return math.atan2(s, c)


def _restore_pendulum(env: Any, obs: np.ndarray, prev_action: np.ndarray | None) -> None:
    env.state = np.array([_angle(obs[0], obs[1]), obs[2]])
    env.last_u = (
        None if prev_action is None else float(np.clip(np.ravel(prev_action)[0], -env.max_torque, env.max_torque))
    )


def _restore_state_is_obs(env: Any, obs: np.ndarray, prev_action: np.ndarray | None) -> None:
    env.state = np.array(obs, dtype=np.float64)


def _restore_acrobot(env: Any, obs: np.ndarray, prev_action: np.ndarray | None) -> None:
    env.state = np.array([_angle(obs[0], obs[1]), _angle(obs[2], obs[3]), obs[4], obs[5]])


def _restore_reacher(env: Any, obs: np.ndarray, prev_action: np.ndarray | None) -> None:
    qpos = env.init_qpos.copy()
    qvel = np.zeros_like(env.init_qvel)
    qpos[0], qpos[1] = _angle(obs[0], obs[2]), _angle(obs[1], obs[3])
    qpos[2:4] = obs[4:6]
    qvel[0:2] = obs[6:8]
    env.set_state(qpos, qvel)


def _mujoco_restorer(env: Any, reset_obs: np.ndarray) -> Callable[[Any, np.ndarray, np.ndarray | None], None] | None:
    """The ``qpos[k:] + qvel`` layout, with ``k`` found from a reset observation; None if it does not fit."""
    nq, nv = int(env.model.nq), int(env.model.nv)
    qpos, qvel = np.asarray(env.data.qpos), np.asarray(env.data.qvel)
    for k in range(nq + 1):
        m = nq - k
        if reset_obs.shape[0] < m + nv:
            continue
        if np.allclose(reset_obs[:m], qpos[k:], atol=1e-9) and np.allclose(reset_obs[m : m + nv], qvel, atol=1e-9):
            root = np.array(qpos[:k], copy=True)

            def restore(
                env: Any, obs: np.ndarray, prev_action: np.ndarray | None, root: np.ndarray = root, m: int = m
            ) -> None:
                env.set_state(np.concatenate([root, obs[:m]]), np.array(obs[m : m + nv]))

            return restore
    return None


_CLASSIC: dict[str, Callable[[Any, np.ndarray, np.ndarray | None], None]] = {
    "PendulumEnv": _restore_pendulum,
    "CartPoleEnv": _restore_state_is_obs,
    "MountainCarEnv": _restore_state_is_obs,
    "Continuous_MountainCarEnv": _restore_state_is_obs,
    "AcrobotEnv": _restore_acrobot,
}


def _make_render_env(env_id: str) -> Any:
    import gymnasium as gym

    _private_runtime_dir()

    if env_id not in gym.registry:
        raise MediaError(f"cannot render: unknown env id {env_id!r}")
    spec = gym.registry[env_id]
    kwargs: dict[str, Any] = {"render_mode": "rgb_array"}
    if "mujoco" in str(spec.entry_point):
        kwargs.update(width=HEIGHT, height=HEIGHT)
    return gym.make(env_id, **kwargs)


def _scale(frame: Frame) -> Frame:
    from PIL import Image

    h, w = frame.shape[:2]
    if h == HEIGHT:
        return np.ascontiguousarray(frame[:, :, :3])
    width = max(2, round(w * HEIGHT / h / 2) * 2)  # even sizes suit video codecs
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(frame[:, :, :3])).resize((width, HEIGHT), Image.Resampling.BILINEAR)
    )


def render_frames(segment: Segment, env_id: str | None = None) -> tuple[list[Frame], float, bool]:
    """The segment's frames, the frame rate, and whether they are a replay (False: an observation plot).

    Frame ``t`` shows the state of observation ``t``, drawn as the env draws it
    after a step (Pendulum's torque arrow is the action that led there).
    """
    env_id = env_id or str(segment.info.get("env_id", ""))
    if not env_id:
        return _trace_frames(segment, "no env id"), float(MAX_FPS), False
    env = _make_render_env(env_id)
    try:
        reset_obs, _ = env.reset(seed=0)
        u = env.unwrapped
        fps = float(min(env.metadata.get("render_fps") or MAX_FPS, MAX_FPS))
        restore = _CLASSIC.get(type(u).__name__)
        if restore is None and type(u).__name__ == "ReacherEnv":
            restore = _restore_reacher
        if restore is None and hasattr(u, "set_state") and hasattr(u, "model"):
            restore = _mujoco_restorer(u, np.asarray(reset_obs, dtype=np.float64))
        if restore is None or segment.observations.shape[1] != np.asarray(reset_obs).shape[0]:
            return _trace_frames(segment, f"{env_id}: no replay from observations"), fps, False
        frames = []
        for t in range(len(segment)):
            prev = None if t == 0 else np.asarray(segment.actions[t - 1])
            restore(u, np.asarray(segment.observations[t]), prev)
            frames.append(_scale(np.asarray(env.render())))
        return frames, fps, True
    finally:
        env.close()


def _trace_frames(segment: Segment, title: str) -> list[Frame]:
    """An animated line plot of each observation dimension, with a cursor at step t."""
    from PIL import Image, ImageDraw

    obs = np.asarray(segment.observations, dtype=np.float64)
    T, D = obs.shape
    w, h, pad = 360, HEIGHT, 14
    lo, hi = np.nanmin(obs, axis=0), np.nanmax(obs, axis=0)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    norm = (obs - lo) / span
    base = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(base)
    draw.text((4, 1), title[:60], fill=(60, 60, 60))
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
    xs = [pad + (w - 2 * pad) * t / max(T - 1, 1) for t in range(T)]
    for d in range(D):
        ys = [h - pad - (h - 2 * pad - 10) * float(v) for v in norm[:, d]]
        draw.line(list(zip(xs, ys, strict=True)), fill=colours[d % len(colours)], width=1)
    frames = []
    for t in range(T):
        im = base.copy()
        ImageDraw.Draw(im).line([(xs[t], pad + 10), (xs[t], h - pad)], fill=(0, 0, 0), width=2)
        frames.append(np.asarray(im))
    return frames


def encode(frames: list[Frame], fps: float, fmt: MediaFormat) -> bytes:
    """WebM (VP8, via imageio's ffmpeg) or an animated GIF (Pillow) of the frames."""
    if not frames:
        raise MediaError("no frames to encode")
    if fmt == "webm":
        import imageio.v3 as iio

        out = iio.imwrite(
            "<bytes>",
            np.stack(frames),
            extension=".webm",
            codec="libvpx",
            fps=fps,
            macro_block_size=1,
            output_params=["-crf", "10", "-b:v", "1M"],
            ffmpeg_log_level="error",
        )
        return bytes(out)
    if fmt == "gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        buf = io.BytesIO()
        images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
        return buf.getvalue()
    raise MediaError(f"unknown media format {fmt!r}; expected one of {', '.join(FORMATS)}")


class MediaCache:
    """Rendered segments on disk, ``ROOT/<generation id>.<format>``: each is rendered once.

    Concurrent requests for the same file wait for one render; files are written
    to a temporary name and renamed, so a reader never sees half a file. Only a
    regular file counts as rendered: a symlink in its place (which could point out
    of the run folder) is rendered over, never served.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._waiting = 0
        self.renders = 0

    def path(self, generation_id: str, fmt: MediaFormat) -> Path:
        if not _ID_RE.match(generation_id):
            raise MediaError(f"not a generation id: {generation_id!r}")
        if fmt not in FORMATS:
            raise MediaError(f"unknown media format {fmt!r}")
        return self.root / f"{generation_id}.{fmt}"

    def cached(self, generation_id: str, fmt: MediaFormat) -> Path | None:
        """The rendered file if there is one (a regular file, not a link), else None."""
        path = self.path(generation_id, fmt)
        try:
            return path if stat.S_ISREG(path.lstat().st_mode) else None
        except OSError:
            return None

    def get(
        self, generation_id: str, segment: Segment, fmt: MediaFormat = "webm", queue_limit: int | None = None
    ) -> Path:
        """The cached file for this generation, rendering it first if needed.

        Renders run one at a time (:data:`_RENDER_LOCK`). With ``queue_limit``,
        a caller that would be the ``queue_limit + 1``-th running or waiting for a
        render gets :class:`MediaBusyError` at once instead of a thread parked in
        the queue (the web app passes it; the background pre-render waits).
        """
        path = self.cached(generation_id, fmt)
        if path is not None:
            return path
        path = self.path(generation_id, fmt)
        with self._guard:
            if queue_limit is not None and self._waiting >= queue_limit:
                raise MediaBusyError(f"{self._waiting} renders are already running or waiting")
            self._waiting += 1
            lock = self._locks.setdefault(path.name, threading.Lock())
        try:
            with lock:
                if self.cached(generation_id, fmt) is not None:
                    return path
                with _RENDER_LOCK:
                    frames, fps, _replay = render_frames(segment)
                    data = encode(frames, fps, fmt)
                self.root.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".render-", suffix=f".{fmt}")
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    os.replace(tmp, path)  # replaces a link in the way, never writes through it
                except BaseException:  # a full or read-only disk: leave no half file behind
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
                self.renders += 1
        finally:
            with self._guard:
                self._waiting -= 1
        return path
