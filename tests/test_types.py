"""Tests for rlhfkit.types: label distributions of comparisons, segment validation, queries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlhfkit.types import Answer, Comparison, Query, Segment


def _segment(T: int = 4, obs_dim: int = 3) -> Segment:
    return Segment(
        observations=np.arange(T * obs_dim, dtype=np.float64).reshape(T, obs_dim),
        actions=np.zeros((T, 2)),
        true_rewards=np.ones(T),
        info={"episode": 1},
    )


# -- Comparison -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "mu_a", "expected"),
    [
        (Answer.A, None, (1.0, 0.0)),
        (Answer.B, None, (0.0, 1.0)),
        (Answer.EQUAL, None, (0.5, 0.5)),
        (Answer.GRADED, 0.9, (0.9, 1.0 - 0.9)),
        (Answer.GRADED, 0.25, (0.25, 0.75)),
        (Answer.GRADED, 0.0, (0.0, 1.0)),
        (Answer.INCOMPARABLE, None, None),
    ],
)
def test_make_gives_label_distribution(
    answer: Answer, mu_a: float | None, expected: tuple[float, float] | None
) -> None:
    c = Comparison.make("q1", answer, "ann", mu_a=mu_a, created_at=12.5)
    assert c.mu == expected
    assert c.answer is answer
    assert c.usable is (expected is not None)
    assert (c.query_id, c.annotator_id, c.created_at) == ("q1", "ann", 12.5)


def test_make_sets_created_at_when_not_given() -> None:
    c = Comparison.make("q1", Answer.A, "ann")
    assert isinstance(c.created_at, float)
    assert c.created_at > 1.6e9  # a wall-clock time stamp


def test_mu_is_normalised_to_float_tuple() -> None:
    c = Comparison(query_id="q", annotator_id="a", created_at=0.0, answer=Answer.A, mu=(1, 0))  # type: ignore[arg-type]
    assert c.mu == (1.0, 0.0)
    assert all(type(v) is float for v in c.mu)  # type: ignore[union-attr]


def test_graded_without_mu_a_raises() -> None:
    with pytest.raises(ValueError, match="mu_a"):
        Comparison.make("q", Answer.GRADED, "ann")


@pytest.mark.parametrize(
    "mu_a",
    [1.2, -0.1, math.nan, math.inf, -math.inf],
)
def test_make_graded_with_invalid_mu_a_raises(mu_a: float) -> None:
    with pytest.raises(ValueError, match="mu"):
        Comparison.make("q", Answer.GRADED, "ann", mu_a=mu_a)


@pytest.mark.parametrize(
    ("answer", "mu"),
    [
        (Answer.GRADED, (0.7, 0.7)),  # sum != 1
        (Answer.GRADED, (0.2, 0.2)),  # sum != 1
        (Answer.GRADED, (1.5, -0.5)),  # sums to 1 but outside [0, 1]
        (Answer.GRADED, (-0.5, 1.5)),
        (Answer.GRADED, (math.nan, 0.5)),
        (Answer.GRADED, (0.5, math.nan)),
        (Answer.GRADED, (math.inf, 0.0)),
        (Answer.GRADED, None),  # a graded answer needs mu
        (Answer.GRADED, (0.3, 0.3, 0.4)),  # not a pair
        (Answer.A, None),
        (Answer.EQUAL, None),
        (Answer.INCOMPARABLE, (0.5, 0.5)),  # mu on incomparable
        (Answer.INCOMPARABLE, (1.0, 0.0)),
        (Answer.A, (0.0, 1.0)),  # answer and mu disagree
        (Answer.A, (0.9, 0.1)),
        (Answer.B, (1.0, 0.0)),
        (Answer.B, (0.5, 0.5)),
        (Answer.EQUAL, (1.0, 0.0)),
        (Answer.EQUAL, (0.6, 0.4)),
    ],
)
def test_invalid_mu_raises(answer: Answer, mu: tuple[float, ...] | None) -> None:
    with pytest.raises(ValueError):
        Comparison(query_id="q", annotator_id="a", created_at=0.0, answer=answer, mu=mu)  # type: ignore[arg-type]


def test_mu_sum_tolerance_is_tight() -> None:
    ok = Comparison(query_id="q", annotator_id="a", created_at=0.0, answer=Answer.GRADED, mu=(0.3, 0.7 + 1e-9))
    assert ok.mu is not None
    with pytest.raises(ValueError, match="sum"):
        Comparison(query_id="q", annotator_id="a", created_at=0.0, answer=Answer.GRADED, mu=(0.3, 0.7 + 1e-4))


def test_comparison_is_frozen() -> None:
    c = Comparison.make("q", Answer.A, "ann")
    with pytest.raises(AttributeError):
        c.mu = (0.0, 1.0)  # type: ignore[misc]


# -- Segment ----------------------------------------------------------------------


def test_segment_accepts_box_and_discrete_actions() -> None:
    box = Segment(np.zeros((5, 3)), np.zeros((5, 2)), np.zeros(5))
    disc = Segment(np.zeros((5, 3)), np.array([0, 1, 2, 1, 0]), np.zeros(5))
    assert len(box) == 5
    assert len(disc) == 5
    assert box.actions.shape == (5, 2)
    assert disc.actions.shape == (5,)
    np.testing.assert_array_equal(disc.actions, [0, 1, 2, 1, 0])


@pytest.mark.parametrize(
    ("obs_shape", "act_shape", "rew_shape", "field_name"),
    [
        ((5,), (5,), (5,), "observations"),  # obs must be 2-D
        ((5, 3, 1), (5,), (5,), "observations"),
        ((5, 3), (4,), (5,), "actions"),  # wrong T
        ((5, 3), (4, 2), (5,), "actions"),
        ((5, 3), (5, 2, 1), (5,), "actions"),  # 3-D actions
        ((5, 3), (), (5,), "actions"),  # scalar actions
        ((5, 3), (5,), (4,), "true_rewards"),  # wrong T
        ((5, 3), (5,), (5, 1), "true_rewards"),  # not 1-D
    ],
)
def test_segment_shape_errors(
    obs_shape: tuple[int, ...], act_shape: tuple[int, ...], rew_shape: tuple[int, ...], field_name: str
) -> None:
    with pytest.raises(ValueError, match=f"Segment.{field_name}"):
        Segment(np.zeros(obs_shape), np.zeros(act_shape), np.zeros(rew_shape))


def test_segment_arrays_are_read_only_copies() -> None:
    obs = np.zeros((4, 3))
    act = np.zeros((4, 2))
    rew = np.zeros(4)
    seg = Segment(obs, act, rew)
    for arr in (seg.observations, seg.actions, seg.true_rewards):
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0] = 1.0
    # The segment holds copies: changing the caller's arrays does not change it.
    obs[0, 0] = 7.0
    act[0, 0] = 7.0
    rew[0] = 7.0
    assert seg.observations[0, 0] == 0.0
    assert seg.actions[0, 0] == 0.0
    assert seg.true_rewards[0] == 0.0


def test_segment_arrays_are_float64_and_discrete_actions_stay_integer() -> None:
    seg = Segment(np.zeros((2, 1), dtype=np.float32), np.array([1, 0]), [0.5, 1.5])
    assert seg.observations.dtype == np.float64
    assert seg.actions.dtype == np.int64
    assert seg.true_rewards.dtype == np.float64
    box = Segment(np.zeros((2, 1)), np.array([[0.5], [1.0]], dtype=np.float32), [0.5, 1.5])
    assert box.actions.dtype == np.float64


def test_segment_fields_cannot_be_reassigned() -> None:
    seg = _segment()
    with pytest.raises(AttributeError):
        seg.true_rewards = np.zeros(4)  # type: ignore[misc]


# -- Query ------------------------------------------------------------------------


def test_query_with_duplicate_ids_raises() -> None:
    with pytest.raises(ValueError, match="distinct"):
        Query(id="q", generation_ids=("g1", "g1"), round=0)
    with pytest.raises(ValueError, match="distinct"):
        Query(id="q", generation_ids=("g1", "g2", "g1"), round=0, kind="ranking")


@pytest.mark.parametrize("ids", [("g1",), ("g1", "g2", "g3"), ()])
def test_comparison_query_needs_exactly_two_ids(ids: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="exactly 2"):
        Query(id="q", generation_ids=ids, round=0)


def test_ranking_query_may_hold_more_ids() -> None:
    q = Query(id="q", generation_ids=("g1", "g2", "g3"), round=2, kind="ranking")
    assert q.generation_ids == ("g1", "g2", "g3")
    assert q.kind == "ranking"


def test_valid_comparison_query() -> None:
    q = Query(id="q", generation_ids=("a", "b"), round=1, created_at=3.0)
    assert (q.id, q.generation_ids, q.round, q.kind, q.created_at) == ("q", ("a", "b"), 1, "comparison", 3.0)


def test_segment_info_is_not_shared_with_caller() -> None:
    info: dict[str, object] = {"episode": 1}
    seg = Segment(np.zeros((2, 1)), np.zeros(2), np.zeros(2), info=info)
    info["episode"] = 2
    assert seg.info == {"episode": 1}


def test_make_with_string_answer_coerces_or_raises_value_error() -> None:
    try:
        c = Comparison.make("q", "A", "ann")  # type: ignore[arg-type]
    except ValueError:
        return
    assert c.mu == (1.0, 0.0)
