"""Shared helpers of the web-app tests: a store with pending text and control queries, tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from rlhfkit.app.server import AppConfig
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.types import Generation, Query, Segment, Text

HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'


def pendulum_segment(seed: int, T: int = 12) -> Segment:
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-np.pi, np.pi) + np.linspace(0, 1.5, T)
    obs = np.stack([np.cos(theta), np.sin(theta), rng.normal(size=T)], axis=1)
    return Segment(obs, rng.uniform(-2, 2, size=(T, 1)), rng.normal(size=T), info={"env_id": "Pendulum-v1"})


def fill(store: FeedbackStore, n_text: int = 4, n_control: int = 1) -> list[Query]:
    """``n_text`` text comparisons (one with hostile HTML) then ``n_control`` control comparisons."""
    gens: list[Generation] = []
    queries: list[Query] = []
    for i in range(n_text):
        completion_a = HOSTILE if i == 0 else f"answer {i}a"
        a = Generation(f"t{i}a", 1, "round-0", Text(f"prompt {i} <b>bold?</b>", completion_a))
        b = Generation(f"t{i}b", 1, "round-0", Text(f"prompt {i} <b>bold?</b>", f"answer {i}b & more"))
        gens += [a, b]
        queries.append(Query(f"q{i}", (a.id, b.id), 1, created_at=1000.0 + i))
    for j in range(n_control):
        a = Generation(f"c{j}a", 1, "round-0", pendulum_segment(2 * j))
        b = Generation(f"c{j}b", 1, "round-0", pendulum_segment(2 * j + 1))
        gens += [a, b]
        queries.append(Query(f"k{j}", (a.id, b.id), 1, created_at=2000.0 + j))
    store.add_generations(gens)
    store.add_queries(queries)
    return queries


@dataclass
class Env:
    store: FeedbackStore
    run_dir: Path
    alice: str
    bob: str
    admin: str
    queries: list[Query]

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def app_config(run_dir: Path, store: FeedbackStore, max_body_bytes: int = 4096) -> AppConfig:
    return AppConfig(store_url=store.url, media_dir=run_dir / "media", prerender=False, max_body_bytes=max_body_bytes)


def post_answer(client: TestClient, token: str, query_id: str, answer: str, mu_a: float | None = None) -> object:
    """POST one comparison answer with ``token``; returns the response."""
    body: dict[str, object] = {"query_id": query_id, "answer": answer}
    if mu_a is not None:
        body["mu_a"] = mu_a
    return client.post("/api/answers", json=body, headers={"Authorization": f"Bearer {token}"})
