"""How many queries each round asks: constant, or decreasing over the run with the same total.

Round 1 asks ``initial`` queries (about the base policy). Later rounds share
``per_round * (rounds - 1)`` queries: the same number each (``constant``), or in
proportion to ``1 / (k - 1)`` in round ``k`` (``decreasing``: many while the
policy moves fast, fewer later; Christiano et al. 2017 lowered their label rate
over training the same way, and imitation's PreferenceComparisons calls this
query schedule "hyperbolic"). Shares become whole numbers by largest remainders
(ties to the earlier round), so both schedules ask the same total.
"""

from __future__ import annotations

import math
from typing import Literal

Schedule = Literal["constant", "decreasing"]
"""Queries per round after round 1 (see the module docstring)."""


def queries_per_round(schedule: Schedule, rounds: int, initial: int, per_round: int) -> list[int]:
    """Queries asked in rounds ``1 .. rounds`` (a list of ``rounds`` counts)."""
    if schedule == "constant" or rounds < 2:
        return [initial] + [per_round] * (rounds - 1)
    if schedule != "decreasing":
        raise ValueError(f"unknown query schedule {schedule!r}; expected 'constant' or 'decreasing'")
    total = per_round * (rounds - 1)
    weights = [1 / (k - 1) for k in range(2, rounds + 1)]
    exact = [total * w / sum(weights) for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return [initial, *counts]


def queries_in_round(schedule: Schedule, k: int, rounds: int, initial: int, per_round: int) -> int:
    """Queries asked in round ``k`` of ``rounds`` (a round past the planned ones, as in a run resumed for more
    rounds, counts as the last of a run that long)."""
    return queries_per_round(schedule, max(rounds, k), initial, per_round)[k - 1]
