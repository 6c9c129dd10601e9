"""The pages, their script and style, the API docs page, and the health check.

The pages need no token to load: each page's script signs in (or sends the
person to the sign-in page) through the API. They run only the app's own script
under a strict Content-Security-Policy (:mod:`rlhfkit.app.guard`).
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time.

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, HTMLResponse

from rlhfkit.app import schemas as s
from rlhfkit.app.deps import Store
from rlhfkit.app.docs import docs_page
from rlhfkit.app.replies import error

STATIC = Path(__file__).parent.parent / "static"

router = APIRouter()


def page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type="text/html", headers={"cache-control": "no-store"})


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return page("index.html")


@router.get("/annotate", include_in_schema=False)
def annotate_page() -> FileResponse:
    return page("annotate.html")


@router.get("/admin", include_in_schema=False)
def admin_page() -> FileResponse:
    return page("admin.html")


@router.get("/docs", include_in_schema=False)
def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(docs_page(request.app.openapi()), headers={"cache-control": "no-cache"})


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    types = {".js": "text/javascript", ".css": "text/css"}
    path = STATIC / name
    if path.suffix not in types or path.name != name or not path.is_file():
        return error(404, "no such file")
    return FileResponse(path, media_type=types[path.suffix], headers={"cache-control": "no-cache"})


@router.get("/healthz", response_model=s.HealthOut, tags=["app"])
def health(store: Store) -> s.HealthOut:
    """Whether the app and its store answer (503 with the reason when the store does not)."""
    store.ping()
    return s.HealthOut(ok=True)
