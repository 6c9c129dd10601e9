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

The modules: :mod:`~rlhfkit.feedback.store.tables` (the schema),
:mod:`~rlhfkit.feedback.store.codecs` (content and answers as columns),
:mod:`~rlhfkit.feedback.store.recording` (answers, one or a batch),
:mod:`~rlhfkit.feedback.store.accounts` (login tokens, web sessions),
:mod:`~rlhfkit.feedback.store.control` (pause, the loop's status, the annotation
settings), :mod:`~rlhfkit.feedback.store.database` (SQLite setup, failures in
plain words) and :mod:`~rlhfkit.feedback.store.feedback_store`, the
:class:`FeedbackStore` class that offers all of them.
"""

from __future__ import annotations

from rlhfkit.feedback.store.accounts import TOKEN_ROLES, StoredToken
from rlhfkit.feedback.store.control import GENERIC_INSTRUCTIONS, AnnotationSettings, LoopStatus
from rlhfkit.feedback.store.errors import StoreError, StoreUnavailableError
from rlhfkit.feedback.store.feedback_store import FeedbackStore
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

__all__ = [
    "GENERIC_INSTRUCTIONS",
    "TOKEN_ROLES",
    "AnnotationSettings",
    "FeedbackStore",
    "LoopStatus",
    "StoreError",
    "StoreUnavailableError",
    "StoredToken",
    "annotator_tokens_table",
    "annotators_table",
    "feedback_table",
    "generations_table",
    "loop_control_table",
    "metadata",
    "queries_table",
    "web_sessions_table",
]
