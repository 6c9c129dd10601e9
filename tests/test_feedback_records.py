"""Tests for rlhfkit.feedback_records: the label distributions of comparisons.

(Every other kind's rules: tests/feedback/test_kinds_store.py.)"""

from __future__ import annotations

import math

import pytest

from rlhfkit.feedback_records import Answer, Comparison

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


def test_make_with_string_answer_coerces_or_raises_value_error() -> None:
    try:
        c = Comparison.make("q", "A", "ann")  # type: ignore[arg-type]
    except ValueError:
        return
    assert c.mu == (1.0, 0.0)
