"""The feedback store on both databases it supports: SQLite (the default) and PostgreSQL.

The web app's additions (batched answers, tokens, loop control) and the store's
contract under concurrent writers, on both; see ``store_backends.py`` for how
the PostgreSQL cases get their database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from store_backends import BACKENDS, backend_store

from rlhfkit.app.auth import add_annotator
from rlhfkit.app.server import AppConfig, create_app
from rlhfkit.feedback.store import FeedbackStore, StoreError
from rlhfkit.feedback_records import Comparison, Ranking
from rlhfkit.types import Generation, Query, Segment, Text


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeedbackStore]:
    with backend_store(request.param, tmp_path / "feedback.sqlite") as s:
        yield s


def _segment(seed: int, T: int = 5) -> Segment:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(T, 3)) * 10.0 ** rng.integers(-300, 300, size=(T, 3))
    obs[0, 0] = np.nextafter(1.0, 2.0)
    return Segment(obs, rng.normal(size=(T, 2)), rng.normal(size=T), info={"env_id": "Pendulum-v1", "k": [1, 2]})


def _fill(store: FeedbackStore) -> None:
    gens = [Generation(f"g{i}", 1, "round-0", _segment(i)) for i in range(4)]
    gens += [
        Generation("t0", 1, "round-0", Text("héllo <b>", "wörld \u2603 '\"; DROP TABLE feedback; --")),
        Generation(
            "t1", 1, "round-0", Text([{"role": "user", "content": "hi"}], [{"role": "assistant", "content": "yo"}])
        ),
        Generation("t2", 1, "round-0", Text("p", "a")),
    ]
    store.add_generations(gens)
    store.add_queries(
        [
            Query("q0", ("g0", "g1"), 1, created_at=1.0),
            Query("q1", ("g2", "g3"), 1, created_at=2.0),
            Query("q2", ("t0", "t1"), 1, created_at=3.0),
            Query("r0", ("t0", "t1", "t2"), 1, kind="ranking", created_at=4.0),
        ]
    )


def test_generations_and_answers_round_trip_exactly(store: FeedbackStore) -> None:
    _fill(store)
    back = store.generations()
    seg = back["g0"].segment
    want = _segment(0)
    assert np.array_equal(seg.observations, want.observations) and np.array_equal(seg.actions, want.actions)
    assert dict(seg.info) == {"env_id": "Pendulum-v1", "k": [1, 2]}
    assert back["t0"].text.completion == "wörld \u2603 '\"; DROP TABLE feedback; --"
    assert back["t1"].text.prompt[0]["content"] == "hi"
    assert store.record(Comparison.make("q0", "graded", "ann", mu_a=1 / 3, created_at=123.456789))
    (c,) = store.comparisons()
    assert c.mu == (1 / 3, 1 - 1 / 3) and c.created_at == 123.456789


def test_one_answer_per_query_and_annotator(store: FeedbackStore) -> None:
    _fill(store)
    assert store.record(Comparison.make("q0", "A", "ann"))
    assert not store.record(Comparison.make("q0", "B", "ann"))
    assert store.record(Comparison.make("q0", "B", "other"))
    assert [q.id for q in store.queries(pending_for="ann")] == ["q1", "q2", "r0"]
    assert store.answer_of("q0", "ann").answer.value == "A"  # type: ignore[union-attr]
    assert store.answer_of("q1", "ann") is None
    assert store.feedback_counts() == {"ann": 1, "other": 1}


def test_record_batch_judges_each_answer_and_commits_once(store: FeedbackStore) -> None:
    _fill(store)
    store.record(Comparison.make("q1", "A", "ann"))
    results = store.record_batch(
        [
            Comparison.make("q0", "A", "ann"),
            Comparison.make("q0", "A", "ann"),  # the same pair twice in one batch
            Comparison.make("q1", "B", "ann"),  # already stored
            Comparison.make("nope", "A", "ann"),
            Comparison.make("r0", "A", "ann"),  # a ranking query
            Comparison.make("q2", "equal", "bob"),
        ]
    )
    assert results[:3] == [True, False, False] and results[5] is True
    assert isinstance(results[3], StoreError) and "unknown query" in str(results[3])
    assert isinstance(results[4], StoreError) and "'ranking'" in str(results[4])
    assert sorted((c.query_id, c.annotator_id) for c in store.comparisons()) == [
        ("q0", "ann"),
        ("q1", "ann"),
        ("q2", "bob"),
    ]
    ranked = store.record_batch(
        [Ranking.make("r0", ["t2", "t0", "t1"], "ann"), Ranking.make("r0", ["t0", "t1", "g0"], "bob")]
    )
    assert ranked[0] is True and isinstance(ranked[1], StoreError) and "must order exactly" in str(ranked[1])
    (r,) = store.feedback(kind="ranking")
    assert isinstance(r, Ranking) and r.ranked == ("t2", "t0", "t1")


def test_all_or_nothing_batch_writes_nothing_on_a_refusal(store: FeedbackStore) -> None:
    _fill(store)
    with pytest.raises(StoreError, match="unknown query"):
        store.record_batch([Comparison.make("q0", "A", "x"), Comparison.make("zz", "A", "x")], all_or_nothing=True)
    assert store.count_feedback() == 0


def test_concurrent_writers_store_each_answer_once(store: FeedbackStore) -> None:
    _fill(store)
    answers = [Comparison.make(q, "A", f"ann{j}") for q in ("q0", "q1", "q2") for j in range(10)]
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(0, len(answers), 7):
                chunk = answers[i : i + 7]
                if k % 2:
                    store.record_batch(chunk)
                else:
                    for a in chunk:
                        store.record(a)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert store.count_feedback() == 30
    assert len({(c.query_id, c.annotator_id) for c in store.comparisons()}) == 30


def test_tokens_and_loop_control(store: FeedbackStore) -> None:
    token = add_annotator(store, "ann")
    selector = token.split(".")[0]
    stored = store.token(selector)
    assert stored is not None and stored.annotator_id == "ann" and stored.revoked_at is None
    assert token.split(".")[1] not in stored.secret_sha256
    with pytest.raises(sa.exc.IntegrityError):  # a selector is unique
        store.add_token(store.annotators()[0], selector, "0" * 64, "annotator")
    assert store.revoke_tokens("ann") == 1 and store.revoke_tokens("ann") == 0
    assert store.token(selector).revoked_at is not None  # type: ignore[union-attr]
    with pytest.raises(StoreError, match="unknown role"):
        store.add_token(store.annotators()[0], "x" * 24, "0" * 64, "root")
    assert store.control("paused") is None and store.control("paused", False) is False
    store.set_control("paused", True)
    store.set_control("paused", False)
    store.set_control("loop_status", {"round": 3, "phase": "optimising"})
    assert store.control("paused") is False and store.control("loop_status")["round"] == 3


def test_web_sessions_last_while_their_token_lives_and_until_they_end(store: FeedbackStore) -> None:
    ann, other = add_annotator(store, "ann"), add_annotator(store, "other")
    store.add_session("a" * 64, ann.split(".")[0], time.time() + 60)
    store.add_session("b" * 64, ann.split(".")[0], time.time() + 60)
    store.add_session("c" * 64, other.split(".")[0], time.time() + 60)
    store.add_session("d" * 64, other.split(".")[0], time.time() - 1)  # already expired
    assert store.session("a" * 64).annotator_id == "ann"  # type: ignore[union-attr]
    assert store.session("d" * 64) is None and store.session("e" * 64) is None
    assert store.end_session("a" * 64) and not store.end_session("a" * 64)
    assert store.session("a" * 64) is None and store.session("b" * 64) is not None
    store.revoke_tokens("ann")
    assert store.session("b" * 64) is None and store.session("c" * 64).annotator_id == "other"  # type: ignore[union-attr]


def test_the_app_on_this_database(store: FeedbackStore, tmp_path: Path) -> None:
    _fill(store)
    token = add_annotator(store, "ann")
    app = create_app(AppConfig(store_url=store.url, media_dir=tmp_path / "media", prerender=False), store=store)
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        assert client.get("/api/queue", headers=headers).json()["pending"] == 4
        body = {"query_id": "q2", "answer": "graded", "mu_a": 0.65}
        assert client.post("/api/answers", json=body, headers=headers).status_code == 201
        again = client.post("/api/answers", json=body, headers=headers)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        assert client.get("/api/queue", headers=headers).json()["pending"] == 3
    (c,) = store.comparisons()
    assert c.mu == pytest.approx((0.65, 0.35)) and c.annotator_id == "ann"


def test_counts_per_round_and_the_oldest_pending_queries(store: FeedbackStore) -> None:
    """What the admin page's progress per round and the app's rendering ahead read, on this database."""
    from rlhfkit.feedback.store import AnnotationSettings

    _fill(store)
    store.add_generations(
        [Generation("h0", 2, "round-1", Text("p", "b")), Generation("h1", 2, "round-1", Text("p", "c"))]
    )
    store.add_queries([Query("n0", ("h0", "h1"), 2, created_at=5.0)])
    for qid, who in [("q0", "a"), ("q0", "b"), ("q1", "a"), ("n0", "b")]:
        store.record(Comparison.make(qid, "A", who))
    assert store.counts_by_round() == {1: (4, 3), 2: (1, 1)}
    assert [q.id for q in store.queries(pending_for="a", limit=2)] == ["q2", "r0"]
    assert [q.id for q in store.queries(limit=1)] == ["q0"]
    # the run's settings for people round-trip through the store's JSON column
    settings = AnnotationSettings("Be brief.", (0.0, 10.0), ("poor", "fine", "great"), task="text:describe")
    store.write_annotation_settings(settings)
    assert store.read_annotation_settings() == settings
