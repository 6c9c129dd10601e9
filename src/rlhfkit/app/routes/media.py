"""Control segments as short videos: rendered on first request, then served from the run's media cache.

Only generations that a stored query shows are rendered; at most
:attr:`~rlhfkit.app.config.AppConfig.max_waiting_renders` renders run or wait at
once (503 beyond that), and a symlink in the media folder is never served
(:mod:`rlhfkit.app.media`).
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time.

import logging
from typing import Annotated, Literal

from fastapi import FastAPI, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from rlhfkit.app import failures
from rlhfkit.app import schemas as s
from rlhfkit.app.deps import Config, Media, Store, Who
from rlhfkit.app.media import FORMATS, MediaBusyError, MediaError
from rlhfkit.app.replies import error, errors
from rlhfkit.types import Segment

log = logging.getLogger("rlhfkit.app")


def media_file(
    who: Who,
    store: Store,
    media: Media,
    config: Config,
    fmt: Literal["webm", "gif"],
    generation_id: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
) -> Response:
    """A control segment as a short WebM video or animated GIF (rendered on first request, then cached).

    Only generations that a stored query shows are rendered; when
    ``max_waiting_renders`` renders are already running or waiting, 503.
    """
    gen = store.generations([generation_id]).get(generation_id)
    if gen is None or not isinstance(gen.content, Segment):
        return error(404, "no control generation with this id")
    path = media.cached(generation_id, fmt)
    if path is None:
        if not any(generation_id in q.generation_ids for q in store.queries()):
            return error(404, "no query shows this generation")
        try:
            path = media.get(generation_id, gen.content, fmt, queue_limit=config.max_waiting_renders)
        except MediaBusyError:
            return failures.unavailable("busy rendering other videos; try again in a moment")
        except MediaError as e:
            return error(404, str(e))
        except OSError as e:  # the media folder is full or read-only
            log.warning("rendering %s.%s failed: %s", generation_id, fmt, e.strerror or type(e).__name__)
            return failures.unavailable(f"the video could not be written: {e.strerror or 'disk error'}")
    return FileResponse(path, media_type=FORMATS[fmt], headers={"cache-control": "private, max-age=86400"})


def add_routes(app: FastAPI) -> None:
    """Serve the segment videos on ``app``."""
    app.add_api_route(
        "/api/media/{fmt}/{generation_id}",
        media_file,
        responses={
            200: {"content": {"video/webm": {}, "image/gif": {}}, "description": "the rendered segment"},
            404: {"model": s.ErrorOut, "description": "no control generation with this id that a query shows"},
            **errors(401, 422),
        },
        tags=["annotate"],
    )
