"""``feedback/answers.py``: every stored answer with its queries and generations in one read, and one split rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlhfkit.feedback.answers import AnswerSet, is_heldout, read_answers
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback_records import NONE_OF_THESE, Answer, Comparison, Label, Ranking, Rating
from rlhfkit.types import Generation, Query, Segment


def _seg(seed: int) -> Segment:
    rng = np.random.default_rng(seed)
    return Segment(rng.normal(size=(4, 3)), rng.normal(size=(4, 1)), rng.normal(size=4))


def _kinds(n: int) -> tuple[list[Generation], list[Query], list[object]]:
    """``n`` answers of each of four kinds (an incomparable comparison and a "none of these" label among them)."""
    gens = [Generation(f"g{i}", 0, "p", _seg(i)) for i in range(8)]
    queries: list[Query] = []
    answers: list[object] = []
    for i in range(n):
        queries += [
            Query(f"c{i}", ("g0", "g1"), 0),
            Query(f"r{i}", ("g2", "g3", "g4"), 0, kind="ranking"),
            Query(f"t{i}", ("g5",), 0, kind="rating"),
            Query(f"l{i}", ("g6",), 0, kind="label"),
        ]
        answers += [
            Comparison.make(f"c{i}", Answer.INCOMPARABLE if i == 0 else Answer.A, "ann"),
            Ranking.make(f"r{i}", ["g4", "g2", "g3"], "ann"),
            Rating.make(f"t{i}", 3.0, "ann"),
            Label.make(f"l{i}", NONE_OF_THESE if i == 0 else "good", "ann"),
        ]
    return gens, queries, answers


def test_one_read_holds_every_answer_with_its_queries_and_generations(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.sqlite'}")
    gens, queries, answers = _kinds(5)
    store.add_generations([*gens, Generation("unused", 0, "p", _seg(99))])
    store.add_queries([*queries, Query("unanswered", ("g7",), 0, kind="rating")])
    for a in answers:
        store.record(a)  # type: ignore[arg-type]
    read = read_answers(store)
    assert [f.query_id for f in read.feedback] == [f.query_id for f in store.feedback()]  # oldest first, every kind
    assert {f.kind for f in read.feedback} == {"comparison", "ranking", "rating", "label"}
    assert set(read.queries) == {q.id for q in queries}  # only the answered queries ...
    assert set(read.generations) == {f"g{i}" for i in range(7)}  # ... and the generations they show
    first = read.feedback[1]
    assert read.shown(first) == tuple(read.generations[g].content for g in ("g2", "g3", "g4"))
    only = read_answers(store, kinds=["rating"])
    assert len(only) == 5 and set(only.generations) == {"g5"}
    store.close()


def test_every_kind_is_split_by_the_same_hash_of_its_query_id() -> None:
    gens, queries, answers = _kinds(200)
    every = AnswerSet.of(answers, queries, gens)  # type: ignore[arg-type]
    train, held = every.split(0.3)
    assert len(train) + len(held) == len(every)
    assert all(is_heldout(f.query_id, 0.3) for f in held.feedback)
    assert not any(is_heldout(f.query_id, 0.3) for f in train.feedback)
    for kind in ("comparison", "ranking", "rating", "label"):
        share = sum(f.kind == kind for f in held.feedback) / 200
        assert 0.2 < share < 0.4, (kind, share)  # every kind held out at about the asked share
    again, _ = every.split(0.3)
    assert again.feedback == train.feedback  # stable: the same answers every time
    assert every.split(0.0)[1].feedback == ()


def test_an_answer_about_an_unknown_query_or_generation_is_refused() -> None:
    gens, queries, answers = _kinds(1)
    with pytest.raises(ValueError, match="query 'c0'"):
        AnswerSet.of(answers, queries[1:], gens)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"g0"):
        AnswerSet.of(answers, queries, gens[1:])  # type: ignore[arg-type]
