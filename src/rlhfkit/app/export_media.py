"""The videos of ``rlhfkit export``: the web app's renderer and cache, as the callback the export takes.

:mod:`rlhfkit.feedback.formats` writes Label Studio and Argilla files but may not
import the app, so the command line hands it :func:`segment_renderer`: each
control segment is rendered as the web app renders it (:mod:`rlhfkit.app.media`),
into the same cache, ``RUN_DIR/media``, so a segment ``rlhfkit serve`` showed is
not rendered again, and the other way round.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from rlhfkit.app.media import MediaCache, MediaError
from rlhfkit.feedback.formats import InteropError, MediaRenderer
from rlhfkit.types import Generation


def run_env_id(run_dir: str | Path) -> str | None:
    """The gymnasium env id of a control run's task (its ``config.toml``), or None (a text run, no readable config)."""
    from rlhfkit.tasks import UnknownTaskError, get_task

    path = Path(run_dir) / "config.toml"
    try:
        task = tomllib.loads(path.read_text(encoding="utf-8")).get("task", "pendulum")
        if not isinstance(task, str) or task.startswith("text:"):
            return None
        return get_task(task).env_id
    except (OSError, tomllib.TOMLDecodeError, UnknownTaskError):
        return None


def segment_renderer(run_dir: str | Path) -> MediaRenderer:
    """WebM bytes of a control generation, rendered once into ``RUN_DIR/media``.

    The env comes from the segment's ``info["env_id"]`` (every segment the loop
    samples has it); a segment without one is drawn in the env of the run's task.
    A segment that cannot be rendered is an :class:`InteropError` naming it.
    """
    cache = MediaCache(Path(run_dir) / "media")
    fallback: list[str | None] = []

    def render(g: Generation) -> bytes:
        segment = g.segment
        if not segment.info.get("env_id"):
            if not fallback:
                fallback.append(run_env_id(run_dir))
            if fallback[0]:
                segment = dataclasses.replace(segment, info={**segment.info, "env_id": fallback[0]})
        try:
            return cache.get(g.id, segment, "webm").read_bytes()
        except (MediaError, OSError) as e:
            raise InteropError(f"generation {g.id}: cannot render its video: {e}") from None

    return render
