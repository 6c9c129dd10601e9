"""Who is asking (rlhfkit.app.deps): a token or a session, and the role it carries."""

from __future__ import annotations

import pytest
from apphelpers import Env, post_answer
from fastapi.testclient import TestClient

from rlhfkit.feedback.store.control import PAUSED


@pytest.mark.parametrize(
    "path", ["/api/me", "/api/queue", "/api/answers", "/api/admin/progress", "/api/media/webm/c0a"]
)
def test_no_token_is_401(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "token" in r.json()["detail"]


def test_wrong_malformed_and_revoked_tokens_are_401(client: TestClient, env: Env) -> None:
    selector, secret = env.alice.split(".")
    wrong_secret = selector + "." + ("A" if secret[0] != "A" else "B") + secret[1:]
    for bad in [wrong_secret, "not-a-token", env.alice + "x", "Basic " + env.alice]:
        header = bad if bad.startswith("Basic") else f"Bearer {bad}"
        r = client.get("/api/me", headers={"Authorization": header})
        assert r.status_code == 401, bad
    assert client.get("/api/me", headers=env.headers(env.alice)).json() == {
        "annotator_id": "alice",
        "role": "annotator",
    }
    env.store.revoke_tokens("alice")
    client.app.state.verifier.forget()  # type: ignore[attr-defined]  # skip the 5 s cache in the test
    assert client.get("/api/me", headers=env.headers(env.alice)).status_code == 401
    r = post_answer(client, env.alice, "q0", "A")
    assert r.status_code == 401  # type: ignore[attr-defined]
    assert env.store.count_feedback() == 0


def test_a_wrong_token_stores_nothing(client: TestClient, env: Env) -> None:
    r = client.post("/api/answers", json={"query_id": "q0", "answer": "A"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert env.store.count_feedback() == 0


def test_annotator_sees_only_own_answers_and_no_admin_views(client: TestClient, env: Env) -> None:
    assert post_answer(client, env.bob, "q0", "B").status_code == 201  # type: ignore[attr-defined]
    alice = env.headers(env.alice)
    r = client.get("/api/answers", params={"annotator_id": "bob"}, headers=alice)
    assert r.status_code == 403
    assert "own answers" in r.json()["detail"]
    assert client.get("/api/answers", headers=alice).json() == []
    for path in ["/api/admin/progress", "/api/admin/agreement", "/api/admin/loop"]:
        assert client.get(path, headers=alice).status_code == 403
    assert client.post("/api/admin/loop", json={"paused": True}, headers=alice).status_code == 403
    assert env.store.control(PAUSED) is None and not env.store.paused()  # nothing was written
    # the admin reads bob's answers
    rows = client.get("/api/answers", params={"annotator_id": "bob"}, headers=env.headers(env.admin)).json()
    assert [(r["query_id"], r["answer"], r["mu_a"]) for r in rows] == [("q0", "B", 0.0)]
