"""Control segments of queued queries are rendered ahead, in the background, a bounded distance ahead."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from apphelpers import Env, app_config, pendulum_segment
from fastapi.testclient import TestClient

from rlhfkit.app.auth import add_annotator
from rlhfkit.app.media import MediaCache
from rlhfkit.app.prerender import Prerenderer
from rlhfkit.app.server import create_app
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback_records import Comparison
from rlhfkit.types import Generation, Query


def _control_queries(store: FeedbackStore, n: int, start: float = 5000.0, prefix: str = "p") -> list[Query]:
    gens, queries = [], []
    for i in range(n):
        a, b = (
            Generation(f"{prefix}{i}{s}", 2, "round-1", pendulum_segment(10 + 2 * i + j)) for j, s in enumerate("ab")
        )
        gens += [a, b]
        queries.append(Query(f"{prefix}q{i}", (a.id, b.id), 2, created_at=start + i))
    store.add_generations(gens)
    store.add_queries(queries)
    return queries


def _rendered(media_dir: Path) -> set[str]:
    return {p.stem for p in media_dir.glob("*.webm")}


def test_each_persons_next_queries_are_rendered_and_no_further(tmp_path: Path) -> None:
    store = FeedbackStore.in_dir(tmp_path)
    queries = _control_queries(store, 5)
    media = MediaCache(tmp_path / "media")
    pre = Prerenderer(store, media, ahead=2)
    # nobody has a login yet: the oldest two queries
    assert pre.render_queued() == 4 and _rendered(media.root) == {"p0a", "p0b", "p1a", "p1b"}
    assert pre.render_queued() == 0  # cached: nothing rendered twice
    add_annotator(store, "alice")
    add_annotator(store, "bob")
    for q in queries[:2]:
        store.record(Comparison.make(q.id, "A", "alice"))
    # alice's window moved on to queries 2 and 3; bob's is still at 0 and 1 (rendered already)
    assert pre.render_queued() == 4
    assert _rendered(media.root) == {f"p{i}{s}" for i in range(4) for s in "ab"}
    assert not (media.root / "p4a.webm").exists()  # nobody is within two queries of the last one
    store.close()


def test_text_generations_are_looked_at_once(env: Env) -> None:
    pre = Prerenderer(env.store, MediaCache(env.run_dir / "media"), ahead=10)
    assert pre.render_queued() == 2  # the control pair k0; the text pairs need nothing
    assert pre.queued() == []  # and are not fetched from the store again


def test_the_app_renders_queries_posted_while_it_runs(env: Env) -> None:
    """The app keeps rendering ahead as the loop posts queries, not only what was queued when it started."""
    config = dataclasses.replace(app_config(env.run_dir, env.store), prerender=True, prerender_poll_s=0.05)
    media_dir = env.run_dir / "media"
    with TestClient(create_app(config, store=env.store)):
        deadline = time.time() + 60
        while _rendered(media_dir) != {"c0a", "c0b"} and time.time() < deadline:
            time.sleep(0.05)
        assert _rendered(media_dir) == {"c0a", "c0b"}
        _control_queries(env.store, 1, prefix="late")  # the loop posts round 2 while people work
        while len(_rendered(media_dir)) < 4 and time.time() < deadline:
            time.sleep(0.05)
        assert _rendered(media_dir) == {"c0a", "c0b", "late0a", "late0b"}
