"""Open a feedback store on SQLite or on PostgreSQL, for tests that run on both.

PostgreSQL needs a server: ``.ci/run`` starts one and sets ``RLHFKIT_TEST_POSTGRES_URL``.
Each store gets a schema of its own there, dropped afterwards; without the
variable the PostgreSQL cases are skipped with that reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.web import normalise_store_url

PG_ENV = "RLHFKIT_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


@contextmanager
def backend_store(backend: str, sqlite_path: Path) -> Iterator[FeedbackStore]:
    """A fresh, empty store on ``backend`` ("sqlite": a file at ``sqlite_path``)."""
    if backend == "sqlite":
        s = FeedbackStore(f"sqlite:///{sqlite_path}")
        try:
            yield s
        finally:
            s.close()
        return
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL cases need {PG_ENV} (set by .ci/run after it starts the server)")
    url = normalise_store_url(url)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    s = FeedbackStore(f"{url}{sep}options=-csearch_path%3D{schema}")
    try:
        yield s
    finally:
        s.close()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
