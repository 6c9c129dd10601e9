"""The pages, their script and style, the API docs page, and the health check.

The pages need no token to load: each page's script signs in (or sends the
person to the sign-in page) through the API. They run only the app's own script
under a strict Content-Security-Policy (:mod:`rlhfkit.app.guard`).
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time.

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, HTMLResponse

from rlhfkit.app import schemas as s
from rlhfkit.app.deps import Store
from rlhfkit.app.docs import docs_page
from rlhfkit.app.replies import error

STATIC = Path(__file__).parent.parent / "static"


def page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type="text/html", headers={"cache-control": "no-store"})


def index() -> FileResponse:
    return page("index.html")


def annotate_page() -> FileResponse:
    return page("annotate.html")


def admin_page() -> FileResponse:
    return page("admin.html")


def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(docs_page(request.app.openapi()), headers={"cache-control": "no-cache"})


def static(name: str) -> Response:
    types = {".js": "text/javascript", ".css": "text/css"}
    path = STATIC / name
    if path.suffix not in types or path.name != name or not path.is_file():
        return error(404, "no such file")
    return FileResponse(path, media_type=types[path.suffix], headers={"cache-control": "no-cache"})


def health(store: Store) -> s.HealthOut:
    """Whether the app and its store answer (503 with the reason when the store does not)."""
    store.ping()
    return s.HealthOut(ok=True)


def add_routes(app: FastAPI) -> None:
    """Serve the pages, their files, the docs page and the health check on ``app``."""
    app.add_api_route("/", index, include_in_schema=False)
    app.add_api_route("/annotate", annotate_page, include_in_schema=False)
    app.add_api_route("/admin", admin_page, include_in_schema=False)
    app.add_api_route("/docs", docs, include_in_schema=False)
    app.add_api_route("/static/{name}", static, include_in_schema=False)
    app.add_api_route("/healthz", health, response_model=s.HealthOut, tags=["app"])
