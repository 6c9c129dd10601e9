"""The web app's own log holds no token (the served process's log: tests/cli/test_cli.py)."""

from __future__ import annotations

import logging

import pytest
from apphelpers import Env
from fastapi.testclient import TestClient


def test_in_process_logs_hold_no_token(client: TestClient, env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client.post("/api/session", json={"token": env.alice})
    client.post("/api/session", json={"token": env.alice + "x"})
    client.get("/api/me", headers=env.headers(env.admin))
    client.post("/api/admin/loop", json={"paused": True}, headers=env.headers(env.admin))
    client.post("/api/answers", json={"query_id": "q0", "answer": "A", "t": env.bob}, headers=env.headers(env.bob))
    assert "loop paused by boss" in caplog.text
    for token in (env.alice, env.bob, env.admin):
        assert token.split(".")[1] not in caplog.text
