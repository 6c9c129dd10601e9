"""Fixtures for the web app: a store with pending text and control queries, tokens, a running app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apphelpers import Env, app_config, fill
from fastapi.testclient import TestClient

from rlhfkit.app.auth import add_annotator
from rlhfkit.app.server import create_app
from rlhfkit.feedback.store import FeedbackStore


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    store = FeedbackStore.in_dir(tmp_path)
    queries = fill(store)
    yield Env(
        store=store,
        run_dir=tmp_path,
        alice=add_annotator(store, "alice"),
        bob=add_annotator(store, "bob"),
        admin=add_annotator(store, "boss", admin=True),
        queries=queries,
    )
    store.close()


@pytest.fixture
def client(env: Env) -> Iterator[TestClient]:
    app = create_app(app_config(env.run_dir, env.store), store=env.store)
    with TestClient(app) as c:
        yield c
