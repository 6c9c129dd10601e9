"""A simulated human with a documented noise model (a "teacher").

The teacher judges a pair of segments ``(A, B)`` by their returns under its own
reward ``r_H`` (any callable; by default the task's true reward). With ``T`` the
segment length, the *myopic* return with discount ``gamma`` weights the latest
steps most (the B-Pref teacher of Lee et al. 2021)::

    R(x) = sum_{t=0}^{T-1} gamma^(T-1-t) * r_H(x)_t          (gamma = 1: plain sum)

From ``d = R(A) - R(B)`` the answer is decided in this order:

1. **skip** (``skip_threshold``): if ``max(R(A), R(B)) < skip_threshold`` neither
   segment shows anything worth judging and the answer is *incomparable*
   (``mu = None``; stored, never trained on).
2. **about equal** (``equal_threshold``): if ``|d| < equal_threshold`` the answer
   is *about equal*, ``mu = (0.5, 0.5)``.
3. **Boltzmann rationality** (``beta``): ``P(A > B) = sigmoid(beta * d)``. With
   ``beta = inf`` the choice is deterministic (A iff ``d > 0``; exact ties go to
   *about equal*). Otherwise A is drawn with that probability.
4. **mistake** (``mistake_prob`` = epsilon): with probability epsilon the chosen
   side is flipped, so the observed error rate on clear pairs is epsilon.
5. **graded** (``graded = True``): instead of a hard choice the teacher answers
   the label distribution ``mu = (p, 1 - p)`` with ``p = P(A > B)`` from step 3
   (after a mistake, ``(1 - p, p)``). Needs a finite ``beta``.

All randomness comes from the teacher's own seeded generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rlhfkit.types import Answer, Comparison, Generation, Query, Segment, Text

RewardFn = Callable[[Any], np.ndarray]
"""``r_H``: per-step rewards ``(T,)`` of a :class:`Segment`, or one reward (``()`` or ``(1,)``) of a :class:`Text`."""


def true_reward(segment: Segment) -> np.ndarray:
    """The task's true per-step reward stored with the segment."""
    return np.asarray(segment.true_rewards, dtype=np.float64)


class Human(Protocol):
    """Answers queries. ``answer`` returns None when the answer will come later (a person)."""

    annotator_id: str

    def answer(self, query: Query, generations: Mapping[str, Generation]) -> Comparison | None: ...


class RewardValueError(ValueError):
    """A human's reward function returned something unusable (NaN, inf, wrong shape)."""


@dataclass(frozen=True)
class TeacherConfig:
    """The noise model of a simulated human. Each field's formula is in the module docstring."""

    beta: float = math.inf
    """Boltzmann rationality: P(A>B) = sigmoid(beta * (R(A) - R(B))). inf = deterministic."""
    mistake_prob: float = 0.0
    """Probability epsilon that the chosen side is flipped (a slip)."""
    equal_threshold: float = 0.0
    """Answer 'about equal', mu = (0.5, 0.5), when |R(A) - R(B)| < this."""
    skip_threshold: float = -math.inf
    """Answer 'incomparable' when max(R(A), R(B)) < this. -inf: never skip."""
    gamma: float = 1.0
    """Myopic discount: step t of T weighs gamma^(T-1-t), so the latest steps count most."""
    graded: bool = False
    """Answer mu = (P(A>B), P(B>A)) instead of a hard choice (needs finite beta)."""

    def __post_init__(self) -> None:
        if not (self.beta > 0):
            raise ValueError(f"teacher.beta must be > 0 (inf for deterministic), got {self.beta}")
        if not 0.0 <= self.mistake_prob <= 1.0:
            raise ValueError(f"teacher.mistake_prob must be in [0, 1], got {self.mistake_prob}")
        if not self.equal_threshold >= 0.0:
            raise ValueError(f"teacher.equal_threshold must be >= 0, got {self.equal_threshold}")
        if math.isnan(self.skip_threshold):
            raise ValueError("teacher.skip_threshold must be a number (-inf: never skip), got nan")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"teacher.gamma must be in (0, 1], got {self.gamma}")
        if self.graded and math.isinf(self.beta):
            raise ValueError("teacher.graded needs a finite teacher.beta (P(A>B) is 0 or 1 otherwise)")


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class SimulatedHuman:
    """Answers comparison queries like a noisy person would.

    Args:
        config: the noise model.
        reward_fn: ``r_H``, per-step rewards of a segment; the task's true reward by default.
        seed: seeds this teacher's random generator.
        annotator_id: stored with every answer.
    """

    def __init__(
        self,
        config: TeacherConfig | None = None,
        reward_fn: RewardFn = true_reward,
        seed: int = 0,
        annotator_id: str = "simulated-0",
    ) -> None:
        self.config = config or TeacherConfig()
        self.reward_fn = reward_fn
        self.rng = np.random.default_rng(seed)
        self.annotator_id = annotator_id

    def segment_return(self, segment: Segment | Text) -> float:
        """The myopically discounted return ``R(x)`` under ``r_H`` (a text has one step: its reward)."""
        r = np.asarray(self.reward_fn(segment), dtype=np.float64)
        if isinstance(segment, Text):
            if r.size != 1 or not np.isfinite(r).all():
                name = getattr(self.reward_fn, "__name__", self.reward_fn)
                raise RewardValueError(
                    f"reward function {name!r} returned {r!r} for a text; expected one finite number"
                )
            return float(r.reshape(()))
        if r.shape != (len(segment),):
            raise RewardValueError(
                f"reward function {getattr(self.reward_fn, '__name__', self.reward_fn)!r} returned shape "
                f"{r.shape}, expected ({len(segment)},)"
            )
        if not np.all(np.isfinite(r)):
            bad = int(np.flatnonzero(~np.isfinite(r))[0])
            raise RewardValueError(
                f"reward function {getattr(self.reward_fn, '__name__', self.reward_fn)!r} returned "
                f"{r[bad]} at step {bad} of a segment (episode info {dict(segment.info)})"
            )
        weights = self.config.gamma ** np.arange(len(r) - 1, -1, -1, dtype=np.float64)
        return float(np.dot(weights, r))

    def judge(self, return_a: float, return_b: float) -> tuple[Answer, float | None]:
        """The answer for two returns: ``(answer, mu_a)``; ``mu_a`` only for graded answers."""
        cfg = self.config
        if max(return_a, return_b) < cfg.skip_threshold:
            return Answer.INCOMPARABLE, None
        d = return_a - return_b
        if abs(d) < cfg.equal_threshold or (math.isinf(cfg.beta) and d == 0.0):
            return Answer.EQUAL, None
        p_a = (1.0 if d > 0 else 0.0) if math.isinf(cfg.beta) else _sigmoid(cfg.beta * d)
        prefers_a = bool(self.rng.random() < p_a) if not cfg.graded else p_a >= 0.5
        flipped = bool(self.rng.random() < cfg.mistake_prob)
        if cfg.graded:
            mu_a = 1.0 - p_a if flipped else p_a
            return Answer.GRADED, mu_a
        if flipped:
            prefers_a = not prefers_a
        return (Answer.A if prefers_a else Answer.B), None

    def answer(self, query: Query, generations: Mapping[str, Generation]) -> Comparison:
        """Answer one comparison query; ``generations`` must hold both of its generations."""
        a, b = (generations[gid].content for gid in query.generation_ids)
        answer, mu_a = self.judge(self.segment_return(a), self.segment_return(b))
        return Comparison.make(query.id, answer, self.annotator_id, mu_a=mu_a)
