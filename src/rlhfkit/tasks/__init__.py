"""Built-in tasks: an environment, a known true reward and a proxy reward.

The true reward is what a simulated human judges by and what evaluation
reports; the reward model never sees it. The proxy reward is a plausible but
wrong objective ("competent but misaligned") that a base policy can be
pre-trained on, the starting point RLHF exists to fix.

================  ==================  ==============================================
name              environment         proxy reward (what it gets wrong)
================  ==================  ==============================================
``pendulum``      Pendulum-v1         hold the pole 0.35 rad off upright, torque free
``cartpole``      CartPole-v1         stay alive only (ignores centring and tilt)
``reacher``       Reacher-v5          reach the target, ignoring the control cost
``halfcheetah``   HalfCheetah-v5      forward speed, ignoring the control cost
================  ==================  ==============================================

Any other gymnasium id can be used with ``env:<id>`` (true reward = env reward,
no proxy).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

StepRewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


class UnknownTaskError(ValueError):
    """The config names a task or env id that does not exist."""


class TrueRewardWrapper(gym.Wrapper[Any, Any, Any, Any]):
    """Replaces the env reward by ``true_reward(obs_before, action)``."""

    def __init__(self, env: gym.Env[Any, Any], true_reward: StepRewardFn) -> None:
        super().__init__(env)
        self.true_reward = true_reward
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> Any:
        obs, info = self.env.reset(**kwargs)
        self._obs = np.asarray(obs)
        return obs, info

    def step(self, action: Any) -> Any:
        assert self._obs is not None, "step() before reset()"
        r = float(self.true_reward(self._obs[None], np.asarray(action)[None])[0])
        obs, _, terminated, truncated, info = self.env.step(action)
        self._obs = np.asarray(obs)
        return obs, r, terminated, truncated, info


@dataclass(frozen=True)
class Task:
    """A named environment with its true and proxy rewards and sensible defaults."""

    name: str
    env_id: str
    description: str
    segment_length: int
    """Default length of the clips a human compares (steps)."""
    true_reward: StepRewardFn | None = None
    """Per-step true reward from (obs before the step, action); None = the env's own reward."""
    proxy_reward: StepRewardFn | None = None
    """A misaligned reward for pre-training a base policy; None if the task has none."""
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Settings that work for this task, as a run config's tables (e.g. {"control": {"ppo": {...}}, "reward":
    {...}}); what the config says overrides each field."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    instructions: str = ""
    """What people in the web app are asked to look for (what "better" means on this task): the default of
    ``feedback.instructions``. Empty = a generic text."""

    def make_env(self) -> gym.Env[Any, Any]:
        env = make_gym_env(self.env_id, **self.env_kwargs)
        if self.true_reward is not None:
            env = TrueRewardWrapper(env, self.true_reward)
        return env


def make_gym_env(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """``gym.make`` with a clear error (and a suggestion) for an unknown id."""
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownTaskError(f"unknown gymnasium env id {env_id!r}{hint}")
    return gym.make(env_id, **kwargs)


def _angle(o: np.ndarray) -> np.ndarray:
    return np.arctan2(o[..., 1], o[..., 0])


def pendulum_true(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    """Pendulum-v1's own reward: -(theta^2 + 0.1 thetadot^2 + 0.001 u^2), u clipped to [-2, 2]."""
    u = np.clip(np.asarray(act, dtype=np.float64).reshape((*obs.shape[:-1], -1))[..., 0], -2.0, 2.0)
    return -(_angle(obs) ** 2 + 0.1 * obs[..., 2] ** 2 + 0.001 * u**2)


def pendulum_proxy(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    """Hold the pole 0.35 rad off upright; no velocity or torque cost."""
    d = (_angle(obs) - 0.35 + np.pi) % (2 * np.pi) - np.pi
    return -(d**2)


def cartpole_true(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    """Stay upright *and* centred: 1 - 0.5 (theta / 0.21)^2 - 0.5 (x / 2.4)^2."""
    return 1.0 - 0.5 * (obs[..., 2] / 0.2095) ** 2 - 0.5 * (obs[..., 0] / 2.4) ** 2


def cartpole_proxy(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    """+1 per step alive: CartPole's env reward, blind to drifting and tilting."""
    return np.ones(obs.shape[:-1])


def reacher_proxy(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    """Negative fingertip-to-target distance, without the control cost."""
    return -np.linalg.norm(obs[..., 8:10], axis=-1)


def halfcheetah_proxy(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    """Forward velocity of the torso (obs[8]), without the control cost."""
    return np.asarray(obs[..., 8], dtype=np.float64)


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            name="pendulum",
            env_id="Pendulum-v1",
            description="Swing a pendulum up and hold it upright with little torque (fast; tests and demo).",
            segment_length=50,
            proxy_reward=pendulum_proxy,
            instructions=(
                "The goal: swing the pendulum up and hold it still, pointing straight up, using little force "
                "(the arrow shows the torque applied). Prefer the clip that ends closer to upright and steadier; "
                "when both hang down, prefer the one that swings higher. Wild spinning is worse than a calm swing."
            ),
            defaults={
                "control": {"ppo": {"n_envs": 4, "n_steps": 1024, "gamma": 0.9, "lr": 1e-3}},
                # With actions as input, 200 comparisons teach the reward model to credit
                # torques for the states they lead to (causal confusion), and PPO then
                # holds the pole sideways; a state-only reward does not invite that.
                "reward": {"use_action": False},
            },
        ),
        Task(
            name="cartpole",
            env_id="CartPole-v1",
            description="Balance a pole on a cart, upright and centred (discrete actions).",
            segment_length=25,
            true_reward=cartpole_true,
            proxy_reward=cartpole_proxy,
            instructions=(
                "The goal: keep the pole upright and the cart near the middle of the track. Prefer the clip where "
                "the pole stays closer to vertical and the cart drifts less; a pole that falls, or a cart that "
                "runs off to the edge, is worse."
            ),
            defaults={"control": {"ppo": {"n_envs": 4, "n_steps": 256, "gamma": 0.99, "lr": 3e-4}}},
        ),
        Task(
            name="reacher",
            env_id="Reacher-v5",
            description="Move a 2-link arm's fingertip to a random target (MuJoCo).",
            segment_length=25,
            proxy_reward=reacher_proxy,
            instructions=(
                "The goal: bring the arm's fingertip to the target and keep it there, with smooth, small movements. "
                "Prefer the clip that gets closer to the target sooner; flailing is worse than a calm reach."
            ),
            defaults={"control": {"ppo": {"n_envs": 4, "n_steps": 512, "gamma": 0.99, "lr": 3e-4}}},
        ),
        Task(
            name="halfcheetah",
            env_id="HalfCheetah-v5",
            description="Run forward with a planar cheetah (MuJoCo).",
            segment_length=50,
            proxy_reward=halfcheetah_proxy,
            instructions=(
                "The goal: run forward (to the right) fast, with a smooth, efficient gait. Prefer the clip that "
                "covers more ground with less effort; running backwards or thrashing in place is worse."
            ),
            defaults={
                "control": {"ppo": {"n_envs": 4, "n_steps": 512, "gamma": 0.99, "lr": 3e-4}},
                # The forward speed is in the state (obs[8]); with 600 comparisons a state-only
                # r(s) gave a median 0.867 of true-reward PPO's return over 3 seeds, r(s, a) 0.770
                # (docs/benchmarks.md).
                "reward": {"use_action": False},
            },
        ),
    ]
}


def get_task(name: str) -> Task:
    """A built-in task by name, or ``env:<gymnasium id>`` for any registered env."""
    if name.startswith("env:"):
        env_id = name[4:]
        make_gym_env(env_id).close()  # fails early, with a suggestion, on an unknown id
        return Task(
            name=name,
            env_id=env_id,
            description=f"gymnasium {env_id} with its own reward",
            segment_length=50,
            instructions=f"Prefer the clip where the agent does the task of {env_id} better.",
        )
    if name not in TASKS:
        close = difflib.get_close_matches(name, list(TASKS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownTaskError(f"unknown task {name!r}{hint} (built in: {', '.join(TASKS)}; or env:<gymnasium id>)")
    return TASKS[name]
