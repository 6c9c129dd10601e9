"""Query selection: which generations to put in front of a human.

A selector has one method, ``select(generations, n, rng) -> queries``:
:class:`UniformPairs` (comparisons, each generation shown once) and
:class:`UniformQueries` (any feedback kind, drawn uniformly: a pair, one
generation, or ``k`` for a ranking; generations may appear in several queries).
Active selection (ensemble disagreement, information gain) slots in as another
class with the same method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from rlhfkit.types import QUERY_SIZES, Generation, Query, new_id


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


class UniformQueries:
    """Uniformly drawn queries of one kind; ``k`` is the ranking length."""

    def __init__(self, kind: str, k: int = 4) -> None:
        if kind not in QUERY_SIZES:
            raise ValueError(f"unknown feedback kind {kind!r}; expected one of {', '.join(QUERY_SIZES)}")
        low, high = QUERY_SIZES[kind]
        self.kind = kind
        self.size = low if low == high else k
        if self.size < low or (high is not None and self.size > high):
            raise ValueError(f"a {kind} query shows {low}..{high} generations, got k={k}")

    def select(self, generations: Sequence[Generation], n: int, rng: np.random.Generator) -> list[Query]:
        if len(generations) < self.size:
            raise ValueError(f"a {self.kind} query needs {self.size} generations, got {len(generations)}")
        round_ = max(g.round for g in generations)
        return [
            Query(
                new_id(rng),
                tuple(generations[int(i)].id for i in rng.choice(len(generations), self.size, replace=False)),
                round_,
                kind=self.kind,
            )
            for _ in range(n)
        ]
