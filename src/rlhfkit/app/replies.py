"""How the app answers what it refuses: one sentence in ``detail``, the same shape on every route.

- :data:`ERRORS` and :func:`errors` document a route's refusals in the OpenAPI
  schema (the body is :class:`~rlhfkit.app.schemas.ErrorOut`);
  :data:`UNAVAILABLE` is every route's 503 (:mod:`rlhfkit.app.failures`);
- :func:`error` is a refusal a handler returns itself (404 for a missing file);
- :func:`install` turns FastAPI's own refusals into that shape: a malformed
  request is 422 naming each field, never echoing the input (it may hold a
  token); a body FastAPI could not parse at all (not UTF-8, a broken form) is
  422 too; a 405 names every method of the path in ``Allow``.
"""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException

from rlhfkit.app import schemas as s

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": s.ErrorOut, "description": "no token, or a wrong or revoked one"},
    403: {"model": s.ErrorOut, "description": "the token's owner may not do this"},
    413: {"model": s.ErrorOut, "description": "request body too large"},
    422: {"model": s.ErrorOut, "description": "a malformed request; `detail` names the field"},
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": s.ErrorOut, "description": "the store cannot be used now (down, full, read-only); try again"}
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented refusals with these status codes, for a route's ``responses``."""
    return {c: ERRORS[c] for c in codes}


def error(status: int, detail: str) -> JSONResponse:
    """A refusal with ``status`` and ``detail``."""
    return JSONResponse({"detail": detail}, status_code=status)


def _loc(loc: Any) -> list[str | int]:
    return [p if isinstance(p, int) else str(p) for p in loc]


def _describe(errors: list[Any]) -> str:
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body",)) or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": _loc(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    # The input is never echoed back: it may hold a token (the login body).
    return JSONResponse({"detail": _describe(errors), "errors": errors}, status_code=422)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400:  # FastAPI's "error parsing the body" (not UTF-8, a broken form)
        return JSONResponse({"detail": f"malformed request body: {exc.detail}"}, status_code=422)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # name every method of this path, not only the matched route's
        methods: set[str] = set()
        # every route, those of an included router too (FastAPI >= 0.137 keeps them nested); none has a prefix
        for context in iter_route_contexts(request.app.routes):
            route = context.original_route
            if isinstance(route, APIRoute) and route.path_regex.match(request.url.path):
                methods |= route.methods or set()
        headers["Allow"] = ", ".join(sorted(methods))
    return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=headers)


def install(app: FastAPI) -> None:
    """Answer malformed requests and FastAPI's HTTP errors in the app's shape (see the module docstring)."""
    app.exception_handler(RequestValidationError)(_validation)
    app.exception_handler(StarletteHTTPException)(_http)
