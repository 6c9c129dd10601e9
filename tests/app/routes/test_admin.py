"""What admins see and do (rlhfkit.app.routes.admin): progress, agreement, the loop's pause."""

from __future__ import annotations

import pytest
from apphelpers import Env, post_answer
from fastapi.testclient import TestClient


def test_progress_agreement_and_pause(client: TestClient, env: Env) -> None:
    for token, answers in [(env.alice, ["A", "B", "A", "A"]), (env.bob, ["A", "B", "B", "A"])]:
        for i, a in enumerate(answers):
            assert post_answer(client, token, f"q{i}", a).status_code == 201  # type: ignore[attr-defined]
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


def test_the_admin_handlers_run_alone_without_http(env: Env) -> None:
    """Each handler is a module-level function: a test hands it the store and an admin itself."""
    from rlhfkit.app import schemas as s
    from rlhfkit.app.auth import Principal
    from rlhfkit.app.routes import admin
    from rlhfkit.feedback.store import LoopStatus
    from rlhfkit.feedback_records import Comparison

    boss = Principal("boss", "admin")
    env.store.record(Comparison.make("q0", "A", "alice"))
    progress = admin.progress(who=boss, store=env.store)
    assert (progress.queries, progress.answers) == (5, 1)
    assert [(a.annotator_id, a.answered) for a in progress.annotators] == [("alice", 1), ("bob", 0)]
    assert admin.set_loop(s.LoopIn(paused=True), who=boss, store=env.store) == s.LoopOut(paused=True, status={})
    assert env.store.paused() is True
    env.store.set_loop_status(LoopStatus(2, "waiting for answers", updated_at=5.0, answers=3, needed=6))
    assert admin.get_loop(who=boss, store=env.store) == s.LoopOut(
        paused=True, status={"round": 2, "phase": "waiting for answers", "updated_at": 5.0, "answers": 3, "needed": 6}
    )
