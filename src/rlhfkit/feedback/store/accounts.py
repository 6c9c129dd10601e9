"""Login tokens and web sessions as the store keeps them (the web app's side: :mod:`rlhfkit.app.auth`).

A token is ``SELECTOR.SECRET``: the store keeps the selector, the SHA-256 of the
secret and whose it is, never the secret. A web session is a browser's sign-in:
the store keeps the SHA-256 of its random id and the token it was opened with;
it lasts while that token is live and until it expires. Each function here is one
transaction on the store's engine; :class:`~rlhfkit.feedback.store.FeedbackStore`
offers them as its methods.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rlhfkit.feedback.store.errors import StoreError
from rlhfkit.feedback.store.tables import annotator_tokens_table, annotators_table, web_sessions_table
from rlhfkit.feedback_records import Annotator

TOKEN_ROLES = ("annotator", "admin")
"""Roles a login token can carry: an annotator sees their own queue and answers; an admin sees everything."""


@dataclass(frozen=True)
class StoredToken:
    """A login token's stored half: who it belongs to, never the secret."""

    selector: str
    secret_sha256: str
    annotator_id: str
    role: str
    created_at: float
    revoked_at: float | None


def add_token(engine: Engine, annotator: Annotator, selector: str, secret_sha256: str, role: str) -> None:
    """Register ``annotator`` (if new) and a login token for them, in one transaction.

    Only the SHA-256 of the token's secret half is stored; see :mod:`rlhfkit.app.auth`.
    """
    if role not in TOKEN_ROLES:
        raise StoreError(f"unknown role {role!r}; expected one of {', '.join(TOKEN_ROLES)}")
    with engine.begin() as conn:
        known = conn.execute(sa.select(annotators_table.c.id).where(annotators_table.c.id == annotator.id)).first()
        if known is None:
            conn.execute(annotators_table.insert().values(id=annotator.id, kind=annotator.kind, name=annotator.name))
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


def token(engine: Engine, selector: str) -> StoredToken | None:
    """The stored token with this selector (revoked ones included), or None."""
    with engine.connect() as conn:
        r = conn.execute(sa.select(annotator_tokens_table).where(annotator_tokens_table.c.selector == selector)).first()
    return None if r is None else StoredToken(**r._asdict())


def tokens(engine: Engine, annotator_id: str | None = None) -> list[StoredToken]:
    """Stored tokens (hashes only), oldest first."""
    stmt = sa.select(annotator_tokens_table).order_by(annotator_tokens_table.c.created_at)
    if annotator_id is not None:
        stmt = stmt.where(annotator_tokens_table.c.annotator_id == annotator_id)
    with engine.connect() as conn:
        return [StoredToken(**r._asdict()) for r in conn.execute(stmt).all()]


def revoke_tokens(engine: Engine, annotator_id: str) -> int:
    """Revoke every live token of an annotator and end their web sessions; returns how many tokens.

    Their answers stay.
    """
    t, ws = annotator_tokens_table, web_sessions_table
    with engine.begin() as conn:
        result = conn.execute(
            t.update().where(t.c.annotator_id == annotator_id, t.c.revoked_at.is_(None)).values(revoked_at=time.time())
        )
        conn.execute(
            ws.delete().where(ws.c.selector.in_(sa.select(t.c.selector).where(t.c.annotator_id == annotator_id)))
        )
    return int(result.rowcount)


def add_session(engine: Engine, id_sha256: str, selector: str, expires_at: float) -> None:
    """Store a web session opened with the token ``selector`` (and drop sessions that have expired)."""
    ws = web_sessions_table
    now = time.time()
    with engine.begin() as conn:
        conn.execute(ws.delete().where(ws.c.expires_at <= now))
        conn.execute(ws.insert().values(id_sha256=id_sha256, selector=selector, created_at=now, expires_at=expires_at))


def session(engine: Engine, id_sha256: str) -> StoredToken | None:
    """The live token behind a web session, or None if the session ended, expired or its token was revoked."""
    t, ws = annotator_tokens_table, web_sessions_table
    stmt = (
        sa.select(t)
        .join(ws, ws.c.selector == t.c.selector)
        .where(ws.c.id_sha256 == id_sha256, ws.c.expires_at > time.time(), t.c.revoked_at.is_(None))
    )
    with engine.connect() as conn:
        r = conn.execute(stmt).first()
    return None if r is None else StoredToken(**r._asdict())


def end_session(engine: Engine, id_sha256: str) -> bool:
    """End a web session (sign-out); False if there was none."""
    ws = web_sessions_table
    with engine.begin() as conn:
        result = conn.execute(ws.delete().where(ws.c.id_sha256 == id_sha256))
    return bool(result.rowcount)
