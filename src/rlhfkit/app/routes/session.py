"""Signing in and out on the pages, and who a token or session belongs to.

``POST /api/session`` checks a token and sets an HttpOnly, SameSite=Strict
cookie holding a random session id, never the token (:mod:`rlhfkit.app.auth`);
``DELETE /api/session`` ends the session at once. Scripts skip both and send the
token with every request (``Authorization: Bearer``).
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time.

from enum import Enum

from fastapi import FastAPI, HTTPException, Request, Response

from rlhfkit.app import schemas as s
from rlhfkit.app.auth import end_session, open_session
from rlhfkit.app.deps import COOKIE, Config, Store, Verifier, Who, check_origin
from rlhfkit.app.replies import errors

OLD_COOKIE = "rlhfkit_token"
"""Where versions before sessions kept the token itself; signing in clears it."""


def login(
    body: s.LoginIn, request: Request, response: Response, store: Store, verifier: Verifier, config: Config
) -> s.MeOut:
    """Check a token and open a session: an HttpOnly cookie with a random session id for the pages."""
    check_origin(request)
    who = verifier.verify(body.token)
    if who is None:
        raise HTTPException(401, "unknown, wrong or revoked token", {"WWW-Authenticate": "Bearer"})
    session_id = open_session(store, body.token, config.session_ttl_s)
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=config.secure_cookies,
        path="/",
        max_age=int(config.session_ttl_s),
    )
    if OLD_COOKIE in request.cookies:
        response.delete_cookie(OLD_COOKIE, path="/")
    return s.MeOut(annotator_id=who.annotator_id, role=who.role)  # type: ignore[arg-type]  # role is checked by the store


def logout(request: Request, response: Response, store: Store) -> Response:
    """Sign out: the session ends at once (its cookie no longer works, even if kept)."""
    end_session(store, request.cookies.get(COOKIE))
    response.delete_cookie(COOKIE, path="/")
    response.status_code = 204
    return response


def me(who: Who) -> s.MeOut:
    return s.MeOut(annotator_id=who.annotator_id, role=who.role)  # type: ignore[arg-type]


def add_routes(app: FastAPI) -> None:
    """Serve signing in, signing out and "who am I" on ``app``."""
    tags: list[str | Enum] = ["session"]
    app.add_api_route(
        "/api/session", login, methods=["POST"], response_model=s.MeOut, responses=errors(401, 403, 413, 422), tags=tags
    )
    app.add_api_route("/api/session", logout, methods=["DELETE"], status_code=204, tags=tags)
    app.add_api_route("/api/me", me, response_model=s.MeOut, responses=errors(401), tags=tags)
