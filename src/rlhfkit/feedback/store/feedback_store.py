"""The :class:`FeedbackStore` class: every read and write of the store (see the package docstring).

Its methods on login tokens and web sessions, on loop control and on recording
answers are one-line calls into :mod:`~rlhfkit.feedback.store.accounts`,
:mod:`~rlhfkit.feedback.store.control` and :mod:`~rlhfkit.feedback.store.recording`,
functions over the store's engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rlhfkit.feedback.store import accounts, control, recording
from rlhfkit.feedback.store.accounts import StoredToken
from rlhfkit.feedback.store.codecs import content_from_bytes, content_to_bytes, feedback_from_row
from rlhfkit.feedback.store.control import AnnotationSettings, LoopStatus
from rlhfkit.feedback.store.database import create_private_file, database_problem, enable_sqlite_wal
from rlhfkit.feedback.store.errors import StoreError, StoreUnavailableError
from rlhfkit.feedback.store.tables import (
    annotators_table,
    feedback_table,
    generations_table,
    metadata,
    queries_table,
)
from rlhfkit.feedback_records import FEEDBACK_KINDS, Annotator, Answer, Comparison, Feedback
from rlhfkit.types import Generation, Query


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
            create_private_file(url)
            enable_sqlite_wal(self.engine)
        try:
            self._create_tables()
        except sa.exc.DBAPIError as e:
            self.engine.dispose()
            where = self.engine.url.render_as_string(hide_password=True)
            raise StoreUnavailableError(f"cannot open the feedback store {where}: {database_problem(e)}") from None

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
                "payload": content_to_bytes(g.content),
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

        Every kind is stored in one row: its kind-specific fields go to the JSON
        ``payload`` column (see :func:`~rlhfkit.feedback.store.codecs.feedback_columns`).
        A record that is invalid on its own was already refused when it was built
        (:class:`~rlhfkit.types.InvalidFeedbackError`). Raises :class:`StoreError`
        if the query is unknown, asks for another kind, or does not fit the answer
        (a ranking of other generations, a correction of another shape); nothing
        is written then.
        """
        return recording.record(self.engine, feedback)

    def record_batch(self, feedback: Sequence[Feedback], all_or_nothing: bool = False) -> list[bool | StoreError]:
        """Commit many answers in one transaction: one disk sync for the lot.

        Each answer is judged as :meth:`record` judges it (the same checks: the
        query exists and asks for this kind, a ranking orders exactly the query's
        generations, a correction fits its original): ``True`` when stored,
        ``False`` when this annotator had already answered the query (also when
        the same pair comes twice in ``feedback``), a :class:`StoreError` when
        refused. Every ``True`` is committed before this returns. With
        ``all_or_nothing`` the first refusal is raised and nothing is written
        (imports use this). This is the web app's group commit: answers that
        arrive while a commit is on disk go into the next one.
        """
        return recording.record_batch(self.engine, feedback, all_or_nothing)

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
                content=content_from_bytes(r.domain, r.payload, r.info),
            )
            for r in rows
        }

    def queries(
        self, round: int | None = None, pending_for: str | None = None, limit: int | None = None
    ) -> list[Query]:
        """Stored queries in creation order.

        ``pending_for``: only queries that this annotator has not answered yet; ``limit``: the oldest so many.
        """
        stmt = sa.select(queries_table).order_by(queries_table.c.created_at, queries_table.c.id)
        if round is not None:
            stmt = stmt.where(queries_table.c.round == round)
        if pending_for is not None:
            answered = sa.select(feedback_table.c.query_id).where(feedback_table.c.annotator_id == pending_for)
            stmt = stmt.where(queries_table.c.id.not_in(answered))
        if limit is not None:
            stmt = stmt.limit(limit)
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

    def feedback(self, kind: str | None = None, annotator_id: str | None = None) -> list[Feedback]:
        """Stored answers of every kind (or of one ``kind``), oldest first, as typed records."""
        if kind is not None and kind not in FEEDBACK_KINDS:
            raise ValueError(f"unknown feedback kind {kind!r}; expected one of {', '.join(FEEDBACK_KINDS)}")
        stmt = sa.select(feedback_table).order_by(feedback_table.c.id)
        if kind is not None:
            stmt = stmt.where(feedback_table.c.kind == kind)
        if annotator_id is not None:
            stmt = stmt.where(feedback_table.c.annotator_id == annotator_id)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [feedback_from_row(r) for r in rows]

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

    # -- the web app: login tokens and web sessions (see rlhfkit.feedback.store.accounts) --

    def add_token(self, annotator: Annotator, selector: str, secret_sha256: str, role: str) -> None:
        """Register ``annotator`` (if new) and a login token for them, in one transaction.

        Only the SHA-256 of the token's secret half is stored; see :mod:`rlhfkit.app.auth`.
        """
        accounts.add_token(self.engine, annotator, selector, secret_sha256, role)

    def token(self, selector: str) -> StoredToken | None:
        """The stored token with this selector (revoked ones included), or None."""
        return accounts.token(self.engine, selector)

    def tokens(self, annotator_id: str | None = None) -> list[StoredToken]:
        """Stored tokens (hashes only), oldest first."""
        return accounts.tokens(self.engine, annotator_id)

    def revoke_tokens(self, annotator_id: str) -> int:
        """Revoke every live token of an annotator and end their web sessions; returns how many tokens.

        Their answers stay.
        """
        return accounts.revoke_tokens(self.engine, annotator_id)

    def add_session(self, id_sha256: str, selector: str, expires_at: float) -> None:
        """Store a web session opened with the token ``selector`` (and drop sessions that have expired)."""
        accounts.add_session(self.engine, id_sha256, selector, expires_at)

    def session(self, id_sha256: str) -> StoredToken | None:
        """The live token behind a web session, or None if the session ended, expired or its token was revoked."""
        return accounts.session(self.engine, id_sha256)

    def end_session(self, id_sha256: str) -> bool:
        """End a web session (sign-out); False if there was none."""
        return accounts.end_session(self.engine, id_sha256)

    # -- loop control: what the loop and the app tell each other (see rlhfkit.feedback.store.control) --

    def set_paused(self, paused: bool) -> None:
        """Pause (True) or resume the loop: while paused it holds before its next optimisation step."""
        control.set_control(self.engine, control.PAUSED, bool(paused))

    def paused(self) -> bool:
        """Whether an admin has paused the loop (False if no one ever has)."""
        return bool(control.control(self.engine, control.PAUSED, False))

    def set_loop_status(self, status: LoopStatus) -> None:
        """Say what the loop is doing (its round and phase), for the admin page."""
        control.set_control(self.engine, control.LOOP_STATUS, status.to_json())

    def loop_status(self) -> LoopStatus | None:
        """What the loop last said it is doing, or None if it has said nothing yet."""
        return LoopStatus.from_json(control.control(self.engine, control.LOOP_STATUS))

    def write_annotation_settings(self, settings: AnnotationSettings) -> None:
        """Store the run's :class:`AnnotationSettings` for the app (the loop calls this when it starts)."""
        control.set_control(self.engine, control.ANNOTATION_SETTINGS, settings.to_json())

    def read_annotation_settings(self) -> AnnotationSettings | None:
        """The settings a run wrote to this store, or None if no run has (``ValueError`` naming the field if
        they are malformed)."""
        data = control.control(self.engine, control.ANNOTATION_SETTINGS)
        return None if data is None else AnnotationSettings.from_json(data)

    def set_control(self, key: str, value: Any) -> None:
        """Set a loop-control value (JSON-able) under any ``key``; the typed methods above use this."""
        control.set_control(self.engine, key, value)

    def control(self, key: str, default: Any = None) -> Any:
        """A loop-control value, or ``default`` if it was never set; the typed methods above use this."""
        return control.control(self.engine, key, default)

    # -- counts and lookups -----------------------------------------------------------

    def ping(self) -> None:
        """Ask the database the simplest question; raises if it cannot answer."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def feedback_counts(self) -> dict[str, int]:
        """How many answers each annotator has stored."""
        t = feedback_table
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.annotator_id, sa.func.count()).group_by(t.c.annotator_id)).all()
        return {r[0]: int(r[1]) for r in rows}

    def counts_by_round(self) -> dict[int, tuple[int, int]]:
        """``{round: (queries, answers)}``: the queries posted in each round and the answers stored to them."""
        q, f = queries_table, feedback_table
        with self.engine.connect() as conn:
            posted = conn.execute(sa.select(q.c.round, sa.func.count()).group_by(q.c.round)).all()
            answered = conn.execute(
                sa.select(q.c.round, sa.func.count()).select_from(f.join(q, f.c.query_id == q.c.id)).group_by(q.c.round)
            ).all()
        answers = {int(r[0]): int(r[1]) for r in answered}
        return {int(r[0]): (int(r[1]), answers.get(int(r[0]), 0)) for r in posted}

    def count_queries(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(queries_table)).scalar_one())

    def answer_of(self, query_id: str, annotator_id: str) -> Feedback | None:
        """This annotator's stored answer to this query, or None."""
        t = feedback_table
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(t).where(t.c.query_id == query_id, t.c.annotator_id == annotator_id)).first()
        return None if r is None else feedback_from_row(r)
