"""What admins see and do: progress per person, agreement, rounds, the run's report, and the loop's pause.

Every route here needs an admin token (403 for an annotator's). Pausing writes
to the store (:meth:`~rlhfkit.feedback.store.FeedbackStore.set_paused`); the loop
reads it before its next optimisation step and holds until an admin resumes it.
The report is served under its own Content-Security-Policy, which allows its
inline style and no script at all (:data:`rlhfkit.app.guard.REPORT_CSP`).
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time.

import logging
import re
from enum import Enum

from fastapi import FastAPI, Response
from fastapi.responses import FileResponse

from rlhfkit.app import schemas as s
from rlhfkit.app.deps import Admin, RunDir, Store
from rlhfkit.app.guard import REPORT_CSP
from rlhfkit.app.replies import error, errors
from rlhfkit.app.runview import people_progress, rounds_view
from rlhfkit.feedback.agreement import agreement
from rlhfkit.feedback.store import FeedbackStore

log = logging.getLogger("rlhfkit.app")


def progress(who: Admin, store: Store) -> s.ProgressOut:
    """Answers per annotator (admins who have answered nothing are left out)."""
    people = people_progress(store)
    return s.ProgressOut(queries=store.count_queries(), answers=store.count_feedback(), annotators=people)


def rounds(who: Admin, store: Store, run_dir: RunDir) -> s.RoundsOut:
    """Per round: queries posted, answers to them, true and learned return (when metrics.jsonl is readable)."""
    return rounds_view(store, run_dir, "/report/")


def report(who: Admin, run_dir: RunDir) -> Response:
    """The run's report.html (admins only: it shows the config, which may hold the store's URL)."""
    path = run_dir / "report.html"
    if not path.is_file():
        return error(404, "no report yet: the loop writes report.html after each round")
    return FileResponse(path, media_type="text/html", headers={"cache-control": "no-store", **REPORT_CSP})


def report_plot(who: Admin, run_dir: RunDir, name: str) -> Response:
    path = run_dir / "plots" / name
    if not re.fullmatch(r"[a-z0-9_]{1,64}\.png", name) or not path.is_file():
        return error(404, "no such plot")
    return FileResponse(path, media_type="image/png", headers={"cache-control": "no-cache"})


def agreement_view(who: Admin, store: Store) -> s.AgreementOut:
    """Pairwise agreement and Krippendorff's alpha over queries two or more people answered."""
    a = agreement(store.comparisons())
    return s.AgreementOut(
        n_units=a.n_units,
        n_pairs=a.n_pairs,
        pairwise=a.pairwise,
        alpha_nominal=a.alpha_nominal,
        alpha_interval=a.alpha_interval,
        by_pair=[s.PairAgreement(annotators=k.split("|"), agree=v[0], pairs=v[1]) for k, v in a.by_pair.items()],
    )


def loop_state(store: FeedbackStore) -> s.LoopOut:
    """Whether the loop is paused, and what it last said it is doing."""
    status = store.loop_status()
    return s.LoopOut(paused=store.paused(), status={} if status is None else status.to_json())


def get_loop(who: Admin, store: Store) -> s.LoopOut:
    return loop_state(store)


def set_loop(body: s.LoopIn, who: Admin, store: Store) -> s.LoopOut:
    """Pause or resume the loop: it holds before its next optimisation step until resumed."""
    store.set_paused(body.paused)
    log.info("loop %s by %s", "paused" if body.paused else "resumed", who.annotator_id)
    return loop_state(store)


def add_routes(app: FastAPI) -> None:
    """Serve the admin routes on ``app`` (each needs an admin token)."""
    tags: list[str | Enum] = ["admin"]
    refused = errors(401, 403)
    app.add_api_route("/api/admin/progress", progress, response_model=s.ProgressOut, responses=refused, tags=tags)
    app.add_api_route("/api/admin/rounds", rounds, response_model=s.RoundsOut, responses=refused, tags=tags)
    app.add_api_route("/report/", report, include_in_schema=False, tags=tags)
    app.add_api_route("/report/plots/{name}", report_plot, include_in_schema=False, tags=tags)
    app.add_api_route(
        "/api/admin/agreement", agreement_view, response_model=s.AgreementOut, responses=refused, tags=tags
    )
    app.add_api_route("/api/admin/loop", get_loop, response_model=s.LoopOut, responses=refused, tags=tags)
    app.add_api_route(
        "/api/admin/loop",
        set_loop,
        methods=["POST"],
        response_model=s.LoopOut,
        responses=errors(401, 403, 413, 422),
        tags=tags,
    )
