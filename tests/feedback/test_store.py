"""Tests for rlhfkit.feedback.store: durable, idempotent storage in SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from store_backends import BACKENDS, backend_store

from rlhfkit.feedback.store import FeedbackStore, StoreError
from rlhfkit.feedback_records import Annotator, Answer, Comparison
from rlhfkit.types import Generation, Query, Segment


def _generation(gid: str, seed: int, round: int = 0, discrete: bool = False, T: int = 6) -> Generation:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(T, 3)) * 10.0 ** rng.integers(-300, 300, size=(T, 3))
    obs[0, 0] = -0.0
    obs[0, 1] = np.nextafter(1.0, 2.0)
    obs[0, 2] = np.finfo(np.float64).tiny / 4  # a subnormal
    actions = rng.integers(0, 3, size=T) if discrete else rng.normal(size=(T, 2))
    rewards = rng.normal(size=T)
    rewards[-1] = 1.0 / 3.0
    info = {"episode": seed, "start": 17, "env_id": "Pendulum-v1", "tags": ["a", "b"], "scale": 0.1, "flag": True}
    return Generation(
        id=gid,
        round=round,
        policy_id=f"round-{round}",
        content=Segment(obs, actions, rewards, info=info),
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "feedback.sqlite"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, db_path: Path) -> Iterator[FeedbackStore]:
    """An empty store on SQLite, and on PostgreSQL when .ci/run has started one (store_backends.py)."""
    with backend_store(request.param, db_path) as s:
        yield s


def _fill(store: FeedbackStore) -> tuple[list[Generation], list[Query], list[Comparison]]:
    gens = [_generation(f"g{i}", seed=i, round=i // 3, discrete=(i % 2 == 1)) for i in range(6)]
    assert store.add_generations(gens) == 6
    queries = [
        Query(id="q0", generation_ids=("g0", "g1"), round=0, created_at=1000.25),
        Query(id="q1", generation_ids=("g3", "g2"), round=0, created_at=1001.5),  # order kept, not sorted
        Query(id="q2", generation_ids=("g4", "g5"), round=1, created_at=1002.125),
        Query(id="q3", generation_ids=("g5", "g0"), round=1, created_at=1003.0),
        Query(id="q4", generation_ids=("g2", "g4"), round=1, created_at=1004.0625),
    ]
    assert store.add_queries(queries) == 5
    answers = [
        Comparison.make("q0", Answer.A, "alice", created_at=2000.123456789),
        Comparison.make("q1", Answer.B, "alice", created_at=2001.0),
        Comparison.make("q2", Answer.EQUAL, "alice", created_at=2002.0),
        Comparison.make("q3", Answer.GRADED, "alice", mu_a=0.7310585786300049, created_at=2003.0),
        Comparison.make("q4", Answer.INCOMPARABLE, "alice", created_at=2004.0),
        Comparison.make("q0", Answer.GRADED, "bob", mu_a=0.1, created_at=2005.0),
    ]
    for c in answers:
        assert store.record(c) is True
    return gens, queries, answers


def _assert_segment_identical(got: Segment, want: Segment) -> None:
    for name in ("observations", "actions", "true_rewards"):
        g, w = getattr(got, name), getattr(want, name)
        assert g.dtype == w.dtype, name
        assert g.shape == w.shape, name
        assert g.tobytes() == w.tobytes(), name  # bit-identical, -0.0 and subnormals included


def test_round_trip_survives_reopen(db_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{db_path}")
    gens, queries, answers = _fill(store)
    store.add_annotator(Annotator(id="alice", kind="person", name="Alice"))
    store.close()

    reopened = FeedbackStore(f"sqlite:///{db_path}")
    try:
        got_gens = reopened.generations()
        assert set(got_gens) == {g.id for g in gens}
        for g in gens:
            r = got_gens[g.id]
            assert (r.id, r.round, r.policy_id, r.domain) == (g.id, g.round, g.policy_id, g.domain)
            _assert_segment_identical(r.segment, g.segment)
            assert r.segment.info == g.segment.info
            assert not r.segment.observations.flags.writeable

        got_queries = reopened.queries()
        assert [q.id for q in got_queries] == [q.id for q in queries]
        for got, want in zip(got_queries, queries, strict=True):
            assert got == want  # generation_ids order, round, kind and created_at exact

        got_answers = reopened.comparisons()
        assert got_answers == answers  # oldest first; mu, answer, annotator and created_at exact
        assert reopened.comparisons(annotator_id="bob") == [answers[-1]]
        assert reopened.count_feedback() == len(answers)
        assert reopened.annotators() == [Annotator(id="alice", kind="person", name="Alice")]
    finally:
        reopened.close()


def test_every_answer_kind_reads_back(store: FeedbackStore) -> None:
    _, _, answers = _fill(store)
    got = {(c.query_id, c.annotator_id): c for c in store.comparisons()}
    assert got[("q0", "alice")].answer is Answer.A and got[("q0", "alice")].mu == (1.0, 0.0)
    assert got[("q1", "alice")].answer is Answer.B and got[("q1", "alice")].mu == (0.0, 1.0)
    assert got[("q2", "alice")].answer is Answer.EQUAL and got[("q2", "alice")].mu == (0.5, 0.5)
    assert got[("q3", "alice")].answer is Answer.GRADED
    assert got[("q3", "alice")].mu == (0.7310585786300049, 1.0 - 0.7310585786300049)
    assert got[("q4", "alice")].answer is Answer.INCOMPARABLE and got[("q4", "alice")].mu is None
    assert not got[("q4", "alice")].usable
    assert got[("q0", "bob")].mu == (0.1, 0.9)
    assert got[("q0", "alice")].created_at == 2000.123456789
    assert len(got) == len(answers)


def test_filters_by_round(store: FeedbackStore) -> None:
    _fill(store)
    assert set(store.generations(round=1)) == {"g3", "g4", "g5"}
    assert set(store.generations(ids=["g1", "g4"])) == {"g1", "g4"}
    assert [q.id for q in store.queries(round=1)] == ["q2", "q3", "q4"]


def test_adding_twice_stores_once(store: FeedbackStore) -> None:
    g = [_generation("g0", 0), _generation("g1", 1)]
    assert store.add_generations(g) == 2
    assert store.add_generations(g) == 0
    assert store.add_generations([_generation("g1", 1), _generation("g2", 2)]) == 1
    assert set(store.generations()) == {"g0", "g1", "g2"}

    q = Query(id="q", generation_ids=("g0", "g1"), round=0, created_at=1.0)
    assert store.add_queries([q]) == 1
    assert store.add_queries([q]) == 0
    assert store.queries() == [q]


def test_duplicate_within_one_batch_stores_once(store: FeedbackStore) -> None:
    g = _generation("g0", 0)
    assert store.add_generations([g, g, _generation("g1", 1)]) == 2
    q = Query(id="q", generation_ids=("g0", "g1"), round=0)
    assert store.add_queries([q, q]) == 1


def test_record_twice_is_idempotent(store: FeedbackStore) -> None:
    store.add_generations([_generation("g0", 0), _generation("g1", 1)])
    store.add_queries([Query(id="q", generation_ids=("g0", "g1"), round=0)])
    first = Comparison.make("q", Answer.A, "alice", created_at=1.0)
    assert store.record(first) is True
    # A retry, even with a different answer, keeps the first one.
    assert store.record(Comparison.make("q", Answer.B, "alice", created_at=2.0)) is False
    assert store.record(first) is False
    assert store.count_feedback() == 1
    assert store.comparisons() == [first]
    # Another annotator's answer to the same query is a separate row.
    second = Comparison.make("q", Answer.B, "bob", created_at=3.0)
    assert store.record(second) is True
    assert store.count_feedback() == 2
    assert store.comparisons() == [first, second]


def test_pending_for(store: FeedbackStore) -> None:
    _fill(store)  # alice answered q0..q4, bob answered q0
    assert store.queries(pending_for="alice") == []
    assert [q.id for q in store.queries(pending_for="bob")] == ["q1", "q2", "q3", "q4"]
    assert [q.id for q in store.queries(pending_for="carol")] == ["q0", "q1", "q2", "q3", "q4"]
    assert [q.id for q in store.queries(round=1, pending_for="bob")] == ["q2", "q3", "q4"]
    store.record(Comparison.make("q3", Answer.A, "bob"))
    assert [q.id for q in store.queries(pending_for="bob")] == ["q1", "q2", "q4"]


def test_answer_to_unknown_query_raises_and_stores_nothing(store: FeedbackStore) -> None:
    _fill(store)
    before = store.count_feedback()
    with pytest.raises(StoreError, match="unknown query"):
        store.record(Comparison.make("no-such-query", Answer.A, "alice"))
    assert store.count_feedback() == before
    assert all(c.query_id != "no-such-query" for c in store.comparisons())


def test_answer_of_wrong_kind_raises(store: FeedbackStore) -> None:
    store.add_generations([_generation(f"g{i}", i) for i in range(3)])
    store.add_queries([Query(id="r", generation_ids=("g0", "g1", "g2"), round=0, kind="ranking")])
    with pytest.raises(StoreError, match="ranking"):
        store.record(Comparison.make("r", Answer.A, "alice"))
    assert store.count_feedback() == 0


def test_query_with_unstored_generation_raises_and_stores_nothing(store: FeedbackStore) -> None:
    store.add_generations([_generation("g0", 0), _generation("g1", 1)])
    ok = Query(id="ok", generation_ids=("g0", "g1"), round=0)
    bad = Query(id="bad", generation_ids=("g0", "missing"), round=0)
    before = len(store.queries())
    with pytest.raises(StoreError, match="missing"):
        store.add_queries([ok, bad])
    assert len(store.queries()) == before == 0  # not even the valid query of the batch
    # The valid query alone still goes in afterwards.
    assert store.add_queries([ok]) == 1


def test_export_jsonl(store: FeedbackStore, tmp_path: Path) -> None:
    _, queries, answers = _fill(store)
    out = tmp_path / "answers.jsonl"
    n = store.export_jsonl(out)
    assert n == len(answers)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(answers)
    by_id = {q.id: q for q in queries}
    rows = [json.loads(line) for line in lines]
    for row, c in zip(rows, answers, strict=True):
        q = by_id[c.query_id]
        assert row == {
            "query_id": c.query_id,
            "a": q.generation_ids[0],
            "b": q.generation_ids[1],
            "round": q.round,
            "answer": c.answer.value,
            "mu": None if c.mu is None else list(c.mu),
            "annotator_id": c.annotator_id,
            "created_at": c.created_at,
        }


def test_in_dir_creates_folder(tmp_path: Path) -> None:
    run = tmp_path / "run" / "nested"
    s = FeedbackStore.in_dir(run)
    try:
        s.add_generations([_generation("g0", 0)])
    finally:
        s.close()
    assert (run / "feedback.sqlite").is_file()
    s2 = FeedbackStore.in_dir(run)
    try:
        assert set(s2.generations()) == {"g0"}
    finally:
        s2.close()


def test_text_generations_round_trip(tmp_path: Path) -> None:
    from rlhfkit.types import Text

    chat = Text(
        prompt=[{"role": "user", "content": "Hi <b>there</b> — ünïcode"}],
        completion=[{"role": "assistant", "content": "Hello!"}],
        info={"source": "test"},
    )
    plain = Text(prompt="2 + 2 =", completion=" 4")
    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.sqlite'}")
    store.add_generations([Generation("c", 1, "p", chat), Generation("t", 1, "p", plain)])
    store.close()
    back = FeedbackStore(f"sqlite:///{tmp_path / 'f.sqlite'}").generations()
    assert back["c"].text == chat and back["t"].text == plain
    assert back["c"].domain == "text" and back["c"].text.info == {"source": "test"}
    with pytest.raises(TypeError, match="holds text"):
        _ = back["t"].segment


def test_a_new_sqlite_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """The file holds token hashes: owner-only, like its WAL and shared-memory files."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        s = FeedbackStore.in_dir(tmp_path)
        s.add_generations([_generation("g0", 0)])
        files = sorted(tmp_path.glob("feedback.sqlite*"))
        assert [f.name for f in files] == ["feedback.sqlite", "feedback.sqlite-shm", "feedback.sqlite-wal"]
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        s.close()
    finally:
        os.umask(old)


def test_a_store_made_before_web_sessions_opens_and_gains_them(db_path: Path) -> None:
    import time

    import sqlalchemy as sa

    from rlhfkit.app.auth import add_annotator

    s = FeedbackStore(f"sqlite:///{db_path}")
    s.add_generations([_generation("g0", 0)])
    token = add_annotator(s, "ann")
    with s.engine.begin() as conn:  # the previous version's schema: no web_sessions table
        conn.execute(sa.text("DROP TABLE web_sessions"))
    s.close()
    s = FeedbackStore(f"sqlite:///{db_path}")
    try:
        assert set(s.generations()) == {"g0"} and s.tokens("ann")[0].revoked_at is None
        s.add_session("f" * 64, token.split(".")[0], time.time() + 60)
        assert s.session("f" * 64).annotator_id == "ann"  # type: ignore[union-attr]
    finally:
        s.close()


def test_a_database_that_cannot_be_opened_is_one_plain_error(tmp_path: Path) -> None:
    import socket

    from rlhfkit.feedback.store import StoreUnavailableError

    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreUnavailableError) as e:
        FeedbackStore(f"postgresql+psycopg://u:secret@127.0.0.1:{port}/db")
    message = str(e.value)
    assert message.endswith("the database server cannot be reached") and "\n" not in message
    assert "secret" not in message and "SELECT" not in message
    with pytest.raises(StoreUnavailableError, match="cannot be opened"):
        FeedbackStore(f"sqlite:///{tmp_path / 'no-such-folder' / 'feedback.sqlite'}")
