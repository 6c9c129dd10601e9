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

The same ``r_H`` and noise knobs answer every other kind of query:

- **ranking** of k items: a Plackett–Luce draw with weights ``exp(beta R)`` (sorted
  by ``R`` when ``beta = inf``); with probability epsilon one random adjacent pair
  is swapped.
- **rating** on ``rating_scale = (lo, hi)``: with ``z = 2 (R - R_lo) / (R_hi - R_lo) - 1``
  (``return_range = (R_lo, R_hi)`` maps the task's returns onto [-1, 1]), the rating
  is ``mid + half * (rating_gain * z + rating_offset + rating_noise * eps)``, rounded
  to ``rating_step`` and clipped to the scale. ``rating_gain`` and ``rating_offset``
  are this annotator's own use of the scale (per-annotator calibration).
- **label** from ``label_choices`` (worst first): the count of ``label_thresholds``
  (on ``z``) below ``z + label_noise * eps``; with probability ``label_none_prob``
  "none of these".
- **correction** of ``x``: ``correction_steps`` noisy improvement steps; each step
  proposes ``correction_candidates`` edits of the current version (the task's
  editor) and keeps one by a Boltzmann choice on ``R`` (``beta``) among the current
  version and the edits. The answer is the last version (the best edit seen, if
  no step moved away from ``x``).
- **language** about a pair: the preferred side as for a comparison, then the
  named feature ``f`` that contributes most to that side's advantage,
  ``argmax_f w_f (f(better) - f(worse))``, said with a templated phrase for "more" or
  "less" of it (the task's ``FeatureSet``); with probability ``language_noise`` a
  random feature and direction instead. "About equal" answers say so, and are not
  trained on.

All randomness comes from the teacher's own seeded generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rlhfkit.feedback_records import (
    NONE_OF_THESE,
    Answer,
    Comparison,
    Correction,
    Feedback,
    Label,
    Language,
    Ranking,
    Rating,
)
from rlhfkit.types import Content, Generation, Query, Segment, Text

if TYPE_CHECKING:
    from rlhfkit.feedback.edits import Editor
    from rlhfkit.tasks.features import FeatureSet

RewardFn = Callable[[Any], np.ndarray]
"""``r_H``: per-step rewards ``(T,)`` of a :class:`Segment`, or one reward (``()`` or ``(1,)``) of a :class:`Text`."""


def true_reward(segment: Segment) -> np.ndarray:
    """The task's true per-step reward stored with the segment."""
    return np.asarray(segment.true_rewards, dtype=np.float64)


class Human(Protocol):
    """Answers queries. ``answer`` returns None when the answer will come later (a person)."""

    annotator_id: str

    def answer(self, query: Query, generations: Mapping[str, Generation]) -> Feedback | None: ...


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
    return_range: tuple[float, float] | None = None
    """Returns (R_lo, R_hi) mapped onto the ends of the rating scale; needed for ratings and labels."""
    rating_scale: tuple[float, float] = (1.0, 7.0)
    """The declared rating scale (low, high); also the scale people rate on in the web app (the run writes it
    to the store, `rlhfkit serve` reads it there)."""
    rating_gain: float = 1.0
    """This annotator's scale: how far from the middle a given return is put (per-annotator calibration)."""
    rating_offset: float = 0.0
    """This annotator's offset, in half-scale units (+0.5: rates a quarter of the scale higher)."""
    rating_noise: float = 0.0
    """Standard deviation of rating noise, in half-scale units."""
    rating_step: float = 1.0
    """Ratings are rounded to multiples of this above the low end (0: not rounded)."""
    label_choices: tuple[str, ...] = ("bad", "ok", "good")
    """Ordinal label set, worst first; also the label buttons people see in the web app ("none of these" is
    always offered too)."""
    label_thresholds: tuple[float, ...] = (-0.33, 0.33)
    """Thresholds on the normalised return z in [-1, 1] between consecutive labels (one fewer than labels)."""
    label_noise: float = 0.0
    """Standard deviation of noise added to z before thresholding."""
    label_none_prob: float = 0.0
    """Probability of answering "none of these"."""
    correction_steps: int = 3
    """Improvement steps in a correction."""
    correction_candidates: int = 8
    """Edits proposed (by the task's editor) per correction step."""
    language_noise: float = 0.0
    """Probability that an utterance names a random feature and direction."""

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
        if self.return_range is not None and not self.return_range[0] < self.return_range[1]:
            raise ValueError(f"teacher.return_range must be (low, high) with low < high, got {self.return_range}")
        if not self.rating_scale[0] < self.rating_scale[1]:
            raise ValueError(f"teacher.rating_scale must be (low, high) with low < high, got {self.rating_scale}")
        if not (self.rating_gain > 0 and self.rating_noise >= 0 and self.rating_step >= 0 and self.label_noise >= 0):
            raise ValueError("teacher.rating_gain must be > 0; rating_noise, rating_step, label_noise >= 0")
        choices = self.label_choices
        if (
            len(choices) < 2
            or len(set(choices)) != len(choices)
            or NONE_OF_THESE in choices
            or not all(c.strip() for c in choices)
        ):
            raise ValueError(
                f"teacher.label_choices must be 2 or more distinct, non-empty names without {NONE_OF_THESE!r} "
                f"(always offered), got {list(choices)}"
            )
        if len(self.label_thresholds) != len(self.label_choices) - 1 or list(self.label_thresholds) != sorted(
            self.label_thresholds
        ):
            raise ValueError(
                f"teacher.label_thresholds must be {len(self.label_choices) - 1} increasing numbers "
                f"(one between each pair of label_choices), got {self.label_thresholds}"
            )
        for name in ("label_none_prob", "language_noise"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"teacher.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.correction_steps < 1 or self.correction_candidates < 1:
            raise ValueError("teacher.correction_steps and teacher.correction_candidates must be >= 1")


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
        features: the task's named reward features (needed for language answers).
        editor: proposes edits of a generation (needed for corrections).
    """

    def __init__(
        self,
        config: TeacherConfig | None = None,
        reward_fn: RewardFn = true_reward,
        seed: int = 0,
        annotator_id: str = "simulated-0",
        features: FeatureSet | None = None,
        editor: Editor | None = None,
    ) -> None:
        self.config = config or TeacherConfig()
        self.reward_fn = reward_fn
        self.rng = np.random.default_rng(seed)
        self.annotator_id = annotator_id
        self.features = features
        self.editor = editor

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

    def answer(self, query: Query, generations: Mapping[str, Generation]) -> Feedback:
        """Answer one query of any kind; ``generations`` must hold the generations it shows."""
        xs = [generations[gid].content for gid in query.generation_ids]
        if query.kind == Comparison.kind:
            answer, mu_a = self.judge(self.segment_return(xs[0]), self.segment_return(xs[1]))
            return Comparison.make(query.id, answer, self.annotator_id, mu_a=mu_a)
        if query.kind == Ranking.kind:
            order = self.rank([self.segment_return(x) for x in xs])
            return Ranking.make(query.id, [query.generation_ids[i] for i in order], self.annotator_id)
        if query.kind == Rating.kind:
            return Rating.make(
                query.id, self.rate(self.segment_return(xs[0])), self.annotator_id, self.config.rating_scale
            )
        if query.kind == Label.kind:
            return Label.make(
                query.id, self.label(self.segment_return(xs[0])), self.annotator_id, self.config.label_choices
            )
        if query.kind == Correction.kind:
            return Correction.make(query.id, self.correct(xs[0]), self.annotator_id)
        if query.kind == Language.kind:
            return Language.make(query.id, self.say(xs[0], xs[1]), self.annotator_id)
        raise ValueError(f"the simulated human cannot answer a {query.kind!r} query")

    # -- the other kinds ----------------------------------------------------------

    def rank(self, returns: list[float]) -> list[int]:
        """Indices of ``returns`` best first: Plackett–Luce with weights exp(beta R), then a possible slip."""
        r = np.asarray(returns, dtype=np.float64)
        if math.isinf(self.config.beta):
            order = list(np.lexsort((np.arange(len(r)), -r)))
        else:
            gumbel = -np.log(-np.log(self.rng.uniform(1e-12, 1.0, size=len(r))))
            order = list(np.argsort(-(self.config.beta * r + gumbel), kind="stable"))
        if self.rng.random() < self.config.mistake_prob:
            i = int(self.rng.integers(0, len(order) - 1))
            order[i], order[i + 1] = order[i + 1], order[i]
        return [int(i) for i in order]

    def _z(self, ret: float) -> float:
        if self.config.return_range is None:
            raise ValueError("ratings and labels need teacher.return_range = (R_lo, R_hi) to map returns to a scale")
        lo, hi = self.config.return_range
        return 2.0 * (ret - lo) / (hi - lo) - 1.0

    def rate(self, ret: float) -> float:
        """A rating on ``rating_scale`` for a return (formula in the module docstring)."""
        cfg = self.config
        lo, hi = cfg.rating_scale
        mid, half = (lo + hi) / 2, (hi - lo) / 2
        y = mid + half * (cfg.rating_gain * self._z(ret) + cfg.rating_offset + cfg.rating_noise * self.rng.normal())
        if cfg.rating_step > 0:
            y = lo + round((y - lo) / cfg.rating_step) * cfg.rating_step
        return float(min(max(y, lo), hi))

    def label(self, ret: float) -> str:
        """An ordinal label for a return: thresholds on the noisy normalised return, or "none of these"."""
        cfg = self.config
        z = self._z(ret) + cfg.label_noise * self.rng.normal()
        if self.rng.random() < cfg.label_none_prob:
            return NONE_OF_THESE
        return cfg.label_choices[int(np.searchsorted(np.asarray(cfg.label_thresholds), z))]

    def correct(self, x: Content) -> Content:
        """An improved version of ``x``: a few noisy improvement steps on ``r_H`` through the editor."""
        if self.editor is None:
            raise ValueError("a simulated human needs an editor (tasks.features.editor(task)) to answer corrections")
        cfg = self.config
        current, best = x, None
        best_ret = -math.inf
        for _ in range(cfg.correction_steps):
            options = [current, *self.editor.propose(current, self.rng, cfg.correction_candidates)]
            rets = np.array([self.segment_return(o) for o in options])
            for o, r in zip(options[1:], rets[1:], strict=True):
                if r > best_ret:
                    best, best_ret = o, float(r)
            if math.isinf(cfg.beta):
                pick = int(np.argmax(rets))
            else:
                logits = cfg.beta * (rets - rets.max())
                p = np.exp(logits) / np.exp(logits).sum()
                pick = int(self.rng.choice(len(options), p=p))
            current = options[pick]
        if current is x:
            assert best is not None
            current = best
        return current

    def say(self, a: Content, b: Content) -> str:
        """A templated utterance about the feature that matters most for why the preferred one is better."""
        if self.features is None:
            raise ValueError("a simulated human needs the task's features (tasks.features.feature_set) for language")
        answer, mu_a = self.judge(self.segment_return(a), self.segment_return(b))
        if answer is Answer.GRADED:
            answer = Answer.A if (mu_a or 0.0) >= 0.5 else Answer.B
        if answer not in (Answer.A, Answer.B):
            return str(self.rng.choice(_SAME))
        better, worse = (a, b) if answer is Answer.A else (b, a)
        feats = self.features.features
        delta = self.features.values(better) - self.features.values(worse)
        if self.rng.random() < self.config.language_noise:
            i, direction = int(self.rng.integers(0, len(feats))), int(self.rng.choice([-1, 1]))
        else:
            i = int(np.argmax(self.features.weights * delta))
            direction = 1 if delta[i] > 0 else -1
        phrases = feats[i].say_more if direction > 0 else feats[i].say_less
        phrase = str(self.rng.choice(phrases))
        return str(self.rng.choice(_FRAMES)).format(phrase)


_FRAMES = ("{}", "{}, please", "I'd like {}", "better: {}")
_SAME = ("about the same", "no real difference", "both look equally good to me")
