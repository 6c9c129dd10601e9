"""Tests for rlhfkit.feedback.teacher: the simulated human's noise model, checked statistically."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlhfkit.feedback.teacher import RewardValueError, SimulatedHuman, TeacherConfig
from rlhfkit.feedback_records import Answer
from rlhfkit.types import Generation, Query, Segment


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _segment(rewards: list[float]) -> Segment:
    T = len(rewards)
    return Segment(np.zeros((T, 2)), np.zeros((T, 1)), np.asarray(rewards, dtype=np.float64), info={"episode": 3})


def _counts(teacher: SimulatedHuman, ra: float, rb: float, n: int) -> dict[Answer, int]:
    counts = dict.fromkeys(Answer, 0)
    for _ in range(n):
        answer, _ = teacher.judge(ra, rb)
        counts[answer] += 1
    return counts


# -- mistakes ---------------------------------------------------------------------


@pytest.mark.parametrize(("ra", "rb", "right"), [(1.0, 0.0, Answer.A), (-3.0, 2.0, Answer.B)])
def test_mistake_rate_on_clear_pairs(ra: float, rb: float, right: Answer) -> None:
    teacher = SimulatedHuman(TeacherConfig(beta=math.inf, mistake_prob=0.1), seed=1)
    n = 10_000
    counts = _counts(teacher, ra, rb, n)
    wrong = Answer.B if right is Answer.A else Answer.A
    assert counts[right] + counts[wrong] == n  # no ties or skips
    assert abs(counts[wrong] / n - 0.1) < 0.02


def test_no_mistakes_means_always_right() -> None:
    teacher = SimulatedHuman(TeacherConfig(beta=math.inf, mistake_prob=0.0), seed=0)
    assert _counts(teacher, 0.001, 0.0, 500)[Answer.A] == 500
    assert _counts(teacher, 0.0, 0.001, 500)[Answer.B] == 500


def test_mistake_prob_one_always_flips() -> None:
    teacher = SimulatedHuman(TeacherConfig(beta=math.inf, mistake_prob=1.0), seed=0)
    assert _counts(teacher, 5.0, 0.0, 300)[Answer.B] == 300


# -- about equal ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        (0.0, Answer.EQUAL),
        (0.4999, Answer.EQUAL),
        (-0.4999, Answer.EQUAL),
        (0.5, Answer.A),  # |d| == threshold is not "about equal"
        (-0.5, Answer.B),
        (0.5001, Answer.A),
        (-2.0, Answer.B),
    ],
)
def test_equal_threshold_is_strict(d: float, expected: Answer) -> None:
    teacher = SimulatedHuman(TeacherConfig(equal_threshold=0.5), seed=0)
    answer, mu_a = teacher.judge(10.0 + d, 10.0)
    assert answer is expected
    assert mu_a is None


def test_equal_is_never_flipped() -> None:
    teacher = SimulatedHuman(TeacherConfig(equal_threshold=0.5, mistake_prob=1.0), seed=0)
    assert _counts(teacher, 0.2, 0.0, 100)[Answer.EQUAL] == 100


def test_exact_tie_with_infinite_beta_is_equal() -> None:
    teacher = SimulatedHuman(TeacherConfig(beta=math.inf, equal_threshold=0.0), seed=0)
    assert teacher.judge(1.25, 1.25) == (Answer.EQUAL, None)


def test_tie_rate_matches_analytic_probability() -> None:
    # R_A, R_B ~ U(0, 1) independent: d = R_A - R_B is triangular on [-1, 1] and
    # P(|d| < t) = 1 - (1 - t)^2.
    t = 0.3
    expected = 1.0 - (1.0 - t) ** 2  # 0.51
    teacher = SimulatedHuman(TeacherConfig(equal_threshold=t), seed=5)
    rng = np.random.default_rng(123)
    n = 20_000
    ties = sum(teacher.judge(float(a), float(b))[0] is Answer.EQUAL for a, b in rng.random((n, 2)))
    assert abs(ties / n - expected) < 0.015


# -- skip -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ra", "rb", "skipped"),
    [
        (-1.1, -5.0, True),
        (-5.0, -1.0001, True),
        (-1.0, -5.0, False),  # max == threshold is not skipped
        (-5.0, 0.0, False),
        (3.0, 3.0, False),
    ],
)
def test_skip_threshold(ra: float, rb: float, skipped: bool) -> None:
    teacher = SimulatedHuman(TeacherConfig(skip_threshold=-1.0, equal_threshold=0.1), seed=0)
    answer, mu_a = teacher.judge(ra, rb)
    assert (answer is Answer.INCOMPARABLE) is skipped
    if skipped:
        assert mu_a is None


def test_skip_comes_before_equal() -> None:
    teacher = SimulatedHuman(TeacherConfig(skip_threshold=0.0, equal_threshold=1.0), seed=0)
    assert teacher.judge(-0.5, -0.5)[0] is Answer.INCOMPARABLE


# -- Boltzmann rationality --------------------------------------------------------


@pytest.mark.parametrize(("beta", "d"), [(2.0, 0.5), (1.0, -1.2), (0.5, 0.3)])
def test_boltzmann_choice_probability(beta: float, d: float) -> None:
    teacher = SimulatedHuman(TeacherConfig(beta=beta), seed=7)
    n = 20_000
    counts = _counts(teacher, 3.0 + d, 3.0, n)
    assert counts[Answer.A] + counts[Answer.B] == n
    assert abs(counts[Answer.A] / n - _sigmoid(beta * d)) < 0.02


def test_boltzmann_with_mistakes_mixes() -> None:
    # P(A) = p (1 - eps) + (1 - p) eps
    beta, d, eps = 1.0, 1.0, 0.2
    p = _sigmoid(beta * d)
    teacher = SimulatedHuman(TeacherConfig(beta=beta, mistake_prob=eps), seed=11)
    n = 20_000
    p_a = _counts(teacher, d, 0.0, n)[Answer.A] / n
    assert abs(p_a - (p * (1 - eps) + (1 - p) * eps)) < 0.02


# -- graded -----------------------------------------------------------------------


@pytest.mark.parametrize(("beta", "d"), [(1.5, 0.8), (0.7, -2.0), (3.0, 0.0)])
def test_graded_answers_sigmoid(beta: float, d: float) -> None:
    teacher = SimulatedHuman(TeacherConfig(beta=beta, graded=True), seed=0)
    for _ in range(20):
        answer, mu_a = teacher.judge(1.0 + d, 1.0)
        assert answer is Answer.GRADED
        assert mu_a is not None
        assert mu_a == pytest.approx(_sigmoid(beta * d), abs=1e-12)


def test_graded_mistake_swaps_mu() -> None:
    teacher = SimulatedHuman(TeacherConfig(beta=1.0, graded=True, mistake_prob=1.0), seed=0)
    answer, mu_a = teacher.judge(2.0, 0.0)
    assert answer is Answer.GRADED
    assert mu_a == pytest.approx(1.0 - _sigmoid(2.0), abs=1e-12)


def test_graded_answer_builds_valid_comparison() -> None:
    teacher = SimulatedHuman(TeacherConfig(beta=2.0, graded=True), seed=0, annotator_id="sim-7")
    gens = {
        "a": Generation("a", 0, "p", _segment([1.0, 0.5])),
        "b": Generation("b", 0, "p", _segment([0.0, 0.25])),
    }
    c = teacher.answer(Query(id="q", generation_ids=("a", "b"), round=0), gens)
    assert (c.query_id, c.annotator_id, c.answer) == ("q", "sim-7", Answer.GRADED)
    p = _sigmoid(2.0 * (1.5 - 0.25))
    assert c.mu == pytest.approx((p, 1.0 - p), abs=1e-12)


def test_answer_uses_query_order() -> None:
    teacher = SimulatedHuman(seed=0)
    gens = {"hi": Generation("hi", 0, "p", _segment([5.0])), "lo": Generation("lo", 0, "p", _segment([1.0]))}
    assert teacher.answer(Query(id="q1", generation_ids=("hi", "lo"), round=0), gens).answer is Answer.A
    assert teacher.answer(Query(id="q2", generation_ids=("lo", "hi"), round=0), gens).answer is Answer.B


# -- myopic return ----------------------------------------------------------------


def test_myopic_return_by_hand() -> None:
    seg = _segment([1.0, 2.0, 3.0, 4.0])
    teacher = SimulatedHuman(TeacherConfig(gamma=0.5))
    # T = 4: weights gamma^3, gamma^2, gamma^1, gamma^0 = 0.125, 0.25, 0.5, 1 (latest step counts most)
    by_hand = 0.125 * 1.0 + 0.25 * 2.0 + 0.5 * 3.0 + 1.0 * 4.0
    assert by_hand == 6.125
    assert teacher.segment_return(seg) == pytest.approx(by_hand, abs=1e-12)


def test_undiscounted_return_is_sum() -> None:
    seg = _segment([1.0, -2.0, 0.5])
    assert SimulatedHuman().segment_return(seg) == pytest.approx(-0.5, abs=1e-12)


def test_custom_reward_fn_is_used() -> None:
    seg = _segment([1.0, 1.0, 1.0])
    teacher = SimulatedHuman(TeacherConfig(gamma=0.9), reward_fn=lambda s: np.array([0.0, 10.0, 1.0]))
    assert teacher.segment_return(seg) == pytest.approx(0.9 * 10.0 + 1.0, abs=1e-12)


# -- determinism ------------------------------------------------------------------


def _answers(seed: int) -> list[tuple[Answer, float | None]]:
    teacher = SimulatedHuman(TeacherConfig(beta=1.0, mistake_prob=0.2), seed=seed)
    rng = np.random.default_rng(0)
    return [teacher.judge(float(a), float(b)) for a, b in rng.normal(size=(200, 2))]


def test_same_seed_same_answers() -> None:
    assert _answers(3) == _answers(3)
    assert _answers(3) != _answers(4)


# -- bad reward functions ---------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_reward_names_the_step(bad: float) -> None:
    def reward_fn(segment: Segment) -> np.ndarray:
        r = np.zeros(len(segment))
        r[2] = bad
        return r

    teacher = SimulatedHuman(reward_fn=reward_fn)
    with pytest.raises(RewardValueError, match="step 2") as e:
        teacher.segment_return(_segment([0.0] * 5))
    assert "reward_fn" in str(e.value)


def test_non_finite_true_reward_is_rejected() -> None:
    teacher = SimulatedHuman()
    with pytest.raises(RewardValueError, match="step 1"):
        teacher.segment_return(_segment([0.0, math.nan, 0.0]))


@pytest.mark.parametrize("shape", [(4,), (5, 1), (1, 5), ()])
def test_wrong_shape_reward_raises(shape: tuple[int, ...]) -> None:
    def reward_fn(segment: Segment) -> np.ndarray:
        return np.zeros(shape)

    teacher = SimulatedHuman(reward_fn=reward_fn)
    with pytest.raises(RewardValueError, match=r"expected \(5,\)") as e:
        teacher.segment_return(_segment([0.0] * 5))
    assert str(shape) in str(e.value)


def test_reward_value_error_is_value_error() -> None:
    assert issubclass(RewardValueError, ValueError)


# -- config validation ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"beta": 0.0},
        {"beta": -1.0},
        {"beta": math.nan},
        {"mistake_prob": -0.01},
        {"mistake_prob": 1.01},
        {"mistake_prob": math.nan},
        {"equal_threshold": -0.1},
        {"equal_threshold": math.nan},
        {"gamma": 0.0},
        {"gamma": -0.5},
        {"gamma": 1.01},
        {"gamma": math.nan},
        {"graded": True},  # needs a finite beta
        {"graded": True, "beta": math.inf},
    ],
)
def test_invalid_teacher_config_raises(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="teacher"):
        TeacherConfig(**kwargs)  # type: ignore[arg-type]


def test_nan_skip_threshold_raises() -> None:
    with pytest.raises(ValueError):
        TeacherConfig(skip_threshold=math.nan)


def test_valid_teacher_config_edges() -> None:
    cfg = TeacherConfig(beta=1e-6, mistake_prob=1.0, equal_threshold=0.0, gamma=1.0, graded=True)
    assert cfg.graded
    assert TeacherConfig(mistake_prob=0.0, gamma=1e-9).gamma == 1e-9
