"""Render control segments before anyone opens them, in the background, a bounded distance ahead.

Rendering a segment takes a second or more (the env replays every step, then
ffmpeg encodes), so a video rendered when a person opens the query is a black
box they wait on. :class:`Prerenderer` keeps, for every person with a login,
the segments of their next ``ahead`` pending queries rendered, and looks again
every ``poll_s`` seconds, so the queries the loop posts while people work are
ready before anyone reaches them.

Bounded on purpose: the app often shares the machine with the loop, and a
backlog of thousands of queries rendered at once would take its CPU for
minutes. Only queries someone is about to see are rendered; the window moves
as people answer. Renders run one at a time (see :data:`rlhfkit.app.media._RENDER_LOCK`),
so a person who opens a segment that is not ready waits for at most the render
in progress and their own.
"""

from __future__ import annotations

import logging
import threading

from rlhfkit.app import failures
from rlhfkit.app.media import MediaCache, MediaError
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.types import Segment

log = logging.getLogger("rlhfkit.app")


class Prerenderer:
    """A daemon thread that renders the WebM of queued control segments (see the module docstring).

    Args:
        store: the feedback store the app serves.
        media: the app's media cache (renders land where the media route finds them).
        ahead: pending queries per person kept rendered (with no person yet: the oldest ``ahead`` queries).
        poll_s: seconds between looks at the store.
    """

    def __init__(self, store: FeedbackStore, media: MediaCache, ahead: int = 16, poll_s: float = 5.0) -> None:
        self.store = store
        self.media = media
        self.ahead = ahead
        self.poll_s = poll_s
        self._skip: set[str] = set()  # text generations, and segments that cannot be rendered
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rlhfkit-prerender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def queued(self) -> list[str]:
        """Generation ids of the queued queries' segments not rendered yet, oldest query first."""
        people = sorted({t.annotator_id for t in self.store.tokens() if t.revoked_at is None})
        windows: list[str | None] = [*people] or [None]  # with no person yet: the oldest queries
        seen: dict[str, float] = {}
        for who in windows:
            for q in self.store.queries(pending_for=who, limit=self.ahead):
                for gid in q.generation_ids:
                    seen.setdefault(gid, q.created_at)
        missing = [g for g in seen if g not in self._skip and self.media.cached(g, "webm") is None]
        return sorted(missing, key=lambda g: seen[g])

    def render_queued(self) -> int:
        """One pass: render what :meth:`queued` lists (stopping early when asked); returns how many were rendered."""
        ids = self.queued()
        gens = self.store.generations(ids) if ids else {}
        done = 0
        for gid in ids:
            if self._stop.is_set():
                break
            gen = gens.get(gid)
            if gen is None or not isinstance(gen.content, Segment):
                self._skip.add(gid)
                continue
            try:
                self.media.get(gid, gen.content, "webm")
            except MediaError as e:
                self._skip.add(gid)
                log.warning("cannot render generation %s ahead: %s", gid, e)
                continue
            done += 1
        return done

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.render_queued()
            except Exception as e:  # rendering ahead is a convenience: a failure must not stop the app
                log.warning("rendering ahead failed (retrying in %.0f s): %s", self.poll_s, failures.describe(e))
            self._stop.wait(self.poll_s)
