"""What the richer feedback kinds need to know about a task.

- **Named reward features** (:class:`FeatureSet`): a few scalar features ``f(x)``
  of a generation that a person talks about ("swinging", "shorter answers"),
  with their weights in the task's true reward. For the built-in tasks the true
  return is exactly ``sum_f weight_f * f(x)``, so a simulated human can say which
  feature matters most for the difference between two generations, and an
  interpreter can map an utterance back onto a feature and a direction.
- **What an editor needs** (the editors and ``editor(task)`` are in
  ``feedback/edits.py``): the dynamics that replay edited torques (pendulum) and
  the vocabulary of word edits (describe). An editor proposes nearby variants of
  a generation: the moves a human makes when correcting it, and the nearby
  alternatives a correction is chosen over (reward-rational choice).
- **A return range**: the true returns that a simulated human maps onto the ends
  of a rating scale (and between which label thresholds sit).

Each feature carries two sets of phrases on purpose: ``say_more``/``say_less``
are what the simulated human says, ``describe_more``/``describe_less`` are the
interpreter's anchor descriptions, worded differently, so a test of the
interpreter is not a lookup of its own strings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from rlhfkit.tasks import UnknownTaskError
from rlhfkit.tasks import text as text_task
from rlhfkit.types import Content, Segment, completion_text


@dataclass(frozen=True)
class RewardFeature:
    """One named, scalar feature of a generation and its weight in the true reward."""

    name: str
    fn: Callable[[Content], float]
    """``f(x)`` for one generation (a whole segment or a completion)."""
    weight: float
    """Its weight in the task's true return, ``R(x) = sum_f weight_f * f(x)``."""
    say_more: tuple[str, ...]
    """What the simulated human says when the better one has more of it."""
    say_less: tuple[str, ...]
    """What the simulated human says when the better one has less of it."""
    describe_more: tuple[str, ...]
    """Interpreter anchors meaning "more of this would be better"."""
    describe_less: tuple[str, ...]
    """Interpreter anchors meaning "less of this would be better"."""
    keywords: Mapping[str, int] = field(default_factory=dict)
    """Word prefixes that name the feature, for the keyword interpreter, with the direction they
    imply (+1 more, -1 less, 0 none: then a modifier such as "less"/"more" in the utterance decides)."""


@dataclass(frozen=True)
class FeatureSet:
    """The named reward features of a task."""

    task: str
    features: tuple[RewardFeature, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def __getitem__(self, name: str) -> RewardFeature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"task {self.task!r} has no reward feature {name!r}; it has {list(self.names)}")

    def values(self, content: Content) -> np.ndarray:
        """``f(x)`` for every feature, shape ``(n_features,)``."""
        return np.array([f.fn(content) for f in self.features], dtype=np.float64)

    @property
    def weights(self) -> np.ndarray:
        return np.array([f.weight for f in self.features], dtype=np.float64)


# -- pendulum ---------------------------------------------------------------------

PENDULUM_G, PENDULUM_DT, PENDULUM_MAX_SPEED, PENDULUM_MAX_TORQUE = 10.0, 0.05, 8.0, 2.0


def pendulum_simulate(first_obs: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replay torques from a start observation with Pendulum-v1's own dynamics.

    Args:
        first_obs: ``(..., 3)`` observations ``(cos th, sin th, thdot)`` before the first action.
        actions: ``(..., T, 1)`` torques (clipped to [-2, 2] as the env does).

    Returns ``(observations (..., T, 3), true_rewards (..., T))``: the observation
    before each action and Pendulum-v1's reward for it, so an edited action chunk
    becomes a real segment (what a correction shows).
    """
    first_obs = np.asarray(first_obs, dtype=np.float64)
    u = np.clip(np.asarray(actions, dtype=np.float64)[..., 0], -PENDULUM_MAX_TORQUE, PENDULUM_MAX_TORQUE)
    th = np.arctan2(first_obs[..., 1], first_obs[..., 0])
    thdot = first_obs[..., 2].copy()
    T = u.shape[-1]
    obs = np.empty((*u.shape, 3))
    rew = np.empty(u.shape)
    for t in range(T):
        obs[..., t, :] = np.stack([np.cos(th), np.sin(th), thdot], axis=-1)
        norm_th = (th + np.pi) % (2 * np.pi) - np.pi
        rew[..., t] = -(norm_th**2 + 0.1 * thdot**2 + 0.001 * u[..., t] ** 2)
        thdot = np.clip(
            thdot + (3 * PENDULUM_G / 2 * np.sin(th) + 3.0 * u[..., t]) * PENDULUM_DT,
            -PENDULUM_MAX_SPEED,
            PENDULUM_MAX_SPEED,
        )
        th = th + thdot * PENDULUM_DT
    return obs, rew


def _segment(x: Content) -> Segment:
    if not isinstance(x, Segment):
        raise TypeError("this feature is defined for control segments")
    return x


def _pendulum_angle(x: Content) -> float:
    o = _segment(x).observations
    return float(np.sum(np.arctan2(o[:, 1], o[:, 0]) ** 2))


def _pendulum_speed(x: Content) -> float:
    return float(np.sum(_segment(x).observations[:, 2] ** 2))


def _pendulum_torque(x: Content) -> float:
    u = np.clip(np.asarray(_segment(x).actions, dtype=np.float64).reshape(len(_segment(x)), -1)[:, 0], -2.0, 2.0)
    return float(np.sum(u**2))


PENDULUM_FEATURES = FeatureSet(
    task="pendulum",
    features=(
        RewardFeature(
            name="angle",
            fn=_pendulum_angle,
            weight=-1.0,
            say_more=("let it hang lower", "further from the top"),
            say_less=("keep it upright", "closer to the top", "get the pole up", "stay balanced at the top"),
            describe_more=("the pole should point further down", "hang down more", "drop towards the bottom"),
            describe_less=(
                "the pole should be more vertical, near the top",
                "balance upright",
                "less tilted",
                "raise it higher",
                "hold the pendulum straight up",
                "get it up",
            ),
            keywords={"upright": -1, "top": -1, "balanc": -1, "vertical": -1, "tilt": 0, "hang": 1, "down": 1},
        ),
        RewardFeature(
            name="speed",
            fn=_pendulum_speed,
            weight=-0.1,
            say_more=("faster", "swing more"),
            say_less=("slower", "less swinging", "stop spinning", "calmer motion"),
            describe_more=("move more quickly", "more rotation speed", "swing about more", "speed up"),
            describe_less=(
                "move more slowly",
                "reduce the angular velocity",
                "less spinning around",
                "slow down",
                "less wobbling",
                "steadier, less motion",
            ),
            keywords={"slow": -1, "calm": -1, "still": -1, "fast": 1, "quick": 1, "swing": 0, "spin": 0, "speed": 0},
        ),
        RewardFeature(
            name="torque",
            fn=_pendulum_torque,
            weight=-0.001,
            say_more=("push harder", "more force"),
            say_less=("use less force", "gentler pushes", "less effort"),
            describe_more=("apply stronger torque", "stronger motor", "push with more strength"),
            describe_less=(
                "apply weaker torque",
                "save energy on the motor",
                "softer pushes",
                "less force",
                "less energy spent",
                "don't push so hard",
            ),
            keywords={"gentl": -1, "harder": 1, "stronger": 1, "weaker": -1, "force": 0, "torque": 0, "effort": 0},
        ),
    ),
)


# -- the text task "describe" -------------------------------------------------------


def _describe_counts(x: Content) -> tuple[int, int, int, bool]:
    return text_task._counts(completion_text(x))


DESCRIBE_FEATURES = FeatureSet(
    task="describe",
    features=(
        RewardFeature(
            name="niceness",
            fn=lambda x: float(min(_describe_counts(x)[0], 3)),
            weight=1.0,
            say_more=("nicer words", "be kinder", "say something pleasant", "more positive"),
            say_less=("fewer nice words", "less flattering"),
            describe_more=(
                "use more positive adjectives",
                "friendlier description",
                "nicer",
                "kinder",
                "be pleasant",
                "more complimentary",
            ),
            describe_less=("use fewer positive adjectives", "less praise", "fewer compliments"),
            keywords={"nice": 1, "kind": 1, "pleasant": 1, "positive": 0, "friend": 1, "flatter": 0, "prais": 0},
        ),
        RewardFeature(
            name="negativity",
            fn=lambda x: float(_describe_counts(x)[1]),
            weight=-1.0,
            say_more=("more negative words", "be harsher"),
            say_less=("no negative words", "don't be rude", "stop being mean", "less negative"),
            describe_more=("use more negative adjectives", "sound more unpleasant", "be meaner", "ruder"),
            describe_less=(
                "avoid insulting words",
                "do not describe it badly",
                "without bad words",
                "don't be unkind",
                "remove the negative words",
                "stop insulting",
            ),
            keywords={"negativ": 0, "rude": -1, "mean": -1, "insult": -1, "harsh": 0, "unpleasant": 0},
        ),
        RewardFeature(
            name="verbosity",
            fn=lambda x: float(max(0, _describe_counts(x)[2] - 3)),
            weight=-0.75,
            say_more=("longer answers", "say more"),
            say_less=("shorter answers", "too long", "fewer adjectives", "get to the point"),
            describe_more=("write a longer description", "add more adjectives", "say more things", "make it longer"),
            describe_less=(
                "be brief",
                "keep the description short",
                "use fewer words",
                "it is too long",
                "make it shorter",
                "be concise",
            ),
            keywords={"short": -1, "brief": -1, "long": 0, "adjective": 0, "words": 0, "point": -1, "concise": -1},
        ),
        RewardFeature(
            name="unfinished",
            fn=lambda x: 0.0 if _describe_counts(x)[3] else 1.0,
            weight=-1.0,
            say_more=("leave it open", "don't end the sentence"),
            say_less=("finish the sentence", "end with a full stop", "complete your sentence"),
            describe_more=("leave the sentence incomplete", "no need to finish", "keep it open-ended"),
            describe_less=(
                "close the sentence with a period",
                "the answer should be a complete sentence",
                "finish it properly",
                "needs a full stop at the end",
                "complete it",
            ),
            keywords={"finish": -1, "stop": -1, "period": -1, "complete": -1, "end": -1, "open": 1, "unfinish": 1},
        ),
    ),
)

#: Words an editor of the describe task may insert or substitute.
DESCRIBE_VOCABULARY: tuple[str, ...] = (*text_task.POSITIVE, *text_task.NEGATIVE, "and", ",", ".")

# Returns that a simulated human maps onto the ends of a rating scale: about the 5th and
# 95th percentiles of the true return over the pools of ``experiments/pools.py`` (50-step
# pendulum clips of random and crude swing-up controllers; corpus-like completions).
_RETURN_RANGES: dict[str, tuple[float, float]] = {"pendulum": (-400.0, -100.0), "describe": (-4.75, 2.0)}


def feature_set(task: str) -> FeatureSet:
    """The named reward features of a built-in task (``pendulum`` or ``describe``)."""
    sets = {"pendulum": PENDULUM_FEATURES, "describe": DESCRIBE_FEATURES}
    if task not in sets:
        raise UnknownTaskError(f"task {task!r} has no named reward features (built in: {', '.join(sets)})")
    return sets[task]


def return_range(task: str) -> tuple[float, float]:
    """True returns a simulated human maps onto the ends of a rating scale for this task."""
    if task not in _RETURN_RANGES:
        raise UnknownTaskError(f"task {task!r} has no return range (built in: {', '.join(_RETURN_RANGES)})")
    return _RETURN_RANGES[task]
