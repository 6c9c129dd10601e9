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
- both write the loop's round and phase to the store, which the admin page shows;
- while it waits, it tells the person running it how to let people in
  (``rlhfkit annotators add`` and ``rlhfkit serve`` with the run folder).

:class:`AnnotationSettings` is what people are asked and how they may answer:
the run's instructions, rating scale and label choices. The run's config is
their one source: the loop writes them to the store when it starts
(:meth:`~rlhfkit.feedback.store.FeedbackStore.write_annotation_settings`), and the
app reads them from there, so an app on another machine (``serve --db
postgresql://...``) shows what the run asks, without the run's Python config
classes. The record lives with the store (:mod:`rlhfkit.feedback.store.control`)
and is named here too for the callers of :func:`settings_or_fallback`.

The simulated annotator that answers through the HTTP API, for tests and demos
of the whole asynchronous path, is :class:`rlhfkit.app.bot.WebBot` (a client of the app).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from rlhfkit.feedback.store import AnnotationSettings, FeedbackStore, LoopStatus
from rlhfkit.feedback.win_rate import is_evaluation
from rlhfkit.feedback_records import Comparison
from rlhfkit.types import Generation, Query


def settings_or_fallback(
    store: FeedbackStore,
    rating_scale: tuple[float, float] | None = None,
    label_choices: tuple[str, ...] | None = None,
) -> tuple[AnnotationSettings, bool]:
    """The settings a run wrote to ``store`` and True; for a store no run has written, the given scale and
    choices (default: what a run with a default config writes) and False.

    The run's config is the one source of the scale and the choices: a scale or
    choices given for a store a run has written must agree with the run's
    (``ValueError`` naming both otherwise), so they can never be a second truth.
    """
    written = store.read_annotation_settings()
    if written is None:
        default = AnnotationSettings()
        return AnnotationSettings(
            rating_scale=rating_scale or default.rating_scale, label_choices=label_choices or default.label_choices
        ), False
    if rating_scale is not None and tuple(map(float, rating_scale)) != written.rating_scale:
        lo, hi = written.rating_scale
        raise ValueError(
            f"--rating-scale {rating_scale[0]:g},{rating_scale[1]:g}: the run's config sets {lo:g},{hi:g} "
            "(feedback.teacher.rating_scale); drop the flag"
        )
    if label_choices is not None and tuple(label_choices) != written.label_choices:
        raise ValueError(
            f"--labels {','.join(label_choices)}: the run's config sets {','.join(written.label_choices)} "
            "(feedback.teacher.label_choices); drop the flag"
        )
    return written, True


def how_to_let_people_in(run_dir: str | Path) -> str:
    """The commands that give a person a login token and start the app for this run folder."""
    d = shlex.quote(str(run_dir))
    return (
        "People answer in the web app. In another terminal:\n"
        f"  rlhfkit annotators add NAME --run {d}    # prints NAME's login token (--admin: may pause the loop)\n"
        f"  rlhfkit serve {d}                        # then open http://127.0.0.1:8000/ and paste the token"
    )


class WebHuman:
    """The people answering in the web app, as the loop sees them (see the module docstring).

    Args:
        store: the run's feedback store (the app serves the same one).
        min_answers: usable answers needed before a fit.
        poll_s: seconds between looks at the store while waiting or paused.
        sleep: how to wait (tests pass a fake).
        log: where to say what the loop is doing (None: say nothing).
        run_dir: the run folder, named in the commands that let people in
            (said once, the first time the loop waits for answers).
    """

    annotator_id = "web"

    def __init__(
        self,
        store: FeedbackStore,
        min_answers: int = 10,
        poll_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] | None = None,
        run_dir: str | Path | None = None,
    ) -> None:
        self.store = store
        self.min_answers = min_answers
        self.poll_s = poll_s
        self.sleep = sleep
        self.log = log
        self.run_dir = run_dir
        self._said = ""
        self._told_how = False

    def answer(self, query: Query, generations: Mapping[str, Generation]) -> Comparison | None:
        return None  # people answer in the app; their answers reach the loop through the store

    def usable_answers(self) -> int:
        """Stored answers of every kind that a fit can use (not incomparable, not "none of these", not an
        evaluation comparison)."""
        return sum(1 for f in self.store.feedback() if getattr(f, "usable", True) and not is_evaluation(f.query_id))

    def _status(self, round_: int, phase: str, answers: int | None = None, needed: int | None = None) -> None:
        self.store.set_loop_status(LoopStatus(round_, phase, answers=answers, needed=needed))
        if self.log is not None and phase != self._said:
            self.log(f"round {round_}: {phase}")
            self._said = phase

    def paused(self) -> bool:
        return self.store.paused()

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
            if self.log is not None and not self._told_how:
                self._told_how = True
                where = self.run_dir if self.run_dir is not None else "RUN_DIR"
                self.log(f"{n} of {self.min_answers} usable answers stored. {how_to_let_people_in(where)}")
            self.sleep(self.poll_s)


def normalise_store_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` URLs get the psycopg (v3) driver; others are kept."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_run_store(run_dir: str | Path, url: str = "") -> FeedbackStore:
    """The store of a run: ``url`` if given (shared with ``rlhfkit serve --db``), else ``RUN_DIR/feedback.sqlite``."""
    return FeedbackStore(normalise_store_url(url)) if url else FeedbackStore.in_dir(run_dir)
