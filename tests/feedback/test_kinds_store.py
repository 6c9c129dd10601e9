"""Every feedback kind through the store: round trips, and bad input refused with nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rlhfkit.feedback.store import FeedbackStore, StoreError
from rlhfkit.feedback_records import (
    NONE_OF_THESE,
    Answer,
    Comparison,
    Correction,
    InvalidFeedbackError,
    Label,
    Language,
    Ranking,
    Rating,
)
from rlhfkit.types import Generation, Query, Segment, Text


def _seg(seed: int, T: int = 5) -> Segment:
    rng = np.random.default_rng(seed)
    return Segment(rng.normal(size=(T, 3)), rng.normal(size=(T, 1)), rng.normal(size=T), info={"seed": seed})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeedbackStore]:
    s = FeedbackStore(f"sqlite:///{tmp_path / 'fb.sqlite'}")
    gens = [Generation(f"g{i}", 0, "p", _seg(i)) for i in range(4)]
    gens.append(Generation("t0", 0, "p", Text("the cat is", " happy .")))
    s.add_generations(gens)
    s.add_queries(
        [
            Query("cmp", ("g0", "g1"), 0),
            Query("rank", ("g0", "g1", "g2"), 0, kind="ranking"),
            Query("rate", ("g2",), 0, kind="rating"),
            Query("lab", ("g3",), 0, kind="label"),
            Query("fix", ("g1",), 0, kind="correction"),
            Query("fix-text", ("t0",), 0, kind="correction"),
            Query("say", ("g0", "g3"), 0, kind="language"),
        ]
    )
    yield s
    s.close()


def test_every_kind_round_trips(store: FeedbackStore) -> None:
    edited = _seg(9)
    records = [
        Comparison.make("cmp", Answer.B, "ann", created_at=1.0),
        Ranking.make("rank", ["g2", "g0", "g1"], "ann", created_at=2.0),
        Rating.make("rate", 5.5, "ann", scale=(1, 7), created_at=3.0),
        Label.make("lab", "ok", "ann", choices=("bad", "ok", "good"), created_at=4.0),
        Correction.make("fix", edited, "ann", created_at=5.0),
        Correction.make("fix-text", Text("the cat is", " happy and kind ."), "ann", created_at=5.5),
        Language.make("say", "  less swinging, please ", "ann", created_at=6.0),
    ]
    for r in records:
        assert store.record(r) is True
    assert store.record(records[1]) is False  # the same annotator twice: stored once
    got = store.feedback()
    assert [f.kind for f in got] == [r.kind for r in records]
    rank, rate, lab, fix, fix_text, say = got[1:]
    assert isinstance(rank, Ranking) and rank.ranked == ("g2", "g0", "g1")
    assert isinstance(rate, Rating) and (rate.value, rate.scale) == (5.5, (1.0, 7.0))
    assert isinstance(lab, Label) and (lab.label, lab.choices, lab.ordinal, lab.index) == (
        "ok",
        ("bad", "ok", "good"),
        True,
        1,
    )
    assert isinstance(fix, Correction) and isinstance(fix.corrected, Segment)
    np.testing.assert_array_equal(fix.corrected.observations, edited.observations)  # exact floats
    np.testing.assert_array_equal(fix.corrected.actions, edited.actions)
    assert isinstance(fix_text, Correction) and isinstance(fix_text.corrected, Text)
    assert fix_text.corrected.completion == " happy and kind ."
    assert isinstance(say, Language) and say.utterance == "  less swinging, please "  # raw, not stripped
    assert [f.query_id for f in store.feedback(kind="rating")] == ["rate"]
    assert [c.query_id for c in store.comparisons()] == ["cmp"]
    with pytest.raises(ValueError, match="unknown feedback kind"):
        store.feedback(kind="vibes")


def test_none_of_these_is_stored() -> None:
    lab = Label.make("lab", NONE_OF_THESE, "ann", choices=("bad", "good"))
    assert not lab.usable and lab.index == -1


# -- bad input: one clear error each, nothing written ----------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Rating.make("rate", 8, "ann", scale=(1, 7)), r"rating 8 is outside its scale \[1, 7\]"),
        (lambda: Rating.make("rate", float("nan"), "ann"), "outside its scale"),
        (lambda: Label.make("lab", "great", "ann", choices=("bad", "ok", "good")), "'great' is not in its choice set"),
        (lambda: Language.make("say", "   ", "ann"), "utterance must hold visible text"),
        (lambda: Language.make("say", "\u200b\u200d\u2060\ufeff", "ann"), "utterance must hold visible text"),
        (lambda: Correction.make("fix", Text("p", "\u200b \u200c"), "ann"), "completion with visible text"),
        (lambda: Ranking.make("rank", ["g0", "g1", "g0"], "ann"), r"each generation once; \['g0'\]"),
        (
            lambda: Correction.make(
                "fix", _seg(1).__class__(np.full((5, 3), np.nan), np.zeros((5, 1)), np.zeros(5)), "a"
            ),
            "finite",
        ),
    ],
)
def test_invalid_records_are_refused(store: FeedbackStore, build: object, message: str) -> None:
    with pytest.raises(InvalidFeedbackError, match=message):
        build()  # type: ignore[operator]
    assert store.count_feedback() == 0


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            lambda: Correction.make("fix", _seg(1, T=7), "ann"),
            r"observations of shape \(7, 3\), the corrected segment has \(5, 3\)",
        ),
        (lambda: Correction.make("fix", Text("p", " x ."), "ann"), "must be a segment"),
        (lambda: Correction.make("fix-text", Text("the dog is", " kind ."), "ann"), "prompt must be the original"),
        (lambda: Ranking.make("rank", ["g0", "g1", "g3"], "ann"), "must order exactly its generations"),
        (lambda: Ranking.make("rank", ["g0", "g1"], "ann"), "must order exactly its generations"),
        (lambda: Rating.make("lab", 3, "ann"), "asks for 'label' feedback, got 'rating'"),
    ],
)
def test_answers_that_do_not_fit_their_query_are_refused(store: FeedbackStore, record: object, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        store.record(record())  # type: ignore[operator]
    assert store.count_feedback() == 0
    assert store.feedback() == []


@pytest.mark.parametrize(
    ("kind", "ids", "message"),
    [
        ("rating", ("g0", "g1"), "a rating needs exactly 1 generation, got 2"),
        ("language", ("g0",), "a language needs exactly 2 generations"),
        ("ranking", ("g0",), "at least 2 generations"),
        ("poll", ("g0",), "unknown kind 'poll'"),
    ],
)
def test_query_sizes_per_kind(kind: str, ids: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Query("q", ids, 0, kind=kind)
