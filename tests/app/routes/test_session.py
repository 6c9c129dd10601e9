"""Sign-in on the pages is a server-side session: the cookie is a random id, and sign-out or revocation end it."""

from __future__ import annotations

import time

import sqlalchemy as sa
from apphelpers import Env
from fastapi.testclient import TestClient

from rlhfkit.app.auth import add_annotator
from rlhfkit.feedback.store import web_sessions_table

XRW = {"X-Requested-With": "rlhfkit"}


def _sign_in(client: TestClient, token: str) -> str:
    r = client.post("/api/session", json={"token": token})
    assert r.status_code == 200, r.text
    return str(r.cookies["rlhfkit_session"])


def _as(client: TestClient, session_id: str, path: str = "/api/me") -> int:
    """A request that carries a kept copy of the cookie (as a stolen or cached one would be)."""
    client.cookies.clear()
    return client.get(path, headers={"Cookie": f"rlhfkit_session={session_id}"}).status_code


def test_the_cookie_holds_a_session_id_not_the_token_and_the_store_only_its_hash(client: TestClient, env: Env) -> None:
    session_id = _sign_in(client, env.alice)
    assert session_id != env.alice and env.alice.split(".")[1] not in session_id
    assert client.get("/api/me").json() == {"annotator_id": "alice", "role": "annotator"}
    raw = b"".join(p.read_bytes() for p in env.run_dir.glob("feedback.sqlite*"))
    assert session_id.encode() not in raw
    with env.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(web_sessions_table)).scalar_one() == 1


def test_signing_out_ends_the_session_even_for_a_kept_cookie(client: TestClient, env: Env) -> None:
    session_id = _sign_in(client, env.alice)
    assert _as(client, session_id) == 200
    client.cookies.set("rlhfkit_session", session_id)
    assert client.delete("/api/session", headers=XRW).status_code == 204
    assert _as(client, session_id) == 401
    kept = {**XRW, "Cookie": f"rlhfkit_session={session_id}"}
    r = client.post("/api/answers", json={"query_id": "q0", "answer": "A"}, headers=kept)
    assert r.status_code == 401 and env.store.count_feedback() == 0
    # the token itself still works for scripts, and signs in again
    assert client.get("/api/me", headers=env.headers(env.alice)).status_code == 200
    assert _as(client, _sign_in(client, env.alice)) == 200


def test_revoking_or_rotating_the_token_ends_its_sessions_at_once(client: TestClient, env: Env) -> None:
    alice, bob = _sign_in(client, env.alice), _sign_in(client, env.bob)
    env.store.revoke_tokens("alice")  # what `rlhfkit annotators revoke alice` does; no cache to wait for
    assert _as(client, alice) == 401 and _as(client, bob) == 200
    add_annotator(env.store, "bob", rotate=True)
    assert _as(client, bob) == 401


def test_an_expired_session_is_refused(client: TestClient, env: Env) -> None:
    session_id = _sign_in(client, env.alice)
    with env.store.engine.begin() as conn:
        conn.execute(web_sessions_table.update().values(expires_at=time.time() - 1))
    assert _as(client, session_id) == 401
    _sign_in(client, env.bob)  # signing in clears expired sessions away
    with env.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(web_sessions_table)).scalar_one() == 1


def test_cookie_writes_from_another_origin_are_refused(client: TestClient, env: Env) -> None:
    _sign_in(client, env.alice)
    body = {"query_id": "q0", "answer": "A"}
    for origin in ["http://evil.example", "null", "http://testserver.evil.example"]:
        r = client.post("/api/answers", json=body, headers={**XRW, "Origin": origin})
        assert r.status_code == 403 and "Origin" in r.json()["detail"] and origin not in r.json()["detail"], origin
    assert env.store.count_feedback() == 0
    assert client.post("/api/answers", json=body, headers={**XRW, "Origin": "http://testserver"}).status_code == 201
    # signing in from another site's page is refused too (no cookie is set)
    client.cookies.clear()
    r = client.post("/api/session", json={"token": env.bob}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "set-cookie" not in r.headers
    # a script with its token is not a browser: no Origin rule
    headers = {**env.headers(env.bob), "Origin": "http://evil.example"}
    assert client.post("/api/answers", json=body, headers=headers).status_code == 201


def test_login_cookie_is_httponly_strict_and_writes_need_the_csrf_header(client: TestClient, env: Env) -> None:
    r = client.post("/api/session", json={"token": env.alice})
    assert r.status_code == 200 and r.json() == {"annotator_id": "alice", "role": "annotator"}
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert client.get("/api/me").json()["annotator_id"] == "alice"  # the cookie authenticates reads
    r = client.post("/api/answers", json={"query_id": "q0", "answer": "A"})
    assert r.status_code == 403 and "X-Requested-With" in r.json()["detail"]
    assert env.store.count_feedback() == 0
    r = client.post("/api/answers", json={"query_id": "q0", "answer": "A"}, headers={"X-Requested-With": "rlhfkit"})
    assert r.status_code == 201
    assert client.delete("/api/session", headers={"X-Requested-With": "rlhfkit"}).status_code == 204
    client.cookies.clear()
    assert client.get("/api/me").status_code == 401


def test_login_with_a_bad_token_is_401_and_echoes_nothing(client: TestClient, env: Env) -> None:
    bad = env.alice[:-1] + ("x" if env.alice[-1] != "x" else "y")
    r = client.post("/api/session", json={"token": bad})
    assert r.status_code == 401 and bad not in r.text and "set-cookie" not in r.headers
    r = client.post("/api/session", json={"token": env.alice, "oops": 1})
    assert r.status_code == 422 and env.alice not in r.text
