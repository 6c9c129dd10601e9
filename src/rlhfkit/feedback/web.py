"""People answering through the web app: the loop's side of ``human = "web"``.

The loop and the app talk only through the store (``shared/DESIGN.md``): the
loop stores each round's queries as pending and goes on; people answer them in
``rlhfkit serve`` at their own pace; every fit uses the answers that have
arrived by then, from every annotator, late answers to earlier rounds included.
Nothing lives in memory only, so either side can stop and restart.

:class:`WebHuman` is the loop's handle on that:

- :meth:`WebHuman.answer` never answers (a person answers later);
- :meth:`WebHuman.wait_for_answers` holds the loop before a fit until at least
  ``min_answers`` usable answers are stored (the reward cannot be fitted on
  none); after that the loop never waits for people again;
- :meth:`WebHuman.hold` is called between optimisation steps: while an admin
  has paused the loop (``POST /api/admin/loop``) it waits there;
- both write the loop's round and phase to the store, which the admin page shows.

:class:`WebBot` is a simulated annotator that answers through the HTTP API,
for tests and demos of the whole asynchronous path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from rlhfkit.feedback.edits import completion_text
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.types import Comparison, Correction, Generation, Label, Language, Query, Ranking, Rating, Text

if TYPE_CHECKING:
    from rlhfkit.app.client import AnnotationClient
    from rlhfkit.feedback.teacher import Human

PAUSED_KEY = "paused"
STATUS_KEY = "loop_status"


class WebHuman:
    """The people answering in the web app, as the loop sees them (see the module docstring).

    Args:
        store: the run's feedback store (the app serves the same one).
        min_answers: usable answers needed before a fit.
        poll_s: seconds between looks at the store while waiting or paused.
        sleep: how to wait (tests pass a fake).
    """

    annotator_id = "web"

    def __init__(
        self,
        store: FeedbackStore,
        min_answers: int = 10,
        poll_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.min_answers = min_answers
        self.poll_s = poll_s
        self.sleep = sleep
        self.log = log
        self._said = ""

    def answer(self, query: Query, generations: Mapping[str, Generation]) -> Comparison | None:
        return None  # people answer in the app; their answers reach the loop through the store

    def usable_answers(self) -> int:
        """Stored answers of every kind that a fit can use (not incomparable, not "none of these")."""
        return sum(1 for f in self.store.feedback() if getattr(f, "usable", True))

    def _status(self, round_: int, phase: str, **extra: float | int | str) -> None:
        self.store.set_control(STATUS_KEY, {"round": round_, "phase": phase, "updated_at": time.time(), **extra})
        if self.log is not None and phase != self._said:
            self.log(f"round {round_}: {phase}")
            self._said = phase

    def paused(self) -> bool:
        return bool(self.store.control(PAUSED_KEY, False))

    def hold(self, round_: int, phase: str = "optimising") -> None:
        """Wait here while an admin has paused the loop; then note ``phase``."""
        while self.paused():
            self._status(round_, "paused")
            self.sleep(self.poll_s)
        self._status(round_, phase)

    def wait_for_answers(self, round_: int) -> int:
        """Block until ``min_answers`` usable answers are stored (honouring a pause); returns how many there are."""
        while True:
            self.hold(round_, "waiting for answers")
            n = self.usable_answers()
            if n >= self.min_answers:
                self._status(round_, "fitting the reward", answers=n)
                return n
            self._status(round_, "waiting for answers", answers=n, needed=self.min_answers)
            self.sleep(self.poll_s)


class WebBot:
    """A simulated annotator that answers pending queries through the app's HTTP API.

    It reads its queue with ``client``, judges each query with ``human`` (which
    needs the generations' contents: the bot reads them from ``store``, as a
    simulated teacher is allowed to), and sends the answers over HTTP. Used by
    the tests of the asynchronous loop and for demos.

    It answers every kind the app takes: give ``human`` the app's rating scale
    and label choices (``serve --rating-scale/--labels``), or the app refuses its
    ratings and labels. A correction of a control segment cannot be sent (the
    app's form edits text); such queries are left pending.
    """

    def __init__(self, client: AnnotationClient, human: Human, store: FeedbackStore) -> None:
        self.client = client
        self.human = human
        self.store = store

    def answer_pending(self, limit: int = 100, max_answers: int | None = None) -> int:
        """Answer up to ``max_answers`` of the oldest pending queries; returns how many were stored."""
        queue = self.client.queue(limit=limit)
        stored = 0
        for q in queue.queries:
            if max_answers is not None and stored >= max_answers:
                break
            query = Query(q.id, tuple(i.generation_id for i in q.items), q.round, kind=q.kind)
            answer = self.human.answer(query, self.store.generations(query.generation_ids))
            if isinstance(answer, Comparison):
                mu_a = answer.mu[0] if answer.answer.value == "graded" and answer.mu is not None else None
                stored += self.client.answer(q.id, answer.answer.value, mu_a).stored
            elif isinstance(answer, Rating):
                stored += self.client.rate(q.id, answer.value).stored
            elif isinstance(answer, Label):
                stored += self.client.label(q.id, answer.label).stored
            elif isinstance(answer, Ranking):
                stored += self.client.rank(q.id, list(answer.ranked)).stored
            elif isinstance(answer, Language):
                stored += self.client.comment(q.id, answer.utterance).stored
            elif isinstance(answer, Correction) and isinstance(answer.corrected, Text):
                stored += self.client.correct(q.id, completion_text(answer.corrected)).stored
        return stored


def normalise_store_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` URLs get the psycopg (v3) driver; others are kept."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_run_store(run_dir: str | Path, url: str = "") -> FeedbackStore:
    """The store of a run: ``url`` if given (shared with ``rlhfkit serve --db``), else ``RUN_DIR/feedback.sqlite``."""
    return FeedbackStore(normalise_store_url(url)) if url else FeedbackStore.in_dir(run_dir)
