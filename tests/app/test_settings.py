"""What the app shows people and admins about the run: its settings (from the store the run wrote), who
answers, and progress per round with the run's returns and report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apphelpers import Env, app_config
from fastapi.testclient import TestClient

from rlhfkit.app.server import create_app
from rlhfkit.cli import main
from rlhfkit.feedback.store import AnnotationSettings
from rlhfkit.feedback.store.control import ANNOTATION_SETTINGS
from rlhfkit.feedback_records import Comparison
from rlhfkit.types import Generation, Query, Text

RUN_SETTINGS = AnnotationSettings(
    instructions="Prefer the calmer one.\nIgnore <b>colours</b>.",
    rating_scale=(0.0, 10.0),
    label_choices=("poor", "fine", "great"),
    task="pendulum",
)


def _client(env: Env) -> TestClient:
    return TestClient(create_app(app_config(env.run_dir, env.store), store=env.store))


def test_the_app_offers_and_accepts_the_scale_and_choices_the_run_wrote(env: Env) -> None:
    env.store.write_annotation_settings(RUN_SETTINGS)  # what the loop does when it starts
    env.store.add_queries(
        [Query("r0", ("t0a",), 2, kind="rating", created_at=3000.0), Query("l0", ("t1a",), 2, kind="label")]
    )
    with _client(env) as client:
        h = env.headers(env.alice)
        got = client.get("/api/settings", headers=h).json()
        assert got == {
            "instructions": "Prefer the calmer one.\nIgnore <b>colours</b>.",
            "rating_scale": [0.0, 10.0],
            "label_choices": ["poor", "fine", "great"],
            "label_ordinal": True,
            "task": "pendulum",
            "source": "run",
        }
        queue = client.get("/api/queue", headers=h).json()
        assert queue["rating_scale"] == [0.0, 10.0] and queue["label_choices"] == ["poor", "fine", "great"]

        def post(body: dict[str, object]) -> int:
            return client.post("/api/answers", json=body, headers=h).status_code

        assert post({"kind": "label", "query_id": "l0", "label": "good"}) == 422  # the app's fallback: not this run's
        assert post({"kind": "rating", "query_id": "r0", "value": 9}) == 201  # outside 1-7, inside the run's 0-10
        assert post({"kind": "label", "query_id": "l0", "label": "great"}) == 201
        assert client.get("/api/settings").status_code == 401  # for signed-in people only
    (label,) = env.store.feedback(kind="label")
    assert label.choices == ("poor", "fine", "great")  # type: ignore[union-attr]
    (rating,) = env.store.feedback(kind="rating")
    assert rating.scale == (0.0, 10.0)  # type: ignore[union-attr]


def test_a_store_no_run_has_written_gets_the_fallback_of_a_default_run(client: TestClient, env: Env) -> None:
    got = client.get("/api/settings", headers=env.headers(env.alice)).json()
    assert got["source"] == "fallback"
    assert got["rating_scale"] == [1.0, 7.0] and got["label_choices"] == ["bad", "ok", "good"]
    assert "better" in got["instructions"]


def test_malformed_settings_in_the_store_stop_the_app_with_the_field_named(env: Env) -> None:
    env.store.set_control(ANNOTATION_SETTINGS, {"rating_scale": [7, 1], "label_choices": ["a", "b"]})
    with pytest.raises(ValueError, match="rating_scale"):
        create_app(app_config(env.run_dir, env.store), store=env.store)


def test_admins_are_not_listed_among_the_people_until_they_answer(client: TestClient, env: Env) -> None:
    env.store.record(Comparison.make("q0", "A", "alice"))
    env.store.record(Comparison.make("q0", "B", "simulated-0"))  # answered without a login
    admin = env.headers(env.admin)
    people = client.get("/api/admin/progress", headers=admin).json()["annotators"]
    assert [(p["annotator_id"], p["answered"], p["role"]) for p in people] == [
        ("alice", 1, "annotator"),
        ("bob", 0, "annotator"),
        ("simulated-0", 1, "none"),
    ]
    env.store.record(Comparison.make("q1", "A", "boss"))  # an admin who answers is listed, marked as one
    people = client.get("/api/admin/progress", headers=admin).json()["annotators"]
    assert ("boss", 1, "admin") in [(p["annotator_id"], p["answered"], p["role"]) for p in people]


def _metrics(run_dir: Path, rows: list[dict[str, object]]) -> None:
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_rounds_show_answers_per_round_and_the_runs_returns(client: TestClient, env: Env) -> None:
    admin = env.headers(env.admin)
    gens = [Generation(f"u{i}", 2, "round-1", Text("p", f"c{i}")) for i in range(4)]
    env.store.add_generations(gens)
    env.store.add_queries([Query("n0", ("u0", "u1"), 2, created_at=5000.0), Query("n1", ("u2", "u3"), 2)])
    for who, qid in [("alice", "q0"), ("bob", "q0"), ("alice", "q1"), ("alice", "n1")]:
        env.store.record(Comparison.make(qid, "A", who))

    got = client.get("/api/admin/rounds", headers=admin).json()
    assert got["metrics"] is False and got["report"] is None  # no metrics.jsonl, no report.html yet
    assert [(r["round"], r["queries"], r["answers"], r["true_return"]) for r in got["rounds"]] == [
        (1, 5, 3, None),
        (2, 2, 1, None),
    ]

    _metrics(
        env.run_dir,
        [
            {"round": 0, "true_return": -900.5, "learned_return": None, "n_feedback": 0},
            {"round": 1, "true_return": -400.25, "learned_return": 3.5, "n_feedback": 3},
        ],
    )
    (env.run_dir / "report.html").write_text("<html><title>the report</title></html>", encoding="utf-8")
    got = client.get("/api/admin/rounds", headers=admin).json()
    assert got["metrics"] is True and got["report"] == "/report/"
    assert [(r["round"], r["queries"], r["answers"], r["true_return"], r["learned_return"]) for r in got["rounds"]] == [
        (0, 0, 0, -900.5, None),  # the base policy, before any feedback
        (1, 5, 3, -400.25, 3.5),
        (2, 2, 1, None, None),  # posted, not finished
    ]
    assert client.get("/api/admin/rounds", headers=env.headers(env.alice)).status_code == 403


def test_the_report_is_served_to_admins_with_its_own_policy(client: TestClient, env: Env) -> None:
    admin = env.headers(env.admin)
    assert client.get("/report/", headers=admin).status_code == 404
    (env.run_dir / "report.html").write_text('<img src="plots/returns.png">', encoding="utf-8")
    (env.run_dir / "plots").mkdir()
    (env.run_dir / "plots" / "returns.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    page = client.get("/report/", headers=admin)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "style-src 'unsafe-inline'" in policy and "script-src" not in policy and "default-src 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"  # the other security headers stay
    assert client.get("/report/plots/returns.png", headers=admin).content.startswith(b"\x89PNG")
    assert client.get("/report/plots/..%2Fconfig.toml", headers=admin).status_code == 404
    assert client.get("/report/", headers=env.headers(env.alice)).status_code == 403  # it shows the config
    assert client.get("/report/").status_code == 401


def test_serve_and_export_flags_cannot_disagree_with_the_run(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.store.write_annotation_settings(RUN_SETTINGS)
    run = str(env.run_dir)
    assert main(["serve", run, "--labels", "bad,good"]) == 2
    err = capsys.readouterr().err
    assert "--labels bad,good" in err and "poor,fine,great" in err and "feedback.teacher.label_choices" in err
    out = env.run_dir / "ls"
    assert main(["export", run, "--format", "labelstudio", "--out", str(out), "--rating-scale", "1,7"]) == 2
    assert "feedback.teacher.rating_scale" in capsys.readouterr().err and not out.exists()
    # agreeing flags are fine, and without flags the run's choices are what the export offers
    assert main(["export", run, "--format", "labelstudio", "--out", str(out), "--labels", "poor,fine,great"]) == 0
    env.store.add_queries([Query("l0", ("t1a",), 2, kind="label")])
    assert main(["export", run, "--format", "labelstudio", "--out", str(env.run_dir / "ls2")]) == 0
    assert 'value="great"' in (env.run_dir / "ls2" / "label" / "label_config.xml").read_text(encoding="utf-8")
