"""Database helpers of the feedback store: a failure named in plain words, a private SQLite file.

Kept apart from the :class:`~rlhfkit.feedback.store.FeedbackStore` class so that the web app and the command
line name a database failure the same way the store does.
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

_PROBLEMS = [
    ("database or disk is full", "the database or disk is full"),
    ("no space left on device", "the disk is full"),
    ("readonly database", "the database is read-only"),
    ("read-only", "the database is read-only"),
    ("database is locked", "the database is locked by another writer"),
    ("unable to open database file", "the database file cannot be opened"),
    ("disk i/o error", "the disk failed (I/O error)"),
    ("connection refused", "the database server cannot be reached"),
    ("server closed the connection", "the database server cannot be reached"),
    ("connection is closed", "the database server cannot be reached"),
    ("connection failed", "the database server cannot be reached"),
    ("could not connect", "the database server cannot be reached"),
    ("terminating connection", "the database server cannot be reached"),
    ("timeout", "the database did not answer in time"),
]


def database_problem(error: BaseException) -> str:
    """Why a database call failed, in a few plain words ("the database or disk is full").

    SQLAlchemy's own message carries the SQL statement and its parameters (answers,
    token hashes): logs and replies get this instead. Unknown failures are named by
    the driver's exception type and the first line of its message.
    """
    orig = getattr(error, "orig", None) or error
    first = (str(orig).strip().splitlines() or [""])[0]
    low = first.lower()
    for needle, words in _PROBLEMS:
        if needle in low:
            return words
    return f"{type(orig).__name__}: {first[:160]}" if first else type(orig).__name__


def create_private_file(url: str) -> None:
    """Create a SQLite store's file readable by its owner only (it holds token hashes).

    SQLite gives the ``-wal`` and ``-shm`` files it adds the same permissions. A file that
    already exists keeps its permissions.
    """
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        fd = os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # a missing folder or a read-only one: SQLite says so when it opens the file
    os.close(fd)


def enable_sqlite_wal(engine: Engine) -> None:
    """Open every SQLite connection of ``engine`` in WAL mode, with full syncs, foreign keys and a busy timeout."""

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
