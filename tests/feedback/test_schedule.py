"""Queries per round: constant, or decreasing with the same total."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rlhfkit.config import load_config
from rlhfkit.feedback.schedule import queries_in_round, queries_per_round
from rlhfkit.loop import Run


def test_constant_asks_comparisons_per_round_after_the_initial_ones() -> None:
    assert queries_per_round("constant", 4, 40, 20) == [40, 20, 20, 20]


def test_decreasing_shares_the_same_total_by_one_over_k_minus_one() -> None:
    # 5 rounds of 20: 80 over rounds 2..5 with weights 1, 1/2, 1/3, 1/4 (sum 25/12):
    # 38.4, 19.2, 12.8, 9.6 -> floors 38, 19, 12, 9 (78); the 2 left go to the largest remainders, 0.8 and 0.6.
    assert queries_per_round("decreasing", 5, 40, 20) == [40, 38, 19, 13, 10]
    # 3 rounds of 7: 14 by 1, 1/2: 9.33, 4.67 -> 9, 4, and the one left to round 3 (0.67 > 0.33).
    assert queries_per_round("decreasing", 3, 40, 7) == [40, 9, 5]
    assert queries_per_round("decreasing", 1, 40, 20) == [40]
    for rounds in range(2, 12):
        assert sum(queries_per_round("decreasing", rounds, 0, 13)) == 13 * (rounds - 1)


def test_a_round_past_the_plan_counts_as_the_last_of_a_longer_run() -> None:
    assert queries_in_round("decreasing", 2, 5, 40, 20) == 38
    assert queries_in_round("decreasing", 6, 5, 40, 20) == queries_per_round("decreasing", 6, 40, 20)[-1]
    assert queries_in_round("constant", 9, 5, 40, 20) == 20


def test_an_unknown_schedule_is_named() -> None:
    with pytest.raises(ValueError, match="unknown query schedule 'linear'"):
        queries_per_round("linear", 3, 1, 1)  # type: ignore[arg-type]  # the error under test


def test_a_run_asks_the_scheduled_number_of_queries(tiny_config: Path, tmp_path: Path) -> None:
    config = load_config(tiny_config)  # 12 comparisons in round 1, then 6 per round
    config = dataclasses.replace(
        config, rounds=3, feedback=dataclasses.replace(config.feedback, query_schedule="decreasing")
    )
    run = Run.create(config, tmp_path / "run", progress=False)
    # 6 x 2 = 12 over rounds 2 and 3 by 1 and 1/2: 8 and 4.
    assert [len(run.sample_queries(k)) for k in (1, 2, 3)] == [12, 8, 4]
