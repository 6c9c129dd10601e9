"""Tests for rlhfkit.types: segment validation, queries."""

from __future__ import annotations

import numpy as np
import pytest

from rlhfkit.types import Query, Segment


def _segment(T: int = 4, obs_dim: int = 3) -> Segment:
    return Segment(
        observations=np.arange(T * obs_dim, dtype=np.float64).reshape(T, obs_dim),
        actions=np.zeros((T, 2)),
        true_rewards=np.ones(T),
        info={"episode": 1},
    )


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
