"""What a route handler may ask for: who is asking, and the app's parts, as FastAPI dependencies.

:func:`~rlhfkit.app.server.create_app` puts the parts on ``app.state`` when the
app starts (the store, the token verifier, the answer writer, the media cache,
the config and the run's settings for people); a handler names what it needs
(``store: Store``, ``who: Admin``) and FastAPI hands it over. A handler is thus a
plain module-level function: a test can call it with a store and a
:class:`~rlhfkit.app.auth.Principal` of its own, without HTTP. (The answer route
gets its parts once, when it is served, instead: see
:mod:`rlhfkit.app.routes.annotate`.)

Every dependency here is ``async``: it reads ``app.state`` (or a cached token
hash) on the event loop instead of first waiting for a thread-pool thread
(docs/benchmarks.md, "Annotation app under load", step 3); only a session
lookup goes to the thread pool, since it reads the store.

Who is asking (:func:`principal`):

- scripts send ``Authorization: Bearer TOKEN``, checked through the verifier's
  short cache;
- pages send the session cookie :data:`COOKIE` (a random session id, never the
  token), looked up on every request so that signing out or revoking the token
  ends it at once; a cookie-authenticated write must also carry
  ``X-Requested-With: rlhfkit`` (a cross-site form cannot send it) and, when the
  browser sends one, an ``Origin`` naming this server (:func:`check_origin`).
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time.

import urllib.parse
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from rlhfkit.app.auth import Principal, TokenVerifier, session_principal
from rlhfkit.app.config import AppConfig
from rlhfkit.app.media import MediaCache
from rlhfkit.feedback.store import AnnotationSettings, FeedbackStore

COOKIE = "rlhfkit_session"
"""The session cookie: a random session id (see :mod:`rlhfkit.app.auth`)."""


# -- the app's parts ---------------------------------------------------------------------


async def get_store(request: Request) -> FeedbackStore:
    """The feedback store the app serves."""
    store: FeedbackStore = request.app.state.store
    return store


async def get_verifier(request: Request) -> TokenVerifier:
    """The ``Bearer`` token checker (with its short cache)."""
    verifier: TokenVerifier = request.app.state.verifier
    return verifier


async def get_media(request: Request) -> MediaCache:
    """The cache of rendered control segments."""
    media: MediaCache = request.app.state.media
    return media


async def get_config(request: Request) -> AppConfig:
    """How the app was set up."""
    config: AppConfig = request.app.state.config
    return config


async def get_run_dir(request: Request) -> Path:
    """The run folder: the config's ``run_dir``, else the media folder's parent."""
    config: AppConfig = request.app.state.config
    return config.run_dir if config.run_dir is not None else config.media_dir.parent


async def get_settings(request: Request) -> AnnotationSettings:
    """What people are asked and how they may answer: the run's, read when the app started, or the fallback."""
    settings: AnnotationSettings = request.app.state.settings
    return settings


async def get_settings_from_run(request: Request) -> bool:
    """Whether :func:`get_settings` are the run's (True) or the app's fallback for a store no run has written."""
    return bool(request.app.state.settings_from_run)


Store = Annotated[FeedbackStore, Depends(get_store)]
Verifier = Annotated[TokenVerifier, Depends(get_verifier)]
Media = Annotated[MediaCache, Depends(get_media)]
Config = Annotated[AppConfig, Depends(get_config)]
RunDir = Annotated[Path, Depends(get_run_dir)]
Settings = Annotated[AnnotationSettings, Depends(get_settings)]
SettingsFromRun = Annotated[bool, Depends(get_settings_from_run)]


# -- who is asking ---------------------------------------------------------------------


async def principal(request: Request) -> Principal:
    """The token's owner, from ``Authorization: Bearer`` or the session cookie (401 otherwise)."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise HTTPException(401, "use the header 'Authorization: Bearer TOKEN'", {"WWW-Authenticate": "Bearer"})
        verifier: TokenVerifier = request.app.state.verifier
        who = verifier.verify(value.strip())
        if who is None:
            raise HTTPException(401, "unknown, wrong or revoked token", {"WWW-Authenticate": "Bearer"})
        return who
    session_id = request.cookies.get(COOKIE)
    if not session_id:
        raise HTTPException(401, "log in: no token given", {"WWW-Authenticate": "Bearer"})
    # read on every request, never cached: signing out or revoking the token ends the session at once
    who = await run_in_threadpool(session_principal, request.app.state.store, session_id)
    if who is None:
        raise HTTPException(401, "signed out or expired session: log in again", {"WWW-Authenticate": "Bearer"})
    if request.method not in ("GET", "HEAD"):
        if request.headers.get("x-requested-with") != "rlhfkit":
            raise HTTPException(403, "cookie-authenticated writes need the header 'X-Requested-With: rlhfkit'")
        check_origin(request)
    return who


def check_origin(request: Request) -> None:
    """403 unless the request's ``Origin`` (when the browser sent one) names this server.

    Browsers send ``Origin`` with every cross-origin write; an origin that is not
    this server's host (``null`` included) is another site's page. Only the host
    and port are compared: behind an HTTPS proxy the app itself hears plain HTTP.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = (request.headers.get("host") or "").lower()
    if not host or urllib.parse.urlsplit(origin).netloc.lower() != host:
        raise HTTPException(403, "cross-origin request refused: its Origin is not this server")


async def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """The token's owner if an admin (403 otherwise)."""
    if not who.is_admin:
        raise HTTPException(403, "this needs an admin token")
    return who


Who = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]
