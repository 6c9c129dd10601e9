"""Recording answers: one at a time, or many in one transaction (the web app's group commit).

An answer is refused (:class:`StoreError`, nothing written) when its query is
unknown, asks for another kind, or does not fit the answer: a ranking of other
generations, a correction of another shape. At most one answer is kept per
``(query, annotator)``: recording it again (a double click, a client retry, a
resumed loop) stores nothing and says so (``False``). Both routes judge an answer
with the same checks (:func:`_wrong_query`, :func:`_misfit`) and write the same
columns (:func:`~rlhfkit.feedback.store.codecs.feedback_columns`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rlhfkit.feedback.store.codecs import content_from_bytes, feedback_columns
from rlhfkit.feedback.store.errors import StoreError
from rlhfkit.feedback.store.tables import feedback_table, generations_table, queries_table
from rlhfkit.feedback_records import (
    FEEDBACK_KINDS,
    Correction,
    Feedback,
    InvalidFeedbackError,
    Ranking,
    check_correction,
)


def record(engine: Engine, feedback: Feedback) -> bool:
    """Commit one answer; ``False`` if this annotator had already answered this query (see the module docstring)."""
    if not isinstance(feedback, tuple(FEEDBACK_KINDS.values())):
        raise StoreError(f"not a feedback record: {type(feedback).__name__}")
    columns = feedback_columns(feedback)
    q, fb = queries_table, feedback_table
    with engine.begin() as conn:
        row = conn.execute(sa.select(q.c.kind, q.c.generation_ids).where(q.c.id == feedback.query_id)).first()
        problem = _wrong_query(feedback, None if row is None else row.kind)
        if problem is None and row is not None:
            problem = _misfit(conn, feedback, tuple(row.generation_ids))
        if problem is not None:
            raise StoreError(problem)
        exists = conn.execute(
            sa.select(fb.c.id).where(fb.c.query_id == feedback.query_id, fb.c.annotator_id == feedback.annotator_id)
        ).first()
        if exists is not None:
            return False
        try:
            conn.execute(
                fb.insert().values(
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


def record_batch(engine: Engine, feedback: Sequence[Feedback], all_or_nothing: bool = False) -> list[bool | StoreError]:
    """Commit many answers in one transaction: one disk sync for the lot.

    Each answer is judged as :func:`record` judges it: ``True`` when stored,
    ``False`` when this annotator had already answered the query (also when the
    same pair comes twice in ``feedback``), a :class:`StoreError` when refused.
    Every ``True`` is committed before this returns. With ``all_or_nothing`` the
    first refusal is raised and nothing is written (imports use this).
    """
    items = list(feedback)
    for f in items:
        if not isinstance(f, tuple(FEEDBACK_KINDS.values())):
            raise StoreError(f"not a feedback record: {type(f).__name__}")
    for _attempt in range(3 if all_or_nothing else 1):
        try:
            return _record_batch_once(engine, items, all_or_nothing)
        except sa.exc.IntegrityError:
            # Another writer stored one of these pairs between our read and our
            # insert; the transaction was rolled back, so judge the batch again.
            continue
    if all_or_nothing:
        raise StoreError("could not store the batch: concurrent writers kept storing the same answers")
    results: list[bool | StoreError] = []
    for f in items:  # one by one: record() settles each race on its own
        try:
            results.append(record(engine, f))
        except StoreError as e:
            results.append(e)
    return results


def _wrong_query(f: Feedback, kind: str | None) -> str | None:
    """Why ``f`` cannot answer a query asking for ``kind`` feedback (None: no such query), or None if it can."""
    if kind is None:
        return f"answer to unknown query {f.query_id!r}"
    if kind != f.kind:
        return f"query {f.query_id!r} asks for {kind!r} feedback, got {f.kind!r}"
    return None


def _misfit(conn: sa.Connection, f: Feedback, shown: tuple[str, ...]) -> str | None:
    """Why ``f`` does not fit the generations its query shows, or None."""
    if isinstance(f, Ranking) and sorted(f.ranked) != sorted(shown):
        return (
            f"ranking for query {f.query_id!r} must order exactly its generations {list(shown)}, got {list(f.ranked)}"
        )
    if isinstance(f, Correction):
        original = conn.execute(sa.select(generations_table).where(generations_table.c.id == shown[0])).one()
        try:
            check_correction(content_from_bytes(original.domain, original.payload, original.info), f.corrected)
        except InvalidFeedbackError as e:
            return f"correction for query {f.query_id!r}: {e}"
    return None


def _record_batch_once(engine: Engine, items: list[Feedback], all_or_nothing: bool) -> list[bool | StoreError]:
    results: list[bool | StoreError] = []
    if not items:
        return results
    q, fb = queries_table, feedback_table
    qids = sorted({f.query_id for f in items})
    pairs = sorted({(f.query_id, f.annotator_id) for f in items})
    with engine.begin() as conn:
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
            if (problem := _wrong_query(f, kinds.get(f.query_id))) is not None:
                results.append(StoreError(problem))
            elif (f.query_id, f.annotator_id) in seen:
                results.append(False)
            elif (problem := _misfit(conn, f, shown[f.query_id])) is not None:
                results.append(StoreError(problem))
            else:
                seen.add((f.query_id, f.annotator_id))
                new_rows.append(
                    {
                        "query_id": f.query_id,
                        "annotator_id": f.annotator_id,
                        "kind": f.kind,
                        "created_at": f.created_at,
                        **feedback_columns(f),  # the same columns record() writes
                    }
                )
                results.append(True)
            if all_or_nothing and isinstance(results[-1], StoreError):
                raise results[-1]
        if new_rows:
            conn.execute(fb.insert(), new_rows)
    return results
