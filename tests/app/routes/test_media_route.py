"""Control segments as videos over HTTP (rlhfkit.app.routes.media): rendered once, only when shown, bounded."""

from __future__ import annotations

import dataclasses

import pytest
from apphelpers import Env, app_config
from fastapi.testclient import TestClient

from rlhfkit.app.guard import CSP


def test_control_segments_are_rendered_once_and_cached(client: TestClient, env: Env) -> None:
    headers = env.headers(env.alice)
    r = client.get("/api/media/webm/c0a", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "video/webm"
    assert r.content[:4] == b"\x1a\x45\xdf\xa3"  # the EBML magic of a WebM file
    assert client.get("/api/media/webm/c0a", headers=headers).content == r.content
    gif = client.get("/api/media/gif/c0a", headers=headers)
    assert gif.status_code == 200 and gif.content[:6] == b"GIF89a"
    assert client.app.state.media.renders == 2  # type: ignore[attr-defined]  # webm + gif, each once
    assert (env.run_dir / "media" / "c0a.webm").is_file()
    assert client.get("/api/media/webm/t0a", headers=headers).status_code == 404  # a text generation
    assert client.get("/api/media/webm/nope", headers=headers).status_code == 404
    assert client.get("/api/media/mp4/c0a", headers=headers).status_code == 422


def test_only_generations_a_query_shows_are_rendered(client: TestClient, env: Env) -> None:
    from apphelpers import pendulum_segment

    from rlhfkit.types import Generation

    env.store.add_generations([Generation("orphan", 1, "round-0", pendulum_segment(9))])
    r = client.get("/api/media/gif/orphan", headers=env.headers(env.alice))
    assert r.status_code == 404 and "no query shows" in r.json()["detail"]
    assert client.app.state.media.renders == 0  # type: ignore[attr-defined]
    assert not (env.run_dir / "media" / "orphan.gif").exists()


def test_renders_beyond_the_limit_are_503_at_once(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from rlhfkit.app import media
    from rlhfkit.app.server import create_app

    started, release = threading.Event(), threading.Event()
    real = media.render_frames

    def slow(segment: object) -> object:
        started.set()
        assert release.wait(30)
        return real(segment)  # type: ignore[arg-type]

    monkeypatch.setattr(media, "render_frames", slow)
    config = dataclasses.replace(app_config(env.run_dir, env.store), max_waiting_renders=1)
    headers = env.headers(env.alice)
    with TestClient(create_app(config, store=env.store)) as client:
        first: list[int] = []
        worker = threading.Thread(
            target=lambda: first.append(client.get("/api/media/gif/c0a", headers=headers).status_code)
        )
        worker.start()
        assert started.wait(30)
        r = client.get("/api/media/gif/c0b", headers=headers)
        assert r.status_code == 503 and "busy rendering" in r.json()["detail"]
        assert r.headers["retry-after"].isdigit() and r.headers["content-security-policy"] == CSP
        release.set()
        worker.join(60)
        assert first == [200]
        assert client.get("/api/media/gif/c0b", headers=headers).status_code == 200
