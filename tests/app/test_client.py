"""The Python client of the app (rlhfkit.app.client) speaks every kind."""

from __future__ import annotations

import pytest
from apphelpers import Env, app_config


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
