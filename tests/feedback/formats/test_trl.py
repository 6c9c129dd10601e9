"""TRL standard and conversational rows: read, stored, exported and read back the same."""

from __future__ import annotations

from pathlib import Path

from formats_helpers import (
    CONVERSATIONAL_ROWS,
    TRL_ROWS,
    assistant,
    roundtrip,
    user,
)

from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback_records import Answer


def test_trl_roundtrip(tmp_path: Path, store: FeedbackStore) -> None:
    first, second = roundtrip(tmp_path, store, TRL_ROWS, "trl")
    assert len(first) == len(TRL_ROWS)
    assert second == first
    assert [r.source_line for r in second] == list(range(1, len(TRL_ROWS) + 1))
    assert first[1].margin == 2.5
    assert first[2].mu == (0.5, 0.5)
    assert first[3].mu == (0.8, 1.0 - 0.8)
    assert first[4].prompt == "" and first[4].chosen == "Q: capital of France? A: Paris"
    assert first[5].mu is None
    assert first[0].mu == (1.0, 0.0) and first[0].annotator_id == "ann"
    answers = [c.answer for c in store.comparisons()]
    assert answers == [Answer.A, Answer.A, Answer.EQUAL, Answer.GRADED, Answer.A, Answer.INCOMPARABLE, Answer.A]


def test_trl_conversational_roundtrip(tmp_path: Path, store: FeedbackStore) -> None:
    first, second = roundtrip(tmp_path, store, CONVERSATIONAL_ROWS, "trl_conversational")
    assert second == first
    assert first[0].prompt == ({"role": "system", "content": "Be brief."}, user("What colour is the sky?"))
    assert first[0].chosen == (assistant("Blue."),)
    assert first[2].prompt == ()
    assert first[1].mu == (0.6, 1.0 - 0.6)
