"""How well each kind of feedback teaches a reward: simulated humans, a fit, held-out agreement.

:func:`evaluate_kinds` asks simulated humans for a given number of answers of
each kind about a fixed pool of generations, fits one reward on all of them
(``reward/fit.py``), and measures **held-out agreement**: the fraction of
pairs of *other* generations (a disjoint pool) that the learned reward orders
like the true reward. The learning tests and ``bench/feedback_kinds.py`` use it.

Two simulated annotators answer in turns, with different uses of the rating
scale (gain 1, offset 0 and gain 0.6, offset +0.3), so ratings need the
per-annotator calibration. The noise knobs are in :func:`default_teacher`.

A mix of kinds can be planned from a small pilot (:func:`run_pilot`,
:func:`plan_mix`, :func:`run_plan`): a few answers of every kind about part of
the training pool, scored on a held-out split of the *training* pool (never the
evaluation pool), then the budget spent by each kind's agreement per minute.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from rlhfkit.experiments.pools import describe_texts, pendulum_segments
from rlhfkit.feedback.answers import AnswerSet
from rlhfkit.feedback.edits import editor
from rlhfkit.feedback.language import EmbeddingInterpreter, Interpreter, KeywordInterpreter
from rlhfkit.feedback.mix import KindTools
from rlhfkit.feedback.queries import UniformQueries
from rlhfkit.feedback.teacher import SimulatedHuman, TeacherConfig
from rlhfkit.feedback_records import Feedback, Label
from rlhfkit.reward.config import RewardConfig
from rlhfkit.reward.feature_model import BagOfWords, TextFeatureRewardModel
from rlhfkit.reward.fit import RewardMetrics, agreement, fit_reward
from rlhfkit.reward.nets import RewardEnsemble
from rlhfkit.reward.segment_model import SegmentRewardModel
from rlhfkit.tasks import text as text_task
from rlhfkit.tasks.features import DESCRIBE_VOCABULARY, feature_set, return_range
from rlhfkit.types import Content, Generation, Query, Segment

TASKS = ("pendulum", "describe")


def true_return(x: Content) -> float:
    """The true return of a pendulum segment (sum of its true rewards) or a describe completion."""
    if isinstance(x, Segment):
        return float(x.true_rewards.sum())
    return text_task.true_reward(x.completion if isinstance(x.completion, str) else "")


def _reward_fn(x: Content) -> np.ndarray:
    if isinstance(x, Segment):
        return np.asarray(x.true_rewards)
    return np.array(true_return(x))


def default_teacher(task: str) -> TeacherConfig:
    """The noise model of the simulated annotators.

    Boltzmann rationality scaled to the task's returns (pendulum clip returns
    span hundreds, describe's a few units), 5% slips, rating and label noise of
    0.1 (on the [-1, 1] normalised scale) and 5% of utterances about a random
    feature.
    """
    return TeacherConfig(
        beta=0.05 if task == "pendulum" else 2.0,
        mistake_prob=0.05,
        return_range=return_range(task),
        rating_noise=0.1,
        label_noise=0.1,
        language_noise=0.05,
    )


def fit_config(seed: int, lr_schedule: Literal["constant", "cosine"] = "cosine") -> RewardConfig:
    """The evaluation's reward fit from scratch: one MLP, 64 answers of each kind a step at 3e-3, the
    learning rate decaying on a cosine; the number of steps is given to each fit (:func:`fit_answers`)."""
    return RewardConfig(ensemble_size=1, batch_size=64, lr=3e-3, lr_schedule=lr_schedule, seed=seed)


def epochs_for(steps: int, feedback: Sequence[Feedback], batch_size: int) -> int:
    """Epochs that make about ``steps`` gradient steps on ``feedback``: an epoch takes as many steps as
    the kind with the most answers needs at ``batch_size`` a step (answers of one label choice set and
    ordering counted together)."""
    counts: dict[object, int] = {}
    for f in feedback:
        key = (f.kind, f.choices, f.ordinal) if isinstance(f, Label) else f.kind
        counts[key] = counts.get(key, 0) + 1
    per_epoch = -(-max(counts.values(), default=1) // batch_size)
    return max(1, round(steps / per_epoch))


ANNOTATOR_CALIBRATION = ((1.0, 0.0), (0.6, 0.3))
"""(rating_gain, rating_offset) of the two simulated annotators."""


@dataclass
class KindsSetup:
    """A task's generation pools, annotators, editor, features and interpreter."""

    task: str
    generations: dict[str, Generation]
    test_a: list[Content]
    test_b: list[Content]
    test_diff: np.ndarray
    humans: list[SimulatedHuman]
    interpreter: Interpreter
    seed: int

    def model(self, config: RewardConfig) -> Any:
        if self.task == "pendulum":
            # State-only, as the pendulum task's default (see README "Choices worth knowing").
            return SegmentRewardModel(
                RewardEnsemble(3, 1, None, size=config.ensemble_size, hidden=config.hidden, use_action=False),
                recency=config.recency_discount,
            )
        return TextFeatureRewardModel(BagOfWords(DESCRIBE_VOCABULARY), size=config.ensemble_size, hidden=config.hidden)


def make_setup(
    task: str,
    seed: int = 0,
    pool_size: int = 600,
    test_size: int = 400,
    test_pairs: int = 3000,
    interpreter: str = "keyword",
    teacher: TeacherConfig | None = None,
) -> KindsSetup:
    """Pools (training and disjoint held-out), two annotators and an interpreter for ``task``.

    ``interpreter``: ``"keyword"`` (fast, no model) or ``"embedding"`` (all-MiniLM-L6-v2).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    make = pendulum_segments if task == "pendulum" else describe_texts
    pool: list[Content] = list(make(pool_size, 1000 * seed + 1))
    test: list[Content] = list(make(test_size, 1000 * seed + 2))
    gens = {f"g{i}": Generation(f"g{i}", 0, "pool", c) for i, c in enumerate(pool)}
    rng = np.random.default_rng(seed + 7)
    ia, ib = rng.integers(0, len(test), test_pairs), rng.integers(0, len(test), test_pairs)
    diff = np.array([true_return(test[i]) - true_return(test[j]) for i, j in zip(ia, ib, strict=True)])
    features, edit = feature_set(task), editor(task)
    base = teacher or default_teacher(task)
    humans = [
        SimulatedHuman(
            dataclasses.replace(base, rating_gain=gain, rating_offset=offset),
            reward_fn=_reward_fn,
            seed=seed * 10 + j,
            annotator_id=f"simulated-{j}",
            features=features,
            editor=edit,
        )
        for j, (gain, offset) in enumerate(ANNOTATOR_CALIBRATION)
    ]
    interp: Interpreter = EmbeddingInterpreter(features) if interpreter == "embedding" else KeywordInterpreter(features)
    return KindsSetup(task, gens, [test[i] for i in ia], [test[j] for j in ib], diff, humans, interp, seed)


def ask(
    setup: KindsSetup, answers: Mapping[str, int], seed: int = 0, pool: Sequence[Generation] | None = None
) -> tuple[dict[str, Query], list[Feedback]]:
    """``answers[kind]`` uniformly drawn queries of each kind, answered by the annotators in turns.

    ``pool``: the generations the queries may show (default: the whole training pool).
    """
    rng = np.random.default_rng(seed)
    shown = list(setup.generations.values()) if pool is None else list(pool)
    queries: dict[str, Query] = {}
    feedback: list[Feedback] = []
    for kind, n in answers.items():
        for i, q in enumerate(UniformQueries(kind).select(shown, n, rng)):
            queries[q.id] = q
            feedback.append(setup.humans[i % len(setup.humans)].answer(q, setup.generations))
    return queries, feedback


@dataclass(frozen=True)
class KindsResult:
    """Held-out agreement of one fit, with what it was fitted on."""

    agreement: float
    fit: RewardMetrics


STEPS = 400
"""Gradient steps of each fit by default."""


def fit_answers(
    setup: KindsSetup,
    queries: Mapping[str, Query],
    feedback: Sequence[Feedback],
    config: RewardConfig,
    steps: int | None = STEPS,
) -> tuple[Any, RewardMetrics]:
    """Fit a fresh reward model of the task on ``feedback`` (all of it: nothing held out); returns ``(model, fit)``.

    ``steps``: about so many gradient steps whatever the number of answers (:func:`epochs_for`); None
    keeps ``config.epochs``.
    """
    if steps is not None:
        config = dataclasses.replace(config, epochs=epochs_for(steps, feedback, config.batch_size))
    torch.manual_seed(config.seed)  # the network's initial weights: the same for the same seed in any process
    model = setup.model(config)
    answers = AnswerSet(tuple(feedback), queries, setup.generations)
    tools = KindTools(features=setup.humans[0].features, editor=setup.humans[0].editor, interpreter=setup.interpreter)
    return model, fit_reward(model, answers, None, config, tools)


def evaluate_kinds(
    setup: KindsSetup,
    answers: Mapping[str, int],
    config: RewardConfig | None = None,
    seed: int = 0,
    steps: int | None = STEPS,
) -> KindsResult:
    """Ask for ``answers`` (kind -> count), fit one reward on them, return held-out agreement."""
    config = config or fit_config(seed)
    queries, feedback = ask(setup, answers, seed)
    model, fit = fit_answers(setup, queries, feedback, config, steps)
    return KindsResult(agreement(model, setup.test_a, setup.test_b, setup.test_diff), fit)


# -- planning a mix from a pilot ---------------------------------------------------------------


@dataclass(frozen=True)
class Pilot:
    """A small pilot of every kind, scored on a validation split of the *training* pool.

    ``agreement[kind]``: the fraction of validation pairs that a reward fitted on
    the pilot's answers of that kind alone orders like the true reward. The
    pilot's answers (``queries``, ``feedback``) are real answers: a mix reuses
    them, and their minutes count against its budget.
    """

    per_kind: int
    agreement: dict[str, float]
    queries: dict[str, Query]
    feedback: list[Feedback]


def run_pilot(
    setup: KindsSetup,
    kinds: Sequence[str],
    per_kind: int = 50,
    config: RewardConfig | None = None,
    seed: int = 0,
    val_frac: float = 0.2,
    val_pairs: int = 2000,
    steps: int | None = STEPS,
) -> Pilot:
    """Ask ``per_kind`` answers of each kind about the first ``1 - val_frac`` of the training pool, fit
    each kind alone, and score each fit on random pairs of the last ``val_frac`` (never the test pool)."""
    config = config or fit_config(seed)
    gens = list(setup.generations.values())
    cut = round(len(gens) * (1 - val_frac))
    train, val = gens[:cut], [g.content for g in gens[cut:]]
    rng = np.random.default_rng(seed + 9001)
    ia, ib = rng.integers(0, len(val), val_pairs), rng.integers(0, len(val), val_pairs)
    diff = np.array([true_return(val[i]) - true_return(val[j]) for i, j in zip(ia, ib, strict=True)])
    va, vb = [val[i] for i in ia], [val[j] for j in ib]
    queries: dict[str, Query] = {}
    feedback: list[Feedback] = []
    scores: dict[str, float] = {}
    for j, kind in enumerate(kinds):
        q, f = ask(setup, {kind: per_kind}, seed=seed * 100 + 50 + j, pool=train)
        model, _ = fit_answers(setup, q, f, config, steps)
        scores[kind] = agreement(model, va, vb, diff)
        queries.update(q)
        feedback.extend(f)
    return Pilot(per_kind, scores, queries, feedback)


@dataclass(frozen=True)
class MixPlan:
    """How a mix spends its minutes."""

    answers: dict[str, int]
    """Total answers per kind, the pilot's included."""
    value: dict[str, float]
    """Each kind's pilot value: (agreement - 0.5) per human-minute of its answers."""


def plan_mix(pilot: Pilot, seconds: Mapping[str, float], budget_minutes: float, drop_below: float = 0.1) -> MixPlan:
    """Spend ``budget_minutes`` in all (the pilot's minutes included) by the pilot's value per minute.

    A kind's value is ``(pilot agreement - 0.5) / minutes per answer``: how far
    above chance a minute of it lifts a reward, at the pilot's size. Kinds worth
    less than ``drop_below`` times the best value get nothing beyond their pilot
    answers; the minutes left after the pilot go to the other kinds in proportion
    to their value.
    """
    value = {k: max(a - 0.5, 0.0) / (seconds[k] / 60) for k, a in pilot.agreement.items()}
    best = max(value.values())
    kept = {k: v for k, v in value.items() if best > 0 and v >= drop_below * best}
    spent = sum(pilot.per_kind * seconds[k] for k in pilot.agreement) / 60
    left = max(budget_minutes - spent, 0.0)
    total_v = sum(kept.values())
    answers = {
        k: pilot.per_kind + (round(left * kept[k] / total_v * 60 / seconds[k]) if k in kept else 0)
        for k in pilot.agreement
    }
    return MixPlan(answers, value)


def run_plan(
    setup: KindsSetup, pilot: Pilot, plan: MixPlan, config: RewardConfig, seed: int = 0, steps: int | None = STEPS
) -> KindsResult:
    """Ask the answers the plan adds to the pilot's (about the whole training pool), fit on all of them."""
    extra = {k: n - pilot.per_kind for k, n in plan.answers.items() if n > pilot.per_kind}
    queries, feedback = ask(setup, extra, seed=seed * 100 + 99)
    model, fit = fit_answers(setup, {**pilot.queries, **queries}, [*pilot.feedback, *feedback], config, steps)
    return KindsResult(agreement(model, setup.test_a, setup.test_b, setup.test_diff), fit)
