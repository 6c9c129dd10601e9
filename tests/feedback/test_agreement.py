"""Agreement between annotators: pairwise agreement and Krippendorff's alpha against hand-computed numbers."""

from __future__ import annotations

import pytest

from rlhfkit.feedback.agreement import agreement, category, krippendorff_alpha
from rlhfkit.feedback_records import Comparison


def test_nominal_alpha_by_hand() -> None:
    # units (A,A) (B,B) (A,B) (A,A): o_AA = 4, o_BB = 2, o_AB = o_BA = 1; n_A = 5, n_B = 3, n = 8
    # alpha = 1 - (n - 1) * (o_AB + o_BA) / (2 * n_A * n_B) = 1 - 7 * 2 / 30 = 8/15
    assert krippendorff_alpha([["A", "A"], ["B", "B"], ["A", "B"], ["A", "A"]]) == pytest.approx(8 / 15)


def test_interval_alpha_by_hand() -> None:
    # observed: 2 * 0.1^2 + 2 * 0.2^2 = 0.10; expected: sum over ordered pairs of the 4 values = 5.98
    alpha = krippendorff_alpha([[0.9, 1.0], [0.0, 0.2]], lambda c, k: (float(c) - float(k)) ** 2)  # type: ignore[arg-type]
    assert alpha == pytest.approx(1 - 3 * 0.10 / 5.98)


def test_alpha_edge_cases() -> None:
    assert krippendorff_alpha([["A", "A", "A"], ["B", "B"]]) == pytest.approx(1.0)
    assert krippendorff_alpha([["A", "B"], ["B", "A"]]) < 0  # systematic disagreement
    assert krippendorff_alpha([["A"], ["B"]]) is None  # nothing pairable
    assert krippendorff_alpha([["A", "A"], ["A", "A"]]) is None  # one value only: undefined
    # a unit of three coders counts each ordered pair with weight 1 / (m - 1) = 1/2:
    # (A,A,B) gives o_AA = 1, o_AB = o_BA = 1; (B,B) gives o_BB = 2; n_A = 2, n_B = 3, n = 5
    # alpha = 1 - (n - 1) * (o_AB + o_BA) / (2 * n_A * n_B) = 1 - 4 * 2 / 12 = 1/3
    assert krippendorff_alpha([["A", "A", "B"], ["B", "B"]]) == pytest.approx(1 / 3)


def test_agreement_of_stored_answers() -> None:
    c = Comparison.make
    answers = [
        c("q1", "A", "ann"),
        c("q1", "graded", "bob", mu_a=0.8),  # graded on A's side: agrees with "A"
        c("q1", "incomparable", "cy"),  # no label: left out
        c("q2", "B", "ann"),
        c("q2", "equal", "bob"),
        c("q3", "A", "ann"),  # a single answer: not a unit
    ]
    a = agreement(answers)
    assert [category(x) for x in answers] == ["A", "A", None, "B", "equal", "A"]
    assert (a.n_units, a.n_pairs, a.pairwise) == (2, 2, 0.5)
    assert a.by_pair == {"ann|bob": (1, 2)}
    # nominal: units (A,A) (B,equal): o_AA = 2, o_B,eq = o_eq,B = 1; n_A = 2, n_B = n_eq = 1, n = 4
    # expected disagreement: 2 * (2*1 + 2*1 + 1*1) = 10; alpha = 1 - 3 * 2 / 10
    assert a.alpha_nominal == pytest.approx(1 - 3 * 2 / 10)
    # interval on mu(A): units (1.0, 0.8) and (0.0, 0.5)
    values = [1.0, 0.8, 0.0, 0.5]
    expected = sum((x - y) ** 2 for x in values for y in values)
    assert a.alpha_interval == pytest.approx(1 - 3 * (2 * 0.2**2 + 2 * 0.5**2) / expected)
