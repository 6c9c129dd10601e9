"""The guard in front of the app (rlhfkit.app.guard): security headers on every response, the body limit."""

from __future__ import annotations

import json

import pytest
from apphelpers import Env, post_answer
from fastapi.testclient import TestClient

from rlhfkit.app.guard import CSP


def test_oversized_bodies_are_413_and_store_nothing(client: TestClient, env: Env) -> None:
    big = json.dumps({"query_id": "q0", "answer": "A", "pad": "x" * 5000}).encode()
    r = client.post("/api/answers", content=big, headers={**env.headers(env.alice), "Content-Type": "application/json"})
    assert r.status_code == 413
    assert "4096 bytes" in r.json()["detail"]

    def chunks() -> object:  # no Content-Length: counted as it arrives
        yield b'{"query_id": "q0", "answer": "A", "pad": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    r = client.post(
        "/api/answers", content=chunks(), headers={**env.headers(env.alice), "Content-Type": "application/json"}
    )
    assert r.status_code == 413
    assert env.store.count_feedback() == 0
    assert post_answer(client, env.alice, "q0", "A").status_code == 201  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/", "/annotate", "/admin", "/static/app.js", "/healthz", "/api/me"])
def test_every_response_carries_a_strict_csp(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
