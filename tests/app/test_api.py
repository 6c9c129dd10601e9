"""The web API: authentication, roles, validation, idempotent answers, admin views, media."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from apphelpers import Env, app_config
from fastapi.testclient import TestClient

from rlhfkit.app.guard import CSP
from rlhfkit.feedback.store.control import PAUSED
from rlhfkit.types import Comparison


def _answer(client: TestClient, token: str, query_id: str, answer: str, mu_a: float | None = None) -> object:
    body: dict[str, object] = {"query_id": query_id, "answer": answer}
    if mu_a is not None:
        body["mu_a"] = mu_a
    return client.post("/api/answers", json=body, headers={"Authorization": f"Bearer {token}"})


# -- authentication ----------------------------------------------------------------------


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
    r = _answer(client, env.alice, "q0", "A")
    assert r.status_code == 401  # type: ignore[attr-defined]
    assert env.store.count_feedback() == 0


def test_a_wrong_token_stores_nothing(client: TestClient, env: Env) -> None:
    r = client.post("/api/answers", json={"query_id": "q0", "answer": "A"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert env.store.count_feedback() == 0


# -- roles -------------------------------------------------------------------------------


def test_annotator_sees_only_own_answers_and_no_admin_views(client: TestClient, env: Env) -> None:
    assert _answer(client, env.bob, "q0", "B").status_code == 201  # type: ignore[attr-defined]
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


def test_queue_is_per_annotator(client: TestClient, env: Env) -> None:
    before = client.get("/api/queue", headers=env.headers(env.alice)).json()
    assert before["pending"] == 5 and before["answered"] == 0 and before["total"] == 5
    assert [q["id"] for q in before["queries"]] == ["q0", "q1", "q2", "q3", "k0"]
    _answer(client, env.alice, "q0", "A")
    _answer(client, env.alice, "q2", "equal")
    after = client.get("/api/queue", params={"limit": 2}, headers=env.headers(env.alice)).json()
    assert after["pending"] == 3 and after["answered"] == 2
    assert [q["id"] for q in after["queries"]] == ["q1", "q3"]
    assert client.get("/api/queue", headers=env.headers(env.bob)).json()["pending"] == 5
    text = before["queries"][0]["items"][0]
    assert text["domain"] == "text" and text["completion"].startswith("<script>")
    control = before["queries"][4]["items"][0]
    assert control["domain"] == "control" and control["video"] == "/api/media/webm/c0a" and control["steps"] == 12


# -- answers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "mu_a", "mu"),
    [("A", None, (1.0, 0.0)), ("B", None, (0.0, 1.0)), ("equal", None, (0.5, 0.5)), ("graded", 0.7, (0.7, 0.3))],
)
def test_answers_are_stored_with_their_mu(
    client: TestClient, env: Env, answer: str, mu_a: float | None, mu: tuple[float, float]
) -> None:
    r = _answer(client, env.alice, "q1", answer, mu_a)
    assert r.status_code == 201  # type: ignore[attr-defined]
    assert r.json() == {"query_id": "q1", "stored": True, "duplicate": False}  # type: ignore[attr-defined]
    (stored,) = env.store.comparisons("alice")
    assert stored.answer.value == answer
    assert stored.mu == pytest.approx(mu)


def test_incomparable_is_stored_without_mu(client: TestClient, env: Env) -> None:
    assert _answer(client, env.alice, "q1", "incomparable").status_code == 201  # type: ignore[attr-defined]
    (stored,) = env.store.comparisons("alice")
    assert stored.mu is None and not stored.usable


def test_an_answer_sent_twice_is_stored_once(client: TestClient, env: Env) -> None:
    first = _answer(client, env.alice, "q0", "graded", 0.8)
    again = _answer(client, env.alice, "q0", "graded", 0.8)
    assert first.status_code == 201 and again.status_code == 200  # type: ignore[attr-defined]
    assert again.json() == {"query_id": "q0", "stored": False, "duplicate": True}  # type: ignore[attr-defined]
    other = _answer(client, env.alice, "q0", "B")
    assert other.status_code == 409  # type: ignore[attr-defined]
    assert "already answered" in other.json()["detail"]  # type: ignore[attr-defined]
    assert [(c.query_id, c.mu) for c in env.store.comparisons()] == [("q0", pytest.approx((0.8, 0.2)))]


def test_answer_to_unknown_query_is_404(client: TestClient, env: Env) -> None:
    r = _answer(client, env.alice, "nope", "A")
    assert r.status_code == 404  # type: ignore[attr-defined]
    assert "unknown query" in r.json()["detail"]  # type: ignore[attr-defined]
    assert env.store.count_feedback() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query_id": "q0", "answer": "graded"}, "mu_a"),
        ({"query_id": "q0", "answer": "A", "mu_a": 0.9}, "mu_a"),
        ({"query_id": "q0", "answer": "graded", "mu_a": 1.5}, "mu_a"),
        ({"query_id": "q0", "answer": "maybe"}, "answer"),
        ({"query_id": "q0", "answer": "A", "extra": 1}, "extra"),
        ({"answer": "A"}, "query_id"),
        ({"query_id": "q0/../x", "answer": "A"}, "query_id"),
        ({"query_id": "q0", "answer": "A", "kind": "bogus"}, "bogus"),
        ({"query_id": "q0", "answer": "A", "kind": "ranking"}, "ranked"),
        ({"query_id": "q0", "kind": "rating", "value": "7"}, "value"),
        ([1, 2], "body"),
    ],
)
def test_malformed_bodies_are_422_naming_the_field_and_store_nothing(
    client: TestClient, env: Env, body: object, field: str
) -> None:
    r = client.post("/api/answers", json=body, headers=env.headers(env.alice))
    assert r.status_code == 422
    data = r.json()
    assert field in data["detail"], data
    assert data["errors"] and all("input" not in e for e in data["errors"])
    assert env.store.count_feedback() == 0


def test_invalid_json_is_422(client: TestClient, env: Env) -> None:
    headers = {**env.headers(env.alice), "Content-Type": "application/json"}
    r = client.post("/api/answers", content=b'{"query_id": "q0", "answer": "A"', headers=headers)
    assert r.status_code == 422
    assert "JSON" in r.json()["detail"]
    assert env.store.count_feedback() == 0


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
    assert _answer(client, env.alice, "q0", "A").status_code == 201  # type: ignore[attr-defined]


# -- the login cookie --------------------------------------------------------------------


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


# -- pages and headers -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/annotate", "/admin", "/static/app.js", "/healthz", "/api/me"])
def test_every_response_carries_a_strict_csp(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"


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


# -- admin -------------------------------------------------------------------------------


def test_progress_agreement_and_pause(client: TestClient, env: Env) -> None:
    for token, answers in [(env.alice, ["A", "B", "A", "A"]), (env.bob, ["A", "B", "B", "A"])]:
        for i, a in enumerate(answers):
            assert _answer(client, token, f"q{i}", a).status_code == 201  # type: ignore[attr-defined]
    admin = env.headers(env.admin)
    progress = client.get("/api/admin/progress", headers=admin).json()
    assert progress["queries"] == 5 and progress["answers"] == 8
    # the admin answered nothing: not listed among the people who answer (tests/app/test_settings.py)
    assert {a["annotator_id"]: a["answered"] for a in progress["annotators"]} == {"alice": 4, "bob": 4}
    g = client.get("/api/admin/agreement", headers=admin).json()
    # units: (A,A) (B,B) (A,B) (A,A): alpha = 1 - 7 * 2 / (2 * 5 * 3) = 8/15 (see tests/feedback/test_agreement.py)
    assert g["n_units"] == 4 and g["n_pairs"] == 4 and g["pairwise"] == pytest.approx(0.75)
    assert g["alpha_nominal"] == pytest.approx(8 / 15)
    assert g["by_pair"] == [{"annotators": ["alice", "bob"], "agree": 3, "pairs": 4}]
    assert client.get("/api/admin/loop", headers=admin).json() == {"paused": False, "status": {}}
    assert client.post("/api/admin/loop", json={"paused": True}, headers=admin).json()["paused"] is True
    assert env.store.paused() is True
    assert client.get("/api/queue", headers=env.headers(env.alice)).json()["paused"] is True
    assert client.post("/api/admin/loop", json={"paused": False}, headers=admin).json()["paused"] is False
    assert env.store.paused() is False


def test_comparisons_answered_in_the_app_are_ordinary_store_records(client: TestClient, env: Env) -> None:
    _answer(client, env.alice, "q3", "graded", 0.25)
    (c,) = env.store.comparisons()
    assert isinstance(c, Comparison) and c.annotator_id == "alice" and c.mu == pytest.approx((0.25, 0.75))


# -- media -------------------------------------------------------------------------------


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


def test_an_utterance_of_only_invisible_characters_is_refused(client: TestClient, env: Env) -> None:
    from rlhfkit.types import Query

    env.store.add_queries([Query("z0", ("t2a", "t2b"), 2, kind="language", created_at=3003.0)])
    h = env.headers(env.alice)
    for blank in ["\u200b\u200c\u200d", "\u2060\ufeff", " \u200b\t\u3164 "]:
        r = client.post("/api/answers", json={"kind": "language", "query_id": "z0", "utterance": blank}, headers=h)
        assert r.status_code == 422 and "visible text" in r.json()["detail"] and blank not in r.text
    assert env.store.count_feedback() == 0
    body = {"kind": "language", "query_id": "z0", "utterance": "\u200bcalmer"}
    ok = client.post("/api/answers", json=body, headers=h)
    assert ok.status_code == 201


# -- the other feedback kinds ------------------------------------------------------------


def test_every_kind_is_answered_and_stored_as_its_record(client: TestClient, env: Env) -> None:
    from rlhfkit.types import Correction, Label, Language, Query, Ranking, Rating

    env.store.add_queries(
        [
            Query("r0", ("t0a",), 2, kind="rating", created_at=3000.0),
            Query("l0", ("t1a",), 2, kind="label", created_at=3001.0),
            Query("k1", ("t1a", "t1b", "t2a"), 2, kind="ranking", created_at=3002.0),
            Query("z0", ("t2a", "t2b"), 2, kind="language", created_at=3003.0),
            Query("x0", ("t3a",), 2, kind="correction", created_at=3004.0),
            Query("x1", ("c0a",), 2, kind="correction", created_at=3005.0),
        ]
    )
    h = env.headers(env.alice)
    queue = client.get("/api/queue", params={"limit": 20}, headers=h).json()
    # no run wrote settings to this store: the fallback, which is what a run with a default config writes
    assert queue["rating_scale"] == [1.0, 7.0] and queue["label_choices"] == ["bad", "ok", "good"]
    kinds = [q["kind"] for q in queue["queries"]][-6:]
    assert kinds == ["rating", "label", "ranking", "language", "correction", "correction"]

    def post(body: dict[str, object]) -> object:
        return client.post("/api/answers", json=body, headers=h)

    assert post({"kind": "rating", "query_id": "r0", "value": 6}).status_code == 201  # type: ignore[attr-defined]
    assert post({"kind": "rating", "query_id": "r0", "value": 6}).status_code == 200  # type: ignore[attr-defined]
    bad = post({"kind": "label", "query_id": "l0", "label": "great"})
    assert bad.status_code == 422 and "'bad', 'ok', 'good' or 'none of these'" in bad.json()["detail"]  # type: ignore[attr-defined]
    assert post({"kind": "label", "query_id": "l0", "label": "none of these"}).status_code == 201  # type: ignore[attr-defined]
    wrong = post({"kind": "ranking", "query_id": "k1", "ranked": ["t1a", "t1b", "t9"]})
    assert wrong.status_code == 409 and "must order exactly" in wrong.json()["detail"]  # type: ignore[attr-defined]
    assert post({"kind": "ranking", "query_id": "k1", "ranked": ["t2a", "t1a", "t1b"]}).status_code == 201  # type: ignore[attr-defined]
    assert post({"kind": "language", "query_id": "z0", "utterance": "B <i>rambles</i>"}).status_code == 201  # type: ignore[attr-defined]
    assert post({"kind": "correction", "query_id": "x0", "completion": "fixed"}).status_code == 201  # type: ignore[attr-defined]
    control = post({"kind": "correction", "query_id": "x1", "completion": "fixed"})
    assert control.status_code == 409 and "control segment" in control.json()["detail"]  # type: ignore[attr-defined]
    mismatch = post({"kind": "rating", "query_id": "q0", "value": 3})
    assert mismatch.status_code == 409 and "asks for 'comparison'" in mismatch.json()["detail"]  # type: ignore[attr-defined]
    changed = post({"kind": "rating", "query_id": "r0", "value": 2})
    assert changed.status_code == 409  # type: ignore[attr-defined]

    got = {f.query_id: f for f in env.store.feedback(annotator_id="alice")}
    assert isinstance(got["r0"], Rating) and got["r0"].value == 6.0
    assert isinstance(got["l0"], Label) and not got["l0"].usable
    assert isinstance(got["k1"], Ranking) and got["k1"].ranked == ("t2a", "t1a", "t1b")
    assert isinstance(got["z0"], Language) and got["z0"].utterance == "B <i>rambles</i>"
    assert isinstance(got["x0"], Correction) and got["x0"].corrected.completion == "fixed"  # type: ignore[union-attr]
    assert got["x0"].corrected.prompt == "prompt 3 <b>bold?</b>"  # type: ignore[union-attr]
    listed = {a["query_id"]: a for a in client.get("/api/answers", headers=h).json()}
    assert listed["k1"]["payload"] == {"ranked": ["t2a", "t1a", "t1b"]} and listed["r0"]["answer"] == "rating"


def test_python_client_speaks_every_kind(env: Env) -> None:
    from rlhfkit.app.client import AnnotationClient, AppError
    from rlhfkit.app.server import create_app, run_in_thread
    from rlhfkit.types import Query

    env.store.add_queries(
        [
            Query("r0", ("t0a",), 2, kind="rating", created_at=3000.0),
            Query("l0", ("t1a",), 2, kind="label", created_at=3001.0),
            Query("k1", ("t1a", "t1b"), 2, kind="ranking", created_at=3002.0),
            Query("z0", ("t2a", "t2b"), 2, kind="language", created_at=3003.0),
            Query("x0", ("t3a",), 2, kind="correction", created_at=3004.0),
        ]
    )
    server, thread, port = run_in_thread(create_app(app_config(env.run_dir, env.store)))
    try:
        with AnnotationClient(f"http://127.0.0.1:{port}", env.bob) as c:
            assert c.answer("q0", "graded", 0.9).stored and c.answer("q0", "graded", 0.9).duplicate
            assert c.rate("r0", 2).stored and c.label("l0", "bad").stored and c.rank("k1", ["t1b", "t1a"]).stored
            assert c.comment("z0", "shorter").stored and c.correct("x0", "better").stored
            with pytest.raises(AppError) as e:
                c.rate("q1", 3)
            assert e.value.status == 409
            kinds = sorted(a["kind"] for a in c.answers())
            assert kinds == ["comparison", "correction", "label", "language", "ranking", "rating"]
            with pytest.raises(AppError) as e:
                c.progress()
            assert e.value.status == 403
    finally:
        server.should_exit = True
        thread.join(timeout=30)
