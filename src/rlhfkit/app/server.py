"""The annotation web app: a FastAPI server over the feedback store.

``rlhfkit serve RUN_DIR`` runs :func:`create_app` on uvicorn. The app and the
loop never import each other: the loop writes pending queries to the store and
reads answers from it, the app serves the pending queries and writes answers
(see ``shared/DESIGN.md``). Either can restart without losing an answer.

Security, in one place:

- every ``/api`` route but login and health needs a token, as
  ``Authorization: Bearer TOKEN`` (scripts), or a session: ``POST /api/session``
  checks a token and sets an HttpOnly, SameSite=Strict cookie holding a random
  session id, never the token (:mod:`rlhfkit.app.auth`). Signing out
  (``DELETE /api/session``) and revoking or rotating the token end the session
  at the next request. Cookie-authenticated writes must also carry
  ``X-Requested-With``, which a cross-site form cannot send, and an ``Origin``,
  when the browser sends one, naming this server (:mod:`rlhfkit.app.deps`);
- an annotator sees only their queue and their own answers; ``/api/admin/*``
  and other people's answers are for admins (403 otherwise);
- request bodies are bounded (:attr:`AppConfig.max_body_bytes`, 413, :mod:`rlhfkit.app.guard`) and
  validated field by field (422 naming the field); nothing is stored then;
- pages run only the app's own script under a strict Content-Security-Policy
  and show model output with ``textContent``: HTML or script in a generation
  is displayed as text, never parsed; the run's report (admins only) has its
  own policy, which allows its inline style and no script at all;
- tokens never reach a log: they travel only in headers and the login body,
  never in a URL; error messages never echo a token, a session id or free text
  sent in a body (utterances, completions). They may name the short values a
  request gave, each held to its schema first: query and generation ids
  (``[A-Za-z0-9_.:-]``), annotator names, labels from the app's choices, ratings;
- a database that is down, locked, full or read-only gets 503 with the reason
  on every route (:mod:`rlhfkit.app.failures`), and the app recovers by itself
  when the database is back;
- media: only generations that a stored query shows are rendered, at most
  :attr:`AppConfig.max_waiting_renders` renders run or wait at once (503
  otherwise), and a symlink in the media folder is never served.

Answers go through :class:`~rlhfkit.app.writer.AnswerWriter` (group commit):
a request is answered only after its answer is committed.

Where each part lives: the routes, one module per role, in :mod:`rlhfkit.app.routes`
(each handler a module-level function); what a handler may ask for (who is
asking, the store, the writer, ...) in :mod:`rlhfkit.app.deps`; the security
headers and the body limit in :mod:`rlhfkit.app.guard`; how refusals look in
:mod:`rlhfkit.app.replies`. This module assembles them.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from rlhfkit.app import failures, replies
from rlhfkit.app.auth import TokenVerifier
from rlhfkit.app.config import AppConfig
from rlhfkit.app.guard import GuardMiddleware
from rlhfkit.app.media import MediaCache
from rlhfkit.app.prerender import Prerenderer
from rlhfkit.app.routes import admin, annotate, media, pages, session
from rlhfkit.app.runview import run_settings
from rlhfkit.app.writer import AnswerWriter
from rlhfkit.feedback.store import AnnotationSettings, FeedbackStore
from rlhfkit.feedback.web import normalise_store_url

__all__ = ["AppConfig", "create_app", "run_in_thread", "serve", "store_url_for"]

log = logging.getLogger("rlhfkit.app")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the answer writer (and the pre-renderer) with the app; stop them when it stops."""
    # Everything imported so far lives as long as the process: keep it out of the
    # garbage collector's full passes, which otherwise walk every module's objects
    # and stalled requests for 250 ms at a time under load.
    gc.freeze()
    app.state.writer.start()
    if app.state.config.prerender:
        app.state.prerenderer.start()
    try:
        yield
    finally:
        app.state.prerenderer.stop()
        app.state.writer.stop()


def create_app(config: AppConfig, store: FeedbackStore | None = None) -> FastAPI:
    """The annotation app over the store at ``config.store_url`` (or the given ``store``).

    Its parts go on ``app.state``, where the routes' dependencies find them
    (:mod:`rlhfkit.app.deps`). The run's settings for people are read once, here:
    the answer route's body type is built from them (a store whose settings are
    malformed is a ``ValueError`` naming the field, and no app).
    """
    store = store if store is not None else FeedbackStore(config.store_url)
    fallback = AnnotationSettings(
        rating_scale=config.rating_scale, label_choices=config.label_choices, label_ordinal=config.label_ordinal
    )
    settings, from_run = run_settings(store, fallback)
    if not from_run:
        log.warning("no run has written its settings to this store: using the fallback scale and labels")

    app = FastAPI(
        title="rlhfkit annotation app",
        version="1",
        description="Pending queries for people to answer, and their answers, over the rlhfkit feedback store.",
        lifespan=lifespan,
        responses=replies.UNAVAILABLE,
        docs_url=None,  # FastAPI's pages load Swagger UI and ReDoc from a CDN: see rlhfkit.app.routes.pages
        redoc_url=None,
    )
    failures.install(app)
    replies.install(app)
    app.state.config = config
    app.state.store = store
    app.state.verifier = TokenVerifier(store, config.token_ttl_s)
    app.state.writer = AnswerWriter(store)
    app.state.media = MediaCache(config.media_dir)
    app.state.prerenderer = Prerenderer(store, app.state.media, config.prerender_ahead, config.prerender_poll_s)
    app.state.settings = settings
    app.state.settings_from_run = from_run

    pages.add_routes(app)
    session.add_routes(app)
    annotate.add_routes(app, settings)
    media.add_routes(app)
    admin.add_routes(app)
    app.add_middleware(GuardMiddleware, max_body=config.max_body_bytes)
    return app


def store_url_for(run_dir: str | Path, db: str | None = None) -> str:
    """The store a run folder uses: ``db`` if given, else its config's ``feedback.store_url``, else its SQLite file.

    ``postgresql://`` URLs get the psycopg (v3) driver. A folder that holds
    neither a config nor a store is refused, so a typo does not create an empty store.
    """
    import tomllib

    d = Path(run_dir)
    url = db
    if url is None and (d / "config.toml").is_file():
        feedback = tomllib.loads((d / "config.toml").read_text(encoding="utf-8")).get("feedback", {})
        url = feedback.get("store_url") or None if isinstance(feedback, dict) else None
    if url is None:
        if not (d / "config.toml").is_file() and not (d / "feedback.sqlite").is_file():
            raise FileNotFoundError(
                f"{d} is not a run folder (no config.toml or feedback.sqlite); pass the run folder or --db URL"
            )
        return f"sqlite:///{d / 'feedback.sqlite'}"
    return normalise_store_url(url)


def serve(
    config: AppConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    store: FeedbackStore | None = None,
) -> None:
    """Run the app (over ``store``, or the store at ``config.store_url``) on uvicorn until interrupted."""
    import uvicorn

    app = create_app(config, store=store)
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=False, server_header=False)


def run_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> tuple[Any, threading.Thread, int]:
    """Start ``app`` on uvicorn in a daemon thread (tests, the bench); returns (server, thread, port).

    Stop it with ``server.should_exit = True; thread.join()``.
    """
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    chosen = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on", server_header=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        if not thread.is_alive():
            raise RuntimeError("the app server did not start")
        time.sleep(0.01)
    return server, thread, chosen
