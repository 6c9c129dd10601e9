"""How the app refuses (rlhfkit.app.replies): a wrong method names every method of its path."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/answers", "GET, POST"),  # the two methods come from two routers
        ("/api/session", "DELETE, POST"),
        ("/api/admin/loop", "GET, POST"),
        ("/healthz", "GET"),
    ],
)
def test_a_wrong_method_is_405_naming_every_method_of_the_path(client: TestClient, path: str, allowed: str) -> None:
    r = client.put(path)
    assert r.status_code == 405
    assert r.headers["allow"] == allowed
    assert r.json() == {"detail": "Method Not Allowed"}
