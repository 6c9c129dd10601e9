"""The linear-feature belief (APReL's approach): its posterior samples and its two acquisitions."""

from __future__ import annotations

import numpy as np
import pytest

from rlhfkit.feedback.belief import (
    LinearBelief,
    alignment,
    answer_probabilities,
    choose_query,
    max_information,
    run_active_learning,
    unit,
    volume_removal,
)


def test_max_information_asks_where_the_samples_disagree_and_volume_removal_where_the_mean_is_unsure() -> None:
    # Two samples of w in 2-D and three candidate pairs (rows: phi(A) - phi(B)), beta = 1.
    samples = np.array([[1.0, 0.0], [-1.0, 0.0]])
    diffs = np.array(
        [
            [0.0, 0.0],  # both samples say P = 0.5: the mean is 0.5 but an answer tells nothing about w
            [4.0, 0.0],  # sample 1: sigmoid(4) = 0.982, sample 2: sigmoid(-4) = 0.018; mean 0.5
            [0.0, 3.0],  # both samples say 0.5 again
        ]
    )
    P = answer_probabilities(samples, diffs, beta=1.0)
    s4 = 1 / (1 + np.exp(-4.0))
    np.testing.assert_allclose(P, [[0.5, s4, 0.5], [0.5, 1 - s4, 0.5]])

    def h(p: float) -> float:
        return float(-(p * np.log(p) + (1 - p) * np.log(1 - p)))

    # I = H(mean) - mean H: 0 for pairs 0 and 2, ln 2 - H(0.982) for pair 1.
    np.testing.assert_allclose(max_information(P), [0.0, np.log(2) - h(s4), 0.0], atol=1e-12)
    assert choose_query("max_information", samples, diffs, 1.0) == 1
    # Volume removal sees only the mean, 0.5 everywhere: a three-way tie, won by the first pair.
    np.testing.assert_allclose(volume_removal(P), [0.5, 0.5, 0.5])
    assert choose_query("volume_removal", samples, diffs, 1.0) == 0
    assert choose_query("uniform", samples, diffs, 1.0) == 0


def test_volume_removal_is_the_expected_mass_an_answer_removes() -> None:
    rng = np.random.default_rng(3)
    P = rng.random((7, 5))
    # answer A removes 1 - P_s of sample s, answer B removes P_s; A comes with probability mean P.
    pa = P.mean(axis=0)
    expected = pa * (1 - P).mean(axis=0) + (1 - pa) * P.mean(axis=0)
    np.testing.assert_allclose(volume_removal(P), expected)
    samples = np.array([[1.0, 0.0], [0.0, 1.0]])
    diffs = np.array([[2.0, 2.0], [0.3, -0.2], [3.0, 0.0]])  # means 0.881, 0.512, 0.738
    assert choose_query("volume_removal", samples, diffs, 1.0) == 1


def test_the_samples_follow_the_exact_posterior_on_the_circle() -> None:
    # In 2-D the posterior over the angle of w can be computed on a grid; compare its mean with the sampler's.
    belief = LinearBelief(dim=2, beta=2.0, chains=200, per_chain=10, seed=1)
    answers = [((1.0, 0.2), (0.0, 0.0), 1.0), ((0.0, 1.0), (0.3, 0.0), 1.0), ((0.5, 0.5), (0.0, 1.0), 0.5)]
    for a, b, y in answers:
        belief.update(np.array(a), np.array(b), y)
    theta = np.linspace(-np.pi, np.pi, 20001)
    grid = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    post = np.exp(belief.log_likelihood(grid))
    post /= post.sum()
    exact_mean = post @ grid
    sampled_mean = belief.samples().mean(axis=0)
    np.testing.assert_allclose(sampled_mean, exact_mean, atol=0.04)
    assert np.linalg.norm(exact_mean) < 0.9  # a wide posterior: the check is not only about its mode


def test_the_belief_without_answers_is_the_uniform_prior() -> None:
    s = LinearBelief(dim=3, seed=0).samples()
    np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1.0)
    assert np.linalg.norm(s.mean(axis=0)) < 0.15


def test_max_information_learns_the_weights_in_fewer_answers_than_uniform_pairs() -> None:
    features = np.random.default_rng(0).standard_normal((500, 4))
    final: dict[str, list[float]] = {"uniform": [], "max_information": []}
    for acquisition, scores in final.items():
        for seed in range(6):
            w_true = unit(np.random.default_rng(100 + seed).standard_normal(4))
            scores.append(run_active_learning(features, w_true, acquisition, queries=10, beta=5.0, seed=seed)[-1])
    # measured: 0.97 (max-information) vs 0.82 (uniform) mean alignment after 10 answers
    assert np.mean(final["max_information"]) >= 0.93
    assert np.mean(final["max_information"]) >= np.mean(final["uniform"]) + 0.08


def test_bad_answers_are_refused_with_the_problem_named() -> None:
    belief = LinearBelief(dim=2)
    with pytest.raises(ValueError, match=r"label is P\(A>B\) in \[0, 1\], got 1.5"):
        belief.update(np.zeros(2), np.ones(2), 1.5)
    with pytest.raises(ValueError, match=r"shape \(3,\) for a belief over 2 weights"):
        belief.update(np.zeros(3), np.ones(3), 1.0)
    with pytest.raises(ValueError, match="unknown acquisition 'bald'"):
        choose_query("bald", np.ones((1, 2)), np.ones((1, 2)), 1.0)
    assert belief.diffs == []
    assert alignment(np.array([2.0, 0.0]), np.array([1.0, 0.0])) == pytest.approx(1.0)
