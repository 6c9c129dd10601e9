"""The feedback store: the one source of truth for generations, queries and answers.

SQLAlchemy over SQLite (a file in the run folder, WAL journal) by default, any
other database by URL (``postgresql+psycopg://...``). The loop writes pending
queries and reads answers; a web app (or any other process) reads pending
queries and writes answers. Neither holds human answers in memory only: every
:meth:`FeedbackStore.record` commits before it returns.

Writes are idempotent where retrying is natural:

- generations and queries are keyed by their id, and adding one that is already
  stored is a no-op, so a resumed round can re-offer the same records;
- at most one answer is kept per ``(query, annotator)``: recording it twice (a
  double click, a client retry, a resumed loop) stores it once.

Control segments are stored as ``.npz`` bytes so that arrays round-trip exactly.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rlhfkit.types import Annotator, Answer, Comparison, Feedback, Generation, Query, Segment, Text

metadata = sa.MetaData()

generations_table = sa.Table(
    "generations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("round", sa.Integer, nullable=False, index=True),
    sa.Column("policy_id", sa.String(128), nullable=False),
    sa.Column("domain", sa.String(32), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("info", sa.JSON, nullable=False),
)

queries_table = sa.Table(
    "queries",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("round", sa.Integer, nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("generation_ids", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

annotators_table = sa.Table(
    "annotators",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
)

feedback_table = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("query_id", sa.String(64), sa.ForeignKey("queries.id"), nullable=False, index=True),
    sa.Column("annotator_id", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("answer", sa.String(32), nullable=False),
    sa.Column("mu_a", sa.Float, nullable=True),
    sa.Column("mu_b", sa.Float, nullable=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("query_id", "annotator_id", name="one_answer_per_annotator"),
)


class StoreError(RuntimeError):
    """A write the store refused; nothing from it was stored."""


def _content_to_bytes(content: Segment | Text) -> bytes:
    if isinstance(content, Text):
        return json.dumps(content.to_json(), ensure_ascii=False).encode("utf-8")
    return _segment_to_bytes(content)


def _content_from_bytes(domain: str, payload: bytes, info: dict[str, Any]) -> Segment | Text:
    if domain == "text":
        data = json.loads(payload.decode("utf-8"))
        return Text(prompt=data["prompt"], completion=data["completion"], info=info)
    return _segment_from_bytes(payload, info)


def _segment_to_bytes(segment: Segment) -> bytes:
    buf = io.BytesIO()
    np.savez(
        buf,
        observations=segment.observations,
        actions=segment.actions,
        true_rewards=segment.true_rewards,
    )
    return buf.getvalue()


def _segment_from_bytes(payload: bytes, info: dict[str, Any]) -> Segment:
    with np.load(io.BytesIO(payload)) as data:
        return Segment(
            observations=data["observations"],
            actions=data["actions"],
            true_rewards=data["true_rewards"],
            info=dict(info),
        )


def _enable_sqlite_wal(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        # WAL lets a reader (the web app) and the writer (the loop) work at once.
        # synchronous=FULL: a committed answer survives a power cut, not only a kill.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()


class FeedbackStore:
    """Durable storage of generations, queries, annotators and feedback.

    Args:
        url: a SQLAlchemy URL, e.g. ``sqlite:///run/feedback.sqlite`` or
            ``postgresql+psycopg://user:pw@127.0.0.1:5432/db``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            _enable_sqlite_wal(self.engine)
        self._create_tables()

    def _create_tables(self) -> None:
        # Two processes (the loop and the web app) may open a new store at once; the
        # loser of the create race sees "already exists" and only has to look again.
        for attempt in range(3):
            try:
                metadata.create_all(self.engine)
                return
            except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
                if attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))

    @classmethod
    def in_dir(cls, run_dir: str | Path) -> FeedbackStore:
        """The default store of a run folder: ``RUN_DIR/feedback.sqlite``."""
        path = Path(run_dir) / "feedback.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}")

    def close(self) -> None:
        self.engine.dispose()

    # -- writes ---------------------------------------------------------------

    def _insert_missing(self, table: sa.Table, rows: list[dict[str, Any]]) -> int:
        """Insert rows whose primary key is not yet stored, in one transaction."""
        rows = list({r["id"]: r for r in reversed(rows)}.values())[::-1]  # first of each id, in order
        if not rows:
            return 0
        ids = [r["id"] for r in rows]
        with self.engine.begin() as conn:
            have: set[str] = set()
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                have.update(conn.execute(sa.select(table.c.id).where(table.c.id.in_(chunk))).scalars())
            new = [r for r in rows if r["id"] not in have]
            if new:
                conn.execute(table.insert(), new)
        return len(new)

    def add_generations(self, generations: Iterable[Generation]) -> int:
        """Store generations not yet stored; returns how many were new."""
        rows = [
            {
                "id": g.id,
                "round": g.round,
                "policy_id": g.policy_id,
                "domain": g.domain,
                "payload": _content_to_bytes(g.content),
                "info": dict(g.content.info),
            }
            for g in generations
        ]
        return self._insert_missing(generations_table, rows)

    def add_queries(self, queries: Iterable[Query]) -> int:
        """Store queries not yet stored (their generations must be stored); returns how many were new."""
        queries = list(queries)
        needed = {gid for q in queries for gid in q.generation_ids}
        if needed:
            with self.engine.connect() as conn:
                have = set(
                    conn.execute(sa.select(generations_table.c.id).where(generations_table.c.id.in_(needed))).scalars()
                )
            missing = needed - have
            if missing:
                raise StoreError(f"queries refer to generations that are not stored: {sorted(missing)[:5]}")
        rows = [
            {
                "id": q.id,
                "round": q.round,
                "kind": q.kind,
                "generation_ids": list(q.generation_ids),
                "created_at": q.created_at,
            }
            for q in queries
        ]
        return self._insert_missing(queries_table, rows)

    def add_annotator(self, annotator: Annotator) -> None:
        """Register an annotator (a no-op if the id is already known)."""
        self._insert_missing(annotators_table, [{"id": annotator.id, "kind": annotator.kind, "name": annotator.name}])

    def record(self, feedback: Feedback) -> bool:
        """Commit one answer. Returns ``False`` if this annotator had already answered this query.

        Raises :class:`StoreError` if the query is unknown or asks for another
        kind; nothing is written then.
        """
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(queries_table.c.kind).where(queries_table.c.id == feedback.query_id)).first()
            if row is None:
                raise StoreError(f"answer to unknown query {feedback.query_id!r}")
            if row.kind != feedback.kind:
                raise StoreError(f"query {feedback.query_id!r} asks for {row.kind!r} feedback, got {feedback.kind!r}")
            exists = conn.execute(
                sa.select(feedback_table.c.id).where(
                    feedback_table.c.query_id == feedback.query_id,
                    feedback_table.c.annotator_id == feedback.annotator_id,
                )
            ).first()
            if exists is not None:
                return False
            mu = feedback.mu
            try:
                conn.execute(
                    feedback_table.insert().values(
                        query_id=feedback.query_id,
                        annotator_id=feedback.annotator_id,
                        kind=feedback.kind,
                        answer=feedback.answer.value,
                        mu_a=None if mu is None else mu[0],
                        mu_b=None if mu is None else mu[1],
                        payload={},
                        created_at=feedback.created_at,
                    )
                )
            except sa.exc.IntegrityError:
                # A concurrent writer stored the same answer between our check and insert.
                return False
        return True

    # -- reads ----------------------------------------------------------------

    def generations(self, ids: Sequence[str] | None = None, round: int | None = None) -> dict[str, Generation]:
        """Stored generations by id, optionally only the given ids or one round."""
        stmt = sa.select(generations_table)
        if ids is not None:
            stmt = stmt.where(generations_table.c.id.in_(list(ids)))
        if round is not None:
            stmt = stmt.where(generations_table.c.round == round)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return {
            r.id: Generation(
                id=r.id,
                round=r.round,
                policy_id=r.policy_id,
                content=_content_from_bytes(r.domain, r.payload, r.info),
            )
            for r in rows
        }

    def queries(self, round: int | None = None, pending_for: str | None = None) -> list[Query]:
        """Stored queries in creation order.

        ``pending_for``: only queries that this annotator has not answered yet.
        """
        stmt = sa.select(queries_table).order_by(queries_table.c.created_at, queries_table.c.id)
        if round is not None:
            stmt = stmt.where(queries_table.c.round == round)
        if pending_for is not None:
            answered = sa.select(feedback_table.c.query_id).where(feedback_table.c.annotator_id == pending_for)
            stmt = stmt.where(queries_table.c.id.not_in(answered))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [
            Query(id=r.id, generation_ids=tuple(r.generation_ids), round=r.round, kind=r.kind, created_at=r.created_at)
            for r in rows
        ]

    def comparisons(self, annotator_id: str | None = None) -> list[Comparison]:
        """All stored comparison answers (incomparable ones included), oldest first."""
        stmt = sa.select(feedback_table).where(feedback_table.c.kind == Comparison.kind).order_by(feedback_table.c.id)
        if annotator_id is not None:
            stmt = stmt.where(feedback_table.c.annotator_id == annotator_id)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [
            Comparison(
                query_id=r.query_id,
                annotator_id=r.annotator_id,
                created_at=r.created_at,
                answer=Answer(r.answer),
                mu=None if r.mu_a is None else (r.mu_a, r.mu_b),
            )
            for r in rows
        ]

    def annotators(self) -> list[Annotator]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(annotators_table).order_by(annotators_table.c.id)).all()
        return [Annotator(id=r.id, kind=r.kind, name=r.name) for r in rows]

    def count_feedback(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(feedback_table)).scalar_one())

    def export_jsonl(self, path: str | Path) -> int:
        """Write every comparison with its query as one JSON object per line; returns the count."""
        queries = {q.id: q for q in self.queries()}
        n = 0
        with open(path, "w", encoding="utf-8") as f:
            for c in self.comparisons():
                q = queries[c.query_id]
                f.write(
                    json.dumps(
                        {
                            "query_id": c.query_id,
                            "a": q.generation_ids[0],
                            "b": q.generation_ids[1],
                            "round": q.round,
                            "answer": c.answer.value,
                            "mu": None if c.mu is None else list(c.mu),
                            "annotator_id": c.annotator_id,
                            "created_at": c.created_at,
                        }
                    )
                    + "\n"
                )
                n += 1
        return n
