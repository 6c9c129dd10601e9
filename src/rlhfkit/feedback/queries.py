"""Query selection: which generations to put in front of a human.

A selector has one method, ``select(generations, n, rng) -> queries``. Active
selection (ensemble disagreement, information gain) slots in as another class
with the same method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from rlhfkit.types import Generation, Query, new_id


class QuerySelector(Protocol):
    def select(self, generations: Sequence[Generation], n: int, rng: np.random.Generator) -> list[Query]: ...


class UniformPairs:
    """Pairs drawn uniformly at random, each generation used at most once (needs ``2n`` of them)."""

    def select(self, generations: Sequence[Generation], n: int, rng: np.random.Generator) -> list[Query]:
        if len(generations) < 2 * n:
            raise ValueError(f"{n} disjoint pairs need {2 * n} generations, got {len(generations)}")
        order = rng.permutation(len(generations))[: 2 * n]
        round_ = max(g.round for g in generations) if generations else 0
        return [
            Query(new_id(rng), (generations[order[2 * j]].id, generations[order[2 * j + 1]].id), round_)
            for j in range(n)
        ]
