"""The :class:`FeedbackStore` class: every read and write of the store (see the package docstring)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rlhfkit.feedback.store.accounts import TOKEN_ROLES, StoredToken
from rlhfkit.feedback.store.codecs import _content_from_bytes, _content_to_bytes, _feedback_columns, _feedback_from_row
from rlhfkit.feedback.store.database import create_private_file, database_problem
from rlhfkit.feedback.store.errors import StoreError, StoreUnavailableError
from rlhfkit.feedback.store.tables import (
    annotator_tokens_table,
    annotators_table,
    feedback_table,
    generations_table,
    loop_control_table,
    metadata,
    queries_table,
    web_sessions_table,
)
from rlhfkit.types import (
    FEEDBACK_KINDS,
    Annotator,
    Answer,
    Comparison,
    Correction,
    Feedback,
    Generation,
    InvalidFeedbackError,
    Query,
    Ranking,
    check_correction,
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
            create_private_file(url)
            _enable_sqlite_wal(self.engine)
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

        Every kind is stored in one row: its kind-specific fields go to the JSON
        ``payload`` column (see :func:`_feedback_columns`). A record that is
        invalid on its own was already refused when it was built
        (:class:`~rlhfkit.types.InvalidFeedbackError`). Raises :class:`StoreError`
        if the query is unknown, asks for another kind, or does not fit the answer
        (a ranking of other generations, a correction of another shape); nothing
        is written then.
        """
        if not isinstance(feedback, tuple(FEEDBACK_KINDS.values())):
            raise StoreError(f"not a feedback record: {type(feedback).__name__}")
        columns = _feedback_columns(feedback)
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(queries_table.c.kind, queries_table.c.generation_ids).where(
                    queries_table.c.id == feedback.query_id
                )
            ).first()
            if row is None:
                raise StoreError(f"answer to unknown query {feedback.query_id!r}")
            if row.kind != feedback.kind:
                raise StoreError(f"query {feedback.query_id!r} asks for {row.kind!r} feedback, got {feedback.kind!r}")
            shown = tuple(row.generation_ids)
            if isinstance(feedback, Ranking) and sorted(feedback.ranked) != sorted(shown):
                raise StoreError(
                    f"ranking for query {feedback.query_id!r} must order exactly its generations {list(shown)}, "
                    f"got {list(feedback.ranked)}"
                )
            if isinstance(feedback, Correction):
                original = conn.execute(sa.select(generations_table).where(generations_table.c.id == shown[0])).one()
                try:
                    check_correction(
                        _content_from_bytes(original.domain, original.payload, original.info), feedback.corrected
                    )
                except InvalidFeedbackError as e:
                    raise StoreError(f"correction for query {feedback.query_id!r}: {e}") from None
            exists = conn.execute(
                sa.select(feedback_table.c.id).where(
                    feedback_table.c.query_id == feedback.query_id,
                    feedback_table.c.annotator_id == feedback.annotator_id,
                )
            ).first()
            if exists is not None:
                return False
            try:
                conn.execute(
                    feedback_table.insert().values(
                        query_id=feedback.query_id,
                        annotator_id=feedback.annotator_id,
                        kind=feedback.kind,
                        created_at=feedback.created_at,
                        **columns,
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
        return [_feedback_from_row(r) for r in rows]

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

    # -- the web app: login tokens, loop control, batched answers -------------------

    def add_token(self, annotator: Annotator, selector: str, secret_sha256: str, role: str) -> None:
        """Register ``annotator`` (if new) and a login token for them, in one transaction.

        Only the SHA-256 of the token's secret half is stored; see :mod:`rlhfkit.app.auth`.
        """
        if role not in TOKEN_ROLES:
            raise StoreError(f"unknown role {role!r}; expected one of {', '.join(TOKEN_ROLES)}")
        with self.engine.begin() as conn:
            known = conn.execute(sa.select(annotators_table.c.id).where(annotators_table.c.id == annotator.id)).first()
            if known is None:
                conn.execute(
                    annotators_table.insert().values(id=annotator.id, kind=annotator.kind, name=annotator.name)
                )
            conn.execute(
                annotator_tokens_table.insert().values(
                    selector=selector,
                    secret_sha256=secret_sha256,
                    annotator_id=annotator.id,
                    role=role,
                    created_at=time.time(),
                    revoked_at=None,
                )
            )

    def token(self, selector: str) -> StoredToken | None:
        """The stored token with this selector (revoked ones included), or None."""
        with self.engine.connect() as conn:
            r = conn.execute(
                sa.select(annotator_tokens_table).where(annotator_tokens_table.c.selector == selector)
            ).first()
        return None if r is None else StoredToken(**r._asdict())

    def tokens(self, annotator_id: str | None = None) -> list[StoredToken]:
        """Stored tokens (hashes only), oldest first."""
        stmt = sa.select(annotator_tokens_table).order_by(annotator_tokens_table.c.created_at)
        if annotator_id is not None:
            stmt = stmt.where(annotator_tokens_table.c.annotator_id == annotator_id)
        with self.engine.connect() as conn:
            return [StoredToken(**r._asdict()) for r in conn.execute(stmt).all()]

    def revoke_tokens(self, annotator_id: str) -> int:
        """Revoke every live token of an annotator and end their web sessions; returns how many tokens.

        Their answers stay.
        """
        t, ws = annotator_tokens_table, web_sessions_table
        with self.engine.begin() as conn:
            result = conn.execute(
                t.update()
                .where(t.c.annotator_id == annotator_id, t.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
            conn.execute(
                ws.delete().where(ws.c.selector.in_(sa.select(t.c.selector).where(t.c.annotator_id == annotator_id)))
            )
        return int(result.rowcount)

    def add_session(self, id_sha256: str, selector: str, expires_at: float) -> None:
        """Store a web session opened with the token ``selector`` (and drop sessions that have expired)."""
        ws = web_sessions_table
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(ws.delete().where(ws.c.expires_at <= now))
            conn.execute(
                ws.insert().values(id_sha256=id_sha256, selector=selector, created_at=now, expires_at=expires_at)
            )

    def session(self, id_sha256: str) -> StoredToken | None:
        """The live token behind a web session, or None if the session ended, expired or its token was revoked."""
        t, ws = annotator_tokens_table, web_sessions_table
        stmt = (
            sa.select(t)
            .join(ws, ws.c.selector == t.c.selector)
            .where(ws.c.id_sha256 == id_sha256, ws.c.expires_at > time.time(), t.c.revoked_at.is_(None))
        )
        with self.engine.connect() as conn:
            r = conn.execute(stmt).first()
        return None if r is None else StoredToken(**r._asdict())

    def end_session(self, id_sha256: str) -> bool:
        """End a web session (sign-out); False if there was none."""
        ws = web_sessions_table
        with self.engine.begin() as conn:
            result = conn.execute(ws.delete().where(ws.c.id_sha256 == id_sha256))
        return bool(result.rowcount)

    def ping(self) -> None:
        """Ask the database the simplest question; raises if it cannot answer."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def set_control(self, key: str, value: Any) -> None:
        """Set a shared loop-control value (JSON-able), e.g. ``set_control("paused", True)``."""
        t = loop_control_table
        for _ in range(3):
            with self.engine.begin() as conn:
                done = conn.execute(t.update().where(t.c.key == key).values(value=value, updated_at=time.time()))
                if done.rowcount:
                    return
                try:
                    conn.execute(t.insert().values(key=key, value=value, updated_at=time.time()))
                    return
                except sa.exc.IntegrityError:
                    pass  # another process inserted it first: update on the next try
        raise StoreError(f"could not set loop control {key!r}")

    def control(self, key: str, default: Any = None) -> Any:
        """A shared loop-control value, or ``default`` if it was never set."""
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(loop_control_table.c.value).where(loop_control_table.c.key == key)).first()
        return default if r is None else r.value

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
        return None if r is None else _feedback_from_row(r)

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
        items = list(feedback)
        for f in items:
            if not isinstance(f, tuple(FEEDBACK_KINDS.values())):
                raise StoreError(f"not a feedback record: {type(f).__name__}")
        for _attempt in range(3 if all_or_nothing else 1):
            try:
                return self._record_batch_once(items, all_or_nothing)
            except sa.exc.IntegrityError:
                # Another writer stored one of these pairs between our read and our
                # insert; the transaction was rolled back, so judge the batch again.
                continue
        if all_or_nothing:
            raise StoreError("could not store the batch: concurrent writers kept storing the same answers")
        results: list[bool | StoreError] = []
        for f in items:  # one by one: record() settles each race on its own
            try:
                results.append(self.record(f))
            except StoreError as e:
                results.append(e)
        return results

    @staticmethod
    def _misfit(conn: sa.Connection, f: Feedback, shown: tuple[str, ...]) -> str | None:
        """Why ``f`` does not fit its query's generations (the checks of :meth:`record`), or None."""
        if isinstance(f, Ranking) and sorted(f.ranked) != sorted(shown):
            return (
                f"ranking for query {f.query_id!r} must order exactly its generations {list(shown)}, "
                f"got {list(f.ranked)}"
            )
        if isinstance(f, Correction):
            original = conn.execute(sa.select(generations_table).where(generations_table.c.id == shown[0])).one()
            try:
                check_correction(_content_from_bytes(original.domain, original.payload, original.info), f.corrected)
            except InvalidFeedbackError as e:
                return f"correction for query {f.query_id!r}: {e}"
        return None

    def _record_batch_once(self, items: list[Feedback], all_or_nothing: bool) -> list[bool | StoreError]:
        results: list[bool | StoreError] = []
        if not items:
            return results
        q, fb = queries_table, feedback_table
        qids = sorted({f.query_id for f in items})
        pairs = sorted({(f.query_id, f.annotator_id) for f in items})
        with self.engine.begin() as conn:
            kinds: dict[str, str] = {}
            shown: dict[str, tuple[str, ...]] = {}
            for i in range(0, len(qids), 500):
                rows = conn.execute(
                    sa.select(q.c.id, q.c.kind, q.c.generation_ids).where(q.c.id.in_(qids[i : i + 500]))
                ).all()
                kinds.update({r[0]: r[1] for r in rows})
                shown.update({r[0]: tuple(r[2]) for r in rows})
            seen: set[tuple[str, str]] = set()
            for i in range(0, len(pairs), 250):
                key = sa.tuple_(fb.c.query_id, fb.c.annotator_id)
                found = conn.execute(sa.select(fb.c.query_id, fb.c.annotator_id).where(key.in_(pairs[i : i + 250])))
                seen.update((r[0], r[1]) for r in found)
            new_rows: list[dict[str, Any]] = []
            for f in items:
                kind = kinds.get(f.query_id)
                if kind is None:
                    results.append(StoreError(f"answer to unknown query {f.query_id!r}"))
                elif kind != f.kind:
                    results.append(StoreError(f"query {f.query_id!r} asks for {kind!r} feedback, got {f.kind!r}"))
                elif (f.query_id, f.annotator_id) in seen:
                    results.append(False)
                elif (problem := self._misfit(conn, f, shown[f.query_id])) is not None:
                    results.append(StoreError(problem))
                else:
                    seen.add((f.query_id, f.annotator_id))
                    new_rows.append(
                        {
                            "query_id": f.query_id,
                            "annotator_id": f.annotator_id,
                            "kind": f.kind,
                            "created_at": f.created_at,
                            **_feedback_columns(f),  # the same columns record() writes
                        }
                    )
                    results.append(True)
                if all_or_nothing and isinstance(results[-1], StoreError):
                    raise results[-1]
            if new_rows:
                conn.execute(fb.insert(), new_rows)
        return results
