"""The pages, their static files and the docs page (rlhfkit.app.routes.pages)."""

from __future__ import annotations

import re

import pytest
from apphelpers import Env, app_config
from fastapi.testclient import TestClient

from rlhfkit.app.guard import CSP


def test_pages_hold_no_inline_script_and_the_script_never_parses_html(client: TestClient) -> None:
    for page in ["/", "/annotate", "/admin"]:
        html = client.get(page).text
        assert '<script src="/static/app.js" defer></script>' in html
        scripts = re.findall(r"<script[^>]*>.*?</script>", html, flags=re.S)
        assert len(scripts) == html.count("<script")  # every script tag is one of these
        assert all(re.fullmatch(r'<script src="/static/[a-z]+\.js" defer></script>', t) for t in scripts)
        assert not re.search(r"<[^>]*\son[a-z]+\s*=", html)  # no inline event handlers
        assert "style=" not in html
    js = client.get("/static/app.js").text + client.get("/static/admin.js").text
    for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"]:
        assert sink not in js
    assert client.get("/static/nothing.js").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/static/../server.py",
        "/static/..%2fserver.py",
        "/static/%2e%2e/server.py",
        "/static/%2e%2e%2fserver.py",
        "/static/..%5cserver.py",
        "/static/..",
        "/static/../../app/server.py",
        "/api/media/gif/..%2f..%2ffeedback.sqlite",
    ],
)
def test_raw_traversal_paths_reach_no_file(env: Env, path: str) -> None:
    """Sent byte for byte over a socket: HTTP clients resolve ``../`` before sending, servers may not."""
    import socket

    from rlhfkit.app.server import create_app, run_in_thread

    server, thread, port = run_in_thread(create_app(app_config(env.run_dir, env.store)))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            auth = f"Authorization: Bearer {env.alice}\r\n"
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n".encode())
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    status = int(reply.split(b" ", 2)[1])
    assert status in (404, 422), reply[:200]
    assert b"def create_app" not in reply and b"SQLite format" not in reply


def test_docs_are_a_local_page_that_links_the_schema(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    page = r.text
    assert '<a href="/openapi.json">' in page and "<script" not in page and "style=" not in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing from another host (a CDN)
    assert "/api/queue" in page and "/api/admin/loop" in page and "admin token" in page
    assert client.get("/redoc").status_code == 404
    schema = client.get("/openapi.json").json()
    assert "503" in schema["paths"]["/api/queue"]["get"]["responses"]
