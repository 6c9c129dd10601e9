"""What the app answers when the store fails: 503 with a plain reason, never a bare 500.

A database that is down, locked, full or read-only raises SQLAlchemy errors from
whichever route touched it (the token check included, once its cache entry
expires). :func:`install` turns each into ``503 Service Unavailable`` with a JSON
``detail`` that says why ("the database or disk is full") and ``Retry-After``;
the guard middleware adds the security headers as to every response. The log
gets one line per failed request with the same reason, never SQLAlchemy's own
message, which holds the SQL statement and its parameters (answers, token hashes).

Nothing is kept from the failure: the next request opens a fresh connection
(SQLAlchemy drops connections that broke), so the app recovers by itself when
the database is back.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from rlhfkit.feedback.store import StoreUnavailableError
from rlhfkit.feedback.store.database import database_problem

log = logging.getLogger("rlhfkit.app")

RETRY_AFTER_S = 5
"""What ``Retry-After`` asks clients to wait, in seconds."""


def unavailable(detail: str) -> JSONResponse:
    """A 503 reply with ``detail`` and ``Retry-After``."""
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def describe(error: BaseException) -> str:
    """A failure in a few words for a log line: the database's reason, or the exception's type and message."""
    if isinstance(error, sa.exc.SQLAlchemyError):
        return database_problem(error)
    return f"{type(error).__name__}: {error}"


def install(app: FastAPI) -> None:
    """Answer database failures on every route with 503 (see the module docstring)."""

    async def store_failed(request: Request, exc: Exception) -> JSONResponse:
        problem = str(exc) if isinstance(exc, StoreUnavailableError) else database_problem(exc)
        log.warning("%s %s: store unavailable: %s", request.method, request.url.path, problem)
        return unavailable(
            f"the feedback store cannot be used now: {problem}. Nothing was changed; try again in a moment."
        )

    app.add_exception_handler(sa.exc.SQLAlchemyError, store_failed)
    app.add_exception_handler(StoreUnavailableError, store_failed)
