"""A person's queue and answers (rlhfkit.app.routes.annotate): stored with their mu, once, validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from apphelpers import Env, app_config, fill, post_answer
from fastapi.testclient import TestClient

from rlhfkit.app import schemas as s
from rlhfkit.app.auth import add_annotator
from rlhfkit.feedback_records import Comparison
from rlhfkit.types import Query


def test_queue_is_per_annotator(client: TestClient, env: Env) -> None:
    before = client.get("/api/queue", headers=env.headers(env.alice)).json()
    assert before["pending"] == 5 and before["answered"] == 0 and before["total"] == 5
    assert [q["id"] for q in before["queries"]] == ["q0", "q1", "q2", "q3", "k0"]
    post_answer(client, env.alice, "q0", "A")
    post_answer(client, env.alice, "q2", "equal")
    after = client.get("/api/queue", params={"limit": 2}, headers=env.headers(env.alice)).json()
    assert after["pending"] == 3 and after["answered"] == 2
    assert [q["id"] for q in after["queries"]] == ["q1", "q3"]
    assert client.get("/api/queue", headers=env.headers(env.bob)).json()["pending"] == 5
    text = before["queries"][0]["items"][0]
    assert text["domain"] == "text" and text["completion"].startswith("<script>")
    control = before["queries"][4]["items"][0]
    assert control["domain"] == "control" and control["video"] == "/api/media/webm/c0a" and control["steps"] == 12


@pytest.mark.parametrize(
    ("answer", "mu_a", "mu"),
    [("A", None, (1.0, 0.0)), ("B", None, (0.0, 1.0)), ("equal", None, (0.5, 0.5)), ("graded", 0.7, (0.7, 0.3))],
)
def test_answers_are_stored_with_their_mu(
    client: TestClient, env: Env, answer: str, mu_a: float | None, mu: tuple[float, float]
) -> None:
    r = post_answer(client, env.alice, "q1", answer, mu_a)
    assert r.status_code == 201  # type: ignore[attr-defined]
    assert r.json() == {"query_id": "q1", "stored": True, "duplicate": False}  # type: ignore[attr-defined]
    (stored,) = env.store.comparisons("alice")
    assert stored.answer.value == answer
    assert stored.mu == pytest.approx(mu)


def test_incomparable_is_stored_without_mu(client: TestClient, env: Env) -> None:
    assert post_answer(client, env.alice, "q1", "incomparable").status_code == 201  # type: ignore[attr-defined]
    (stored,) = env.store.comparisons("alice")
    assert stored.mu is None and not stored.usable


def test_an_answer_sent_twice_is_stored_once(client: TestClient, env: Env) -> None:
    first = post_answer(client, env.alice, "q0", "graded", 0.8)
    again = post_answer(client, env.alice, "q0", "graded", 0.8)
    assert first.status_code == 201 and again.status_code == 200  # type: ignore[attr-defined]
    assert again.json() == {"query_id": "q0", "stored": False, "duplicate": True}  # type: ignore[attr-defined]
    other = post_answer(client, env.alice, "q0", "B")
    assert other.status_code == 409  # type: ignore[attr-defined]
    assert "already answered" in other.json()["detail"]  # type: ignore[attr-defined]
    assert [(c.query_id, c.mu) for c in env.store.comparisons()] == [("q0", pytest.approx((0.8, 0.2)))]


def test_answer_to_unknown_query_is_404(client: TestClient, env: Env) -> None:
    r = post_answer(client, env.alice, "nope", "A")
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


def test_comparisons_answered_in_the_app_are_ordinary_store_records(client: TestClient, env: Env) -> None:
    post_answer(client, env.alice, "q3", "graded", 0.25)
    (c,) = env.store.comparisons()
    assert isinstance(c, Comparison) and c.annotator_id == "alice" and c.mu == pytest.approx((0.25, 0.75))


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


def test_every_kind_is_answered_and_stored_as_its_record(client: TestClient, env: Env) -> None:
    from rlhfkit.feedback_records import Correction, Label, Language, Ranking, Rating
    from rlhfkit.types import Query

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


# -- the handlers alone, and the answer route's schema per run ------------------------------


def test_the_queue_and_answer_handlers_run_alone_without_http(env: Env) -> None:
    """Each handler is a module-level function: a test hands it a store, a person and the settings itself."""
    import asyncio

    from fastapi import Response

    from rlhfkit.app.auth import Principal
    from rlhfkit.app.routes import annotate
    from rlhfkit.app.writer import AnswerWriter
    from rlhfkit.feedback.store import AnnotationSettings

    alice, settings = Principal("alice", "annotator"), AnnotationSettings()
    first = annotate.queue(who=alice, store=env.store, settings=settings, limit=2)
    assert (first.pending, first.total, [q.id for q in first.queries]) == (5, 5, ["q0", "q1"])
    writer = AnswerWriter(env.store)
    writer.start()
    try:
        body = s.ComparisonGradedIn(query_id="q0", answer="graded", mu_a=0.8)

        def answer() -> tuple[s.AnswerOut, int]:
            response = Response(status_code=201)  # the route's status, unless the handler says otherwise
            out = asyncio.run(annotate.answer(body, alice, response, store=env.store, writer=writer, settings=settings))
            return out, response.status_code

        assert answer() == (s.AnswerOut(query_id="q0", stored=True, duplicate=False), 201)
        assert answer() == (s.AnswerOut(query_id="q0", stored=False, duplicate=True), 200)
    finally:
        writer.stop()
    (c,) = env.store.comparisons("alice")
    assert c.mu == pytest.approx((0.8, 0.2))
    assert annotate.queue(who=alice, store=env.store, settings=settings, limit=2).pending == 4
    assert [a.query_id for a in annotate.answers(who=alice, store=env.store)] == ["q0"]


def _answer_schema(app: object) -> dict[str, object]:
    schema = app.openapi()  # type: ignore[attr-defined]
    components = schema["components"]["schemas"]
    return {"rating": components["RatingIn"]["properties"]["value"], "label": components["LabelIn"]["properties"]}


def test_each_app_publishes_and_enforces_its_own_runs_scale_and_choices(env: Env, tmp_path: Path) -> None:
    """The answer route's body is typed per app: two apps in one process keep their own scale and labels."""
    from rlhfkit.app.server import create_app
    from rlhfkit.feedback.store import AnnotationSettings, FeedbackStore

    other = FeedbackStore.in_dir(tmp_path / "other")
    fill(other)
    other.add_queries([Query("r0", ("t0a",), 2, kind="rating"), Query("l0", ("t1a",), 2, kind="label")])
    other.write_annotation_settings(AnnotationSettings(rating_scale=(0.0, 10.0), label_choices=("poor", "great")))
    token = add_annotator(other, "olga")
    fallback_app = create_app(app_config(env.run_dir, env.store), store=env.store)
    run_app = create_app(app_config(tmp_path / "other", other), store=other)
    try:
        assert _answer_schema(fallback_app)["rating"] == {
            "type": "number",
            "maximum": 7.0,
            "minimum": 1.0,
            "title": "Value",
        }
        assert _answer_schema(run_app)["rating"] == {
            "type": "number",
            "maximum": 10.0,
            "minimum": 0.0,
            "title": "Value",
        }
        assert _answer_schema(run_app)["label"]["label"]["enum"] == ["poor", "great", "none of these"]  # type: ignore[index]
        assert _answer_schema(fallback_app)["label"]["label"]["enum"] == ["bad", "ok", "good", "none of these"]  # type: ignore[index]
        operation = run_app.openapi()["paths"]["/api/answers"]["post"]
        assert operation["operationId"] == "answer_api_answers_post" and operation["summary"] == "Answer"
        with TestClient(run_app) as client:
            h = {"Authorization": f"Bearer {token}"}
            assert (
                client.post(
                    "/api/answers", json={"kind": "rating", "query_id": "r0", "value": 9}, headers=h
                ).status_code
                == 201
            )
            assert (
                client.post(
                    "/api/answers", json={"kind": "label", "query_id": "l0", "label": "ok"}, headers=h
                ).status_code
                == 422
            )
        with TestClient(fallback_app) as client:
            body = {"kind": "rating", "query_id": "q0", "value": 9}
            r = client.post("/api/answers", json=body, headers=env.headers(env.alice))
            assert r.status_code == 422 and "value" in r.json()["detail"]
    finally:
        other.close()


def test_the_answer_route_is_matched_on_the_app_and_solves_one_dependency(client: TestClient) -> None:
    """Answers carry the load (docs/benchmarks.md): their route sits on the app itself (an included router is a
    node every request walks) and solves only who is asking per request; its other parts are bound once."""
    from fastapi.routing import APIRoute

    routes = client.app.routes  # type: ignore[attr-defined]
    assert all(isinstance(r, APIRoute) or not r.__class__.__name__.startswith("_Included") for r in routes)
    (route,) = [r for r in routes if isinstance(r, APIRoute) and r.path == "/api/answers" and "POST" in r.methods]
    assert [d.name for d in route.dependant.dependencies] == ["who"]
    assert route.name == "answer" and route.status_code == 201
