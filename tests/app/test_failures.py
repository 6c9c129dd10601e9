"""The app when its database fails: 503 with the reason and the security headers on every route, then recovery.

The failures are real driver errors (see ``dbfaults.py``): a PostgreSQL server
whose connections are cut and that refuses new ones, a SQLite file that is full
(``max_page_count``) or read-only to us (``query_only``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from apphelpers import Env, fill
from dbfaults import CuttableProxy, page_count, sqlite_limits
from fastapi.testclient import TestClient

from rlhfkit.app.auth import add_annotator
from rlhfkit.app.guard import CSP
from rlhfkit.app.server import AppConfig, create_app
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.web import normalise_store_url
from rlhfkit.types import Query

PG_ENV = "RLHFKIT_TEST_POSTGRES_URL"
XRW = {"X-Requested-With": "rlhfkit"}


def _config(run_dir: Path, store: FeedbackStore) -> AppConfig:
    # token_ttl_s=0: every request asks the store who the token belongs to, as once the cache has expired
    return AppConfig(store_url=store.url, media_dir=run_dir / "media", prerender=False, token_ttl_s=0.0)


def _assert_503(r: object, what: str) -> str:
    assert r.status_code == 503, (what, r.status_code, r.text)  # type: ignore[attr-defined]
    headers = r.headers  # type: ignore[attr-defined]
    assert headers["content-security-policy"] == CSP, what
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY", what
    assert headers["retry-after"].isdigit(), what
    detail = r.json()["detail"]  # type: ignore[attr-defined]
    assert detail.startswith("the feedback store cannot be used now: "), (what, detail)
    return str(detail)


def _assert_log_is_plain(text: str) -> None:
    """One line per failure with the reason: no traceback, no SQL, no parameters."""
    assert "Traceback" not in text
    for sql in ("SELECT", "INSERT", "UPDATE", "DELETE FROM", "[SQL", "[parameters"):
        assert sql not in text, text


# -- PostgreSQL goes away -----------------------------------------------------------------


@pytest.fixture
def pg_env(tmp_path: Path) -> Iterator[tuple[Env, CuttableProxy]]:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL cases need {PG_ENV} (set by .ci/run after it starts the server)")
    direct = sa.engine.make_url(normalise_store_url(url))
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(direct)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    proxy = CuttableProxy((direct.host or "127.0.0.1", direct.port or 5432))
    proxied = direct.set(host="127.0.0.1", port=proxy.port).update_query_dict({"options": f"-csearch_path={schema}"})
    store = FeedbackStore(proxied.render_as_string(hide_password=False))
    try:
        queries = fill(store)
        env = Env(
            store=store,
            run_dir=tmp_path,
            alice=add_annotator(store, "alice"),
            bob=add_annotator(store, "bob"),
            admin=add_annotator(store, "boss", admin=True),
            queries=queries,
        )
        yield env, proxy
    finally:
        proxy.cut()
        store.close()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _every_route(client: TestClient, env: Env) -> dict[str, object]:
    """One request of each route family that reads or writes the store."""
    alice, boss = env.headers(env.alice), env.headers(env.admin)
    return {
        "health": client.get("/healthz"),
        "login": client.post("/api/session", json={"token": env.bob}),
        "me": client.get("/api/me", headers=alice),
        "me by session": client.get("/api/me"),
        "queue": client.get("/api/queue", headers=alice),
        "answer": client.post("/api/answers", json={"query_id": "q1", "answer": "A"}, headers=alice),
        "answers": client.get("/api/answers", headers=alice),
        "media": client.get("/api/media/gif/c0a", headers=alice),
        "progress": client.get("/api/admin/progress", headers=boss),
        "agreement": client.get("/api/admin/agreement", headers=boss),
        "loop": client.get("/api/admin/loop", headers=boss),
        "pause": client.post("/api/admin/loop", json={"paused": True}, headers=boss),
        "logout": client.delete("/api/session", headers=XRW),
    }


def test_a_database_that_goes_away_is_503_everywhere_then_recovers(
    pg_env: tuple[Env, CuttableProxy], caplog: pytest.LogCaptureFixture
) -> None:
    env, proxy = pg_env
    with TestClient(create_app(_config(env.run_dir, env.store), store=env.store)) as client:
        assert client.post("/api/session", json={"token": env.alice}).status_code == 200  # a session cookie
        caplog.set_level(logging.WARNING, logger="rlhfkit.app")
        proxy.cut()
        for what, r in _every_route(client, env).items():
            assert "cannot be reached" in _assert_503(r, what), what
        assert "store unavailable: the database server cannot be reached" in caplog.text
        _assert_log_is_plain(caplog.text)
        assert client.get("/").status_code == 200  # the pages themselves need no database

        proxy.restore()
        client.post("/api/session", json={"token": env.alice})
        answers = _every_route(client, env)
        for what, r in answers.items():
            assert r.status_code in (200, 201, 204), (what, r.status_code, r.text)  # type: ignore[attr-defined]
        assert [c.query_id for c in env.store.comparisons("alice")] == ["q1"]
        assert env.store.paused() is True


# -- SQLite: full, read-only ----------------------------------------------------------------


@pytest.fixture
def sqlite_client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(_config(env.run_dir, env.store), store=env.store)) as client:
        yield client
    sqlite_limits(env.store, None)


def test_a_full_disk_is_503_with_the_reason_and_the_answer_is_stored_once_there_is_room(
    sqlite_client: TestClient, env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.store.add_queries(
        [Query(f"z{i}", ("t0a", "t0b"), 2, kind="language", created_at=3000.0 + i) for i in range(40)]
    )
    alice = env.headers(env.alice)
    caplog.set_level(logging.WARNING, logger="rlhfkit.app")
    sqlite_limits(env.store, f"max_page_count={page_count(env.store)}")  # the disk is full from here on
    full = None
    for i in range(40):
        body = {"kind": "language", "query_id": f"z{i}", "utterance": f"answer {i}: " + "long " * 300}
        r = sqlite_client.post("/api/answers", json=body, headers=alice)
        if r.status_code != 201:
            full = (body, r)
            break
    assert full is not None, "the database never filled up"
    body, r = full
    assert "the database or disk is full" in _assert_503(r, "answer")
    assert "long long" not in r.text  # the reply does not echo the utterance
    assert env.store.answer_of(str(body["query_id"]), "alice") is None
    assert "could not store 1 answer: the database or disk is full" in caplog.text
    assert "POST /api/answers: store unavailable: the database or disk is full" in caplog.text
    _assert_log_is_plain(caplog.text)
    assert "long long" not in caplog.text

    sqlite_limits(env.store, None)  # room again
    assert sqlite_client.post("/api/answers", json=body, headers=alice).status_code == 201
    assert env.store.answer_of(str(body["query_id"]), "alice") is not None


def test_a_read_only_database_is_503_on_every_write_with_the_reason(
    sqlite_client: TestClient, env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    assert sqlite_client.post("/api/session", json={"token": env.alice}).status_code == 200
    caplog.set_level(logging.WARNING, logger="rlhfkit.app")
    sqlite_limits(env.store, "query_only=1")
    boss = env.headers(env.admin)
    writes = {
        "login": sqlite_client.post("/api/session", json={"token": env.bob}),
        "answer": sqlite_client.post("/api/answers", json={"query_id": "q0", "answer": "B"}, headers=XRW),
        "pause": sqlite_client.post("/api/admin/loop", json={"paused": True}, headers=boss),
        "logout": sqlite_client.delete("/api/session", headers=XRW),
    }
    for what, r in writes.items():
        assert "the database is read-only" in _assert_503(r, what), what
    assert sqlite_client.get("/api/queue").status_code == 200  # reads go on, with the session still live
    assert "store unavailable: the database is read-only" in caplog.text
    _assert_log_is_plain(caplog.text)

    sqlite_limits(env.store, None)
    assert sqlite_client.post("/api/answers", json={"query_id": "q0", "answer": "B"}, headers=XRW).status_code == 201
    assert sqlite_client.delete("/api/session", headers=XRW).status_code == 204
    assert sqlite_client.get("/api/me").status_code == 401


def test_an_unexpected_error_is_500_with_the_security_headers(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(_config(env.run_dir, env.store), store=env.store)

    def broken() -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(env.store, "count_queries", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/api/queue", headers=env.headers(env.alice))
    assert r.status_code == 500 and r.headers["content-security-policy"] == CSP
    assert r.json() == {"detail": "internal error; the server's log says more"}


def test_a_media_folder_that_cannot_be_written_is_503_with_the_reason(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    (env.run_dir / "blocker").write_text("a file where the media folder's parent should be")
    config = dataclasses.replace(_config(env.run_dir, env.store), media_dir=env.run_dir / "blocker" / "media")
    caplog.set_level(logging.WARNING, logger="rlhfkit.app")
    with TestClient(create_app(config, store=env.store)) as client:
        r = client.get("/api/media/gif/c0a", headers=env.headers(env.alice))
    assert r.status_code == 503 and r.headers["content-security-policy"] == CSP and r.headers["retry-after"]
    assert r.json()["detail"] == "the video could not be written: Not a directory"
    assert "rendering c0a.gif failed: Not a directory" in caplog.text
    _assert_log_is_plain(caplog.text)
