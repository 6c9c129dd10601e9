"""The feedback store's tables (SQLAlchemy Core): generations, queries, annotators, answers, and the web
app's tokens, sessions and loop control."""

from __future__ import annotations

import sqlalchemy as sa

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

# The web app's tables (added after the first release: ``create_all`` adds them to
# older run folders, whose other tables are left as they are).

annotator_tokens_table = sa.Table(
    "annotator_tokens",
    metadata,
    # A token is ``SELECTOR.SECRET``: the selector finds the row, the secret is
    # checked against its SHA-256 in constant time. The secret itself is never stored.
    sa.Column("selector", sa.String(32), primary_key=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("annotator_id", sa.String(128), nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
)

loop_control_table = sa.Table(
    "loop_control",
    metadata,
    # Small shared state between the loop and the web app, e.g. ``paused``.
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

web_sessions_table = sa.Table(
    "web_sessions",
    metadata,
    # A browser's sign-in (the web app's cookie holds a random id; only its SHA-256 is
    # stored). It lasts while its token is live and until ``expires_at``; signing out
    # deletes the row. Added after the tokens table: older stores get it on open.
    sa.Column("id_sha256", sa.String(64), primary_key=True),
    sa.Column("selector", sa.String(32), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)
