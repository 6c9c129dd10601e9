"""Stores for the formats' tests: an empty one, and ones with pending queries for Label Studio and Argilla."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from formats_helpers import segment

from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback_records import Comparison
from rlhfkit.types import Generation, Query, Text


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeedbackStore]:
    """An empty store (SQLite in the test's folder)."""
    s = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.sqlite'}")
    yield s
    s.close()


@pytest.fixture
def queries_store(tmp_path: Path) -> FeedbackStore:
    """Pending text queries of every kind (the prompts differ within a query), and one comparison answered."""
    s = FeedbackStore.in_dir(tmp_path / "run")
    gens = [
        Generation(f"g{i}", 1, "round-0", Text(f"prompt <{i}>", f"completion {i} <script>x</script>")) for i in range(6)
    ]
    s.add_generations(gens)
    s.add_queries(
        [
            Query("c0", ("g0", "g1"), 1, created_at=1.0),
            Query("c1", ("g2", "g3"), 1, created_at=2.0),
            Query("c2", ("g4", "g5"), 1, created_at=3.0),
            Query("r0", ("g0",), 1, kind="rating", created_at=4.0),
            Query("l0", ("g1",), 1, kind="label", created_at=5.0),
            Query("k0", ("g2", "g3", "g4"), 1, kind="ranking", created_at=6.0),
            Query("t0", ("g0", "g5"), 1, kind="language", created_at=7.0),
            Query("x0", ("g3",), 1, kind="correction", created_at=8.0),
        ]
    )
    s.record(Comparison.make("c2", "A", "someone"))  # answered already: not exported
    return s


@pytest.fixture
def mixed_store(tmp_path: Path) -> FeedbackStore:
    """Text queries of every kind (completions of one prompt per query) and control ones of three kinds."""
    s = FeedbackStore.in_dir(tmp_path / "run")
    texts = [Generation(f"g{i}", 1, "r", Text(f"prompt {i // 3}", f"completion {i} <i>x</i>")) for i in range(6)]
    s.add_generations([*texts, *(Generation(f"s{i}", 1, "r", segment(i)) for i in range(4))])
    s.add_queries(
        [
            Query("c0", ("g0", "g1"), 1, created_at=1.0),
            Query("r0", ("g0",), 1, kind="rating", created_at=2.0),
            Query("l0", ("g1",), 1, kind="label", created_at=3.0),
            Query("k0", ("g3", "g4", "g5"), 1, kind="ranking", created_at=4.0),
            Query("k1", ("g0", "g1"), 1, kind="ranking", created_at=4.5),
            Query("t0", ("g3", "g4"), 1, kind="language", created_at=5.0),
            Query("x0", ("g2",), 1, kind="correction", created_at=6.0),
            Query("cs", ("s0", "s1"), 2, created_at=7.0),
            Query("rs", ("s2",), 2, kind="rating", created_at=8.0),
            Query("ks", ("s1", "s2", "s3"), 2, kind="ranking", created_at=9.0),
            Query("xs", ("s3",), 2, kind="correction", created_at=10.0),  # no tool can answer it: left out
        ]
    )
    return s
