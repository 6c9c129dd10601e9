"""Uniform pair selection."""

from __future__ import annotations

import numpy as np
import pytest

from rlhfkit.feedback.queries import UniformPairs
from rlhfkit.types import Generation, Segment


def _gens(n: int, round_: int = 3) -> list[Generation]:
    seg = Segment(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2))
    return [Generation(f"g{i}", round_, "p", seg) for i in range(n)]


def test_pairs_are_disjoint_comparisons_of_the_round() -> None:
    queries = UniformPairs().select(_gens(10), 5, np.random.default_rng(0))
    ids = [g for q in queries for g in q.generation_ids]
    assert len(queries) == 5 and len(set(ids)) == 10
    assert all(q.kind == "comparison" and q.round == 3 for q in queries)


def test_selection_is_seeded_and_uniform() -> None:
    a = UniformPairs().select(_gens(10), 5, np.random.default_rng(1))
    b = UniformPairs().select(_gens(10), 5, np.random.default_rng(1))
    assert [q.generation_ids for q in a] == [q.generation_ids for q in b]
    # Over many draws every generation lands in slot A about equally often.
    counts = np.zeros(10)
    rng = np.random.default_rng(2)
    for _ in range(2000):
        for q in UniformPairs().select(_gens(10), 2, rng):
            counts[int(q.generation_ids[0][1:])] += 1
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()


def test_too_few_generations_is_an_error() -> None:
    with pytest.raises(ValueError, match="need 6 generations, got 5"):
        UniformPairs().select(_gens(5), 3, np.random.default_rng(0))
