"""A plain ASGI guard in front of the app: security headers on every response, and the body limit."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
REPORT_CSP = {
    "content-security-policy": (
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
}
"""The run report's policy: its own inline style and plots, no script at all."""
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class GuardMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response and refuses bodies over ``max_body`` bytes (413).

    A declared ``Content-Length`` over the limit is refused before reading (the
    HTTP server stops a body at its declared length); a body sent without one
    is read here as it arrives and refused once it passes the limit. Plain ASGI
    (no per-request task), so it costs microseconds.
    """

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                own = {name.lower() for name, _ in headers}  # the report sets its own, stricter about scripts
                message["headers"] = headers + [h for h in SECURITY_HEADERS if h[0] not in own]
            await send(message)

        try:
            await self._guarded(scope, receive, send_with_headers)
        except Exception:
            # A bug (store failures are answered 503 by the app's handlers): answer it
            # with the headers, then let the server log the traceback.
            if not started:
                await _send_json(send_with_headers, 500, "internal error; the server's log says more")
            raise

    async def _guarded(self, scope: Scope, receive: Receive, send_with_headers: Send) -> None:
        declared: int | None = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
        if declared is not None:
            if declared < 0 or declared > self.max_body:
                await self._too_large(send_with_headers)
                return
            await self.app(scope, receive, send_with_headers)  # the server holds the body to its declared length
            return
        # No Content-Length (a chunked body, or none): read it here, up to the limit, then replay it.
        chunks: list[bytes] = []
        size = 0
        more = scope["method"] not in ("GET", "HEAD", "OPTIONS", "DELETE")
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._too_large(send_with_headers)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_headers)

    async def _too_large(self, send: Send) -> None:
        await _send_json(send, 413, f"request body too large: the limit is {self.max_body} bytes")


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
