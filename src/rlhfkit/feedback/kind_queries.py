"""Queries of any feedback kind, drawn uniformly: the selector behind the feedback-kinds tests and benchmark.

``UniformQueries(kind).select(generations, n, rng)`` returns ``n`` queries, each
showing distinct generations drawn uniformly at random (as many as the kind
needs: a pair, one generation, or ``k`` for a ranking). Generations may appear
in several queries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rlhfkit.types import QUERY_SIZES, Generation, Query, new_id


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
