"""A small Python client for the annotation app's REST API (httpx).

>>> client = AnnotationClient("http://127.0.0.1:8000", token)
>>> for q in client.queue().queries:
...     client.answer(q.id, "A")

Answers are idempotent on the server (one per query and annotator), so
:meth:`AnnotationClient.answer` retries a request that failed in transit; the
reply says whether this call stored the answer or found it already stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx


class AppError(RuntimeError):
    """The app refused a request; ``status`` is the HTTP status and the message its ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class QueueItem:
    generation_id: str
    domain: str
    prompt: Any = None
    completion: Any = None
    video: str | None = None
    image: str | None = None


@dataclass(frozen=True)
class PendingQuery:
    id: str
    kind: str
    round: int
    items: tuple[QueueItem, ...]


@dataclass(frozen=True)
class Queue:
    pending: int
    answered: int
    total: int
    paused: bool
    queries: tuple[PendingQuery, ...]


@dataclass(frozen=True)
class AnswerResult:
    query_id: str
    stored: bool
    duplicate: bool


class AnnotationClient:
    """Talks to ``rlhfkit serve`` with one token (sent as ``Authorization: Bearer``)."""

    def __init__(self, base_url: str, token: str, timeout_s: float = 30.0, retries: int = 3) -> None:
        self.retries = retries
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AnnotationClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _request(self, method: str, path: str, retry: bool = False, **kwargs: Any) -> httpx.Response:
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.1 * 2**attempt)
                continue
            if response.status_code == 503 and attempt < attempts - 1:
                time.sleep(0.1 * 2**attempt)
                continue
            if response.status_code >= 400:
                try:
                    detail = str(response.json().get("detail", response.text))
                except ValueError:
                    detail = response.text
                raise AppError(response.status_code, detail)
            return response
        raise AssertionError("unreachable")

    def me(self) -> dict[str, str]:
        data: dict[str, str] = self._request("GET", "/api/me").json()
        return data

    def settings(self) -> dict[str, Any]:
        """The run's instructions, rating scale and label choices, as the app offers them (``GET /api/settings``)."""
        data: dict[str, Any] = self._request("GET", "/api/settings").json()
        return data

    def queue(self, limit: int = 10) -> Queue:
        """The oldest queries this annotator has not answered, with counts."""
        d = self._request("GET", "/api/queue", params={"limit": limit}).json()
        return Queue(
            pending=d["pending"],
            answered=d["answered"],
            total=d["total"],
            paused=d["paused"],
            queries=tuple(
                PendingQuery(
                    id=q["id"],
                    kind=q["kind"],
                    round=q["round"],
                    items=tuple(
                        QueueItem(
                            generation_id=i["generation_id"],
                            domain=i["domain"],
                            prompt=i.get("prompt"),
                            completion=i.get("completion"),
                            video=i.get("video"),
                            image=i.get("image"),
                        )
                        for i in q["items"]
                    ),
                )
                for q in d["queries"]
            ),
        )

    def answer(self, query_id: str, answer: str, mu_a: float | None = None) -> AnswerResult:
        """Answer a comparison: "A", "B", "equal", "incomparable", or "graded" with ``mu_a`` = P(A better)."""
        body: dict[str, Any] = {"kind": "comparison", "query_id": query_id, "answer": answer}
        if mu_a is not None:
            body["mu_a"] = mu_a
        return self.send(body)

    def send(self, body: dict[str, Any]) -> AnswerResult:
        """Send any answer body (see ``/openapi.json``); the helpers below build the usual ones."""
        d = self._request("POST", "/api/answers", retry=True, json=body).json()
        return AnswerResult(query_id=d["query_id"], stored=d["stored"], duplicate=d["duplicate"])

    def rate(self, query_id: str, value: float) -> AnswerResult:
        return self.send({"kind": "rating", "query_id": query_id, "value": value})

    def label(self, query_id: str, label: str) -> AnswerResult:
        return self.send({"kind": "label", "query_id": query_id, "label": label})

    def rank(self, query_id: str, ranked: list[str]) -> AnswerResult:
        """``ranked``: the query's generation ids, best first."""
        return self.send({"kind": "ranking", "query_id": query_id, "ranked": ranked})

    def comment(self, query_id: str, utterance: str) -> AnswerResult:
        return self.send({"kind": "language", "query_id": query_id, "utterance": utterance})

    def correct(self, query_id: str, completion: str) -> AnswerResult:
        """An edited completion for a text correction query."""
        return self.send({"kind": "correction", "query_id": query_id, "completion": completion})

    def answers(self, annotator_id: str | None = None) -> list[dict[str, Any]]:
        """Stored answers: your own, or (admin) another annotator's."""
        params = {"annotator_id": annotator_id} if annotator_id else None
        data: list[dict[str, Any]] = self._request("GET", "/api/answers", params=params).json()
        return data

    def media(self, url: str) -> bytes:
        """The bytes of a media URL from a queue item (a rendered control segment)."""
        return self._request("GET", url).content

    # -- admin --------------------------------------------------------------------------

    def progress(self) -> dict[str, Any]:
        data: dict[str, Any] = self._request("GET", "/api/admin/progress").json()
        return data

    def rounds(self) -> dict[str, Any]:
        """Per round: queries, answers, true and learned return (``GET /api/admin/rounds``)."""
        data: dict[str, Any] = self._request("GET", "/api/admin/rounds").json()
        return data

    def agreement(self) -> dict[str, Any]:
        data: dict[str, Any] = self._request("GET", "/api/admin/agreement").json()
        return data

    def loop(self) -> dict[str, Any]:
        data: dict[str, Any] = self._request("GET", "/api/admin/loop").json()
        return data

    def pause(self) -> dict[str, Any]:
        data: dict[str, Any] = self._request("POST", "/api/admin/loop", json={"paused": True}).json()
        return data

    def resume(self) -> dict[str, Any]:
        data: dict[str, Any] = self._request("POST", "/api/admin/loop", json={"paused": False}).json()
        return data
