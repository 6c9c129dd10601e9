"""The annotation web app: a FastAPI server over the feedback store.

``rlhfkit serve RUN_DIR`` runs :func:`create_app` on uvicorn. The app and the
loop never import each other: the loop writes pending queries to the store and
reads answers from it, the app serves the pending queries and writes answers
(see ``shared/DESIGN.md``). Either can restart without losing an answer.

Security, in one place:

- every ``/api`` route but login and health needs a token, as
  ``Authorization: Bearer TOKEN`` (scripts), or a session: ``POST /api/session``
  checks a token and sets an HttpOnly, SameSite=Strict cookie holding a random
  session id, never the token (:mod:`rlhfkit.app.auth`). Signing out
  (``DELETE /api/session``) and revoking or rotating the token end the session
  at the next request. Cookie-authenticated writes must also carry
  ``X-Requested-With``, which a cross-site form cannot send, and an ``Origin``,
  when the browser sends one, naming this server;
- an annotator sees only their queue and their own answers; ``/api/admin/*``
  and other people's answers are for admins (403 otherwise);
- request bodies are bounded (:attr:`AppConfig.max_body_bytes`, 413) and
  validated field by field (422 naming the field); nothing is stored then;
- pages run only the app's own script under a strict Content-Security-Policy
  and show model output with ``textContent``: HTML or script in a generation
  is displayed as text, never parsed; the run's report (admins only) has its
  own policy, which allows its inline style and no script at all;
- tokens never reach a log: they travel only in headers and the login body,
  never in a URL; error messages never echo a token, a session id or free text
  sent in a body (utterances, completions). They may name the short values a
  request gave, each held to its schema first: query and generation ids
  (``[A-Za-z0-9_.:-]``), annotator names, labels from the app's choices, ratings;
- a database that is down, locked, full or read-only gets 503 with the reason
  on every route (:mod:`rlhfkit.app.failures`), and the app recovers by itself
  when the database is back;
- media: only generations that a stored query shows are rendered, at most
  :attr:`AppConfig.max_waiting_renders` renders run or wait at once (503
  otherwise), and a symlink in the media folder is never served.

Answers go through :class:`~rlhfkit.app.writer.AnswerWriter` (group commit):
a request is answered only after its answer is committed.
"""

# No `from __future__ import annotations` here: the answer route's body type is built per
# app (its rating scale and label choices go into the schema) and must be a real object.

import dataclasses
import gc
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from rlhfkit.app import failures
from rlhfkit.app import schemas as s
from rlhfkit.app.auth import Principal, TokenVerifier, end_session, open_session, session_principal
from rlhfkit.app.docs import docs_page
from rlhfkit.app.guard import REPORT_CSP, GuardMiddleware
from rlhfkit.app.media import FORMATS, MediaBusyError, MediaCache, MediaError
from rlhfkit.app.prerender import Prerenderer
from rlhfkit.app.runview import people_progress, rounds_view, run_settings, settings_out
from rlhfkit.app.writer import AnswerWriter
from rlhfkit.feedback.agreement import agreement
from rlhfkit.feedback.store import AnnotationSettings, FeedbackStore, StoreError
from rlhfkit.feedback.web import normalise_store_url
from rlhfkit.types import (
    Comparison,
    Correction,
    Feedback,
    Generation,
    InvalidFeedbackError,
    Label,
    Language,
    Ranking,
    Rating,
    Segment,
    Text,
)

log = logging.getLogger("rlhfkit.app")

STATIC = Path(__file__).parent / "static"
COOKIE = "rlhfkit_session"
"""The session cookie: a random session id (see :mod:`rlhfkit.app.auth`)."""
OLD_COOKIE = "rlhfkit_token"
"""Where versions before sessions kept the token itself; signing in clears it."""


@dataclass(frozen=True)
class AppConfig:
    """How the app is set up (``rlhfkit serve`` fills it from its arguments)."""

    store_url: str
    """SQLAlchemy URL of the feedback store."""
    media_dir: Path
    """Where rendered control segments are cached (``RUN_DIR/media``)."""
    max_body_bytes: int = 64 * 1024
    """Largest request body accepted; larger ones get 413 before they are read in full."""
    token_ttl_s: float = 5.0
    """How long a checked ``Bearer`` token is remembered (a revoked token stops working within this)."""
    session_ttl_s: float = 12 * 3600.0
    """How long a sign-in on the pages lasts; signing out or revoking the token ends it at once."""
    max_waiting_renders: int = 4
    """Renders of control segments that may run or wait at once; a request beyond that gets 503."""
    secure_cookies: bool = False
    """Mark the login cookie Secure (set it when the app is served over HTTPS)."""
    prerender: bool = True
    """Render the control segments of queued queries in the background, ahead of the people who will see them."""
    prerender_ahead: int = 16
    """Pending queries per person kept rendered ahead (see :mod:`rlhfkit.app.prerender`)."""
    prerender_poll_s: float = 5.0
    """Seconds between the pre-renderer's looks at the store for new queries."""
    run_dir: Path | None = None
    """The run folder, for the admin page's ``metrics.jsonl`` and ``report.html``; None = ``media_dir``'s parent."""
    # The run writes its instructions, rating scale and label choices to the store
    # (feedback/store/control.py: AnnotationSettings); the app uses those. The three fields below
    # are only a fallback for a store no run has written, defaulting to what a run with
    # a default config writes.
    rating_scale: tuple[float, float] = AnnotationSettings.rating_scale
    """Fallback scale of rating queries, (low, high), for a store no run has written settings to."""
    label_choices: tuple[str, ...] = AnnotationSettings.label_choices
    """Fallback choices of label queries ("none of these" is always offered too), for a store no run has written."""
    label_ordinal: bool = True
    """Fallback: whether the label choices are ordered worst to best."""


# -- the app ------------------------------------------------------------------------

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": s.ErrorOut, "description": "no token, or a wrong or revoked one"},
    403: {"model": s.ErrorOut, "description": "the token's owner may not do this"},
    413: {"model": s.ErrorOut, "description": "request body too large"},
    422: {"model": s.ErrorOut, "description": "a malformed request; `detail` names the field"},
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": s.ErrorOut, "description": "the store cannot be used now (down, full, read-only); try again"}
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: ERRORS[c] for c in codes}


def _error(status: int, detail: str) -> JSONResponse:
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


# -- who is asking --------------------------------------------------------------------


async def principal(request: Request) -> Principal:
    """The token's owner, from ``Authorization: Bearer`` or the session cookie (401 otherwise)."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise HTTPException(401, "use the header 'Authorization: Bearer TOKEN'", {"WWW-Authenticate": "Bearer"})
        verifier: TokenVerifier = request.app.state.verifier
        who = verifier.verify(value.strip())
        if who is None:
            raise HTTPException(401, "unknown, wrong or revoked token", {"WWW-Authenticate": "Bearer"})
        return who
    session_id = request.cookies.get(COOKIE)
    if not session_id:
        raise HTTPException(401, "log in: no token given", {"WWW-Authenticate": "Bearer"})
    # read on every request, never cached: signing out or revoking the token ends the session at once
    who = await run_in_threadpool(session_principal, request.app.state.store, session_id)
    if who is None:
        raise HTTPException(401, "signed out or expired session: log in again", {"WWW-Authenticate": "Bearer"})
    if request.method not in ("GET", "HEAD"):
        if request.headers.get("x-requested-with") != "rlhfkit":
            raise HTTPException(403, "cookie-authenticated writes need the header 'X-Requested-With: rlhfkit'")
        _check_origin(request)
    return who


def _check_origin(request: Request) -> None:
    """403 unless the request's ``Origin`` (when the browser sent one) names this server.

    Browsers send ``Origin`` with every cross-origin write; an origin that is not
    this server's host (``null`` included) is another site's page. Only the host
    and port are compared: behind an HTTPS proxy the app itself hears plain HTTP.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = (request.headers.get("host") or "").lower()
    if not host or urllib.parse.urlsplit(origin).netloc.lower() != host:
        raise HTTPException(403, "cross-origin request refused: its Origin is not this server")


async def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """The token's owner if an admin (403 otherwise)."""
    if not who.is_admin:
        raise HTTPException(403, "this needs an admin token")
    return who


Who = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]


def create_app(config: AppConfig, store: FeedbackStore | None = None) -> FastAPI:
    """The annotation app over the store at ``config.store_url`` (or the given ``store``)."""
    store = store if store is not None else FeedbackStore(config.store_url)
    verifier = TokenVerifier(store, config.token_ttl_s)
    writer = AnswerWriter(store)
    media = MediaCache(config.media_dir)
    prerenderer = Prerenderer(store, media, config.prerender_ahead, config.prerender_poll_s)
    run_dir = config.run_dir if config.run_dir is not None else config.media_dir.parent
    # The run's settings for people, read once, when the app starts: the answer schema below is built from them.
    fallback = AnnotationSettings(
        rating_scale=config.rating_scale, label_choices=config.label_choices, label_ordinal=config.label_ordinal
    )
    settings, from_run = run_settings(store, fallback)
    if not from_run:
        log.warning("no run has written its settings to this store: using the fallback scale and labels")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything imported so far lives as long as the process: keep it out of the
        # garbage collector's full passes, which otherwise walk every module's objects
        # and stalled requests for 250 ms at a time under load.
        gc.freeze()
        writer.start()
        if config.prerender:
            prerenderer.start()
        try:
            yield
        finally:
            prerenderer.stop()
            writer.stop()

    app = FastAPI(
        title="rlhfkit annotation app",
        version="1",
        description="Pending queries for people to answer, and their answers, over the rlhfkit feedback store.",
        lifespan=lifespan,
        responses=UNAVAILABLE,
        docs_url=None,  # FastAPI's pages load Swagger UI and ReDoc from a CDN: see the /docs route below
        redoc_url=None,
    )
    failures.install(app)
    app.state.store = store
    app.state.verifier = verifier
    app.state.writer = writer
    app.state.media = media

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": _loc(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        # The input is never echoed back: it may hold a token (the login body).
        return JSONResponse({"detail": _describe(errors), "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body" (not UTF-8, a broken form)
            return JSONResponse({"detail": f"malformed request body: {exc.detail}"}, status_code=422)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # name every method of this path, not only the matched route's
            methods: set[str] = set()
            for route in app.routes:
                if isinstance(route, APIRoute) and route.path_regex.match(request.url.path):
                    methods |= route.methods or set()
            headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=headers)

    # -- pages --------------------------------------------------------------------------

    def page(name: str) -> FileResponse:
        return FileResponse(STATIC / name, media_type="text/html", headers={"cache-control": "no-store"})

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return page("index.html")

    @app.get("/annotate", include_in_schema=False)
    def annotate_page() -> FileResponse:
        return page("annotate.html")

    @app.get("/admin", include_in_schema=False)
    def admin_page() -> FileResponse:
        return page("admin.html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()), headers={"cache-control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        types = {".js": "text/javascript", ".css": "text/css"}
        path = STATIC / name
        if path.suffix not in types or path.name != name or not path.is_file():
            return _error(404, "no such file")
        return FileResponse(path, media_type=types[path.suffix], headers={"cache-control": "no-cache"})

    # -- session ------------------------------------------------------------------------

    @app.get("/healthz", response_model=s.HealthOut, tags=["app"])
    def health() -> s.HealthOut:
        """Whether the app and its store answer (503 with the reason when the store does not)."""
        store.ping()
        return s.HealthOut(ok=True)

    @app.post("/api/session", response_model=s.MeOut, responses=_errors(401, 403, 413, 422), tags=["session"])
    def login(body: s.LoginIn, request: Request, response: Response) -> s.MeOut:
        """Check a token and open a session: an HttpOnly cookie with a random session id for the pages."""
        _check_origin(request)
        who = verifier.verify(body.token)
        if who is None:
            raise HTTPException(401, "unknown, wrong or revoked token", {"WWW-Authenticate": "Bearer"})
        session_id = open_session(store, body.token, config.session_ttl_s)
        response.set_cookie(
            COOKIE,
            session_id,
            httponly=True,
            samesite="strict",
            secure=config.secure_cookies,
            path="/",
            max_age=int(config.session_ttl_s),
        )
        if OLD_COOKIE in request.cookies:
            response.delete_cookie(OLD_COOKIE, path="/")
        return s.MeOut(annotator_id=who.annotator_id, role=who.role)  # type: ignore[arg-type]  # role is checked by the store

    @app.delete("/api/session", status_code=204, tags=["session"])
    def logout(request: Request, response: Response) -> Response:
        """Sign out: the session ends at once (its cookie no longer works, even if kept)."""
        end_session(store, request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE, path="/")
        response.status_code = 204
        return response

    @app.get("/api/me", response_model=s.MeOut, responses=_errors(401), tags=["session"])
    def me(who: Who) -> s.MeOut:
        return s.MeOut(annotator_id=who.annotator_id, role=who.role)  # type: ignore[arg-type]

    # -- the annotator's queue and answers --------------------------------------------

    @app.get("/api/queue", response_model=s.QueueOut, responses=_errors(401, 403, 422), tags=["annotate"])
    def queue(who: Who, limit: Annotated[int, Query(ge=1, le=100)] = 10) -> s.QueueOut:
        """The oldest queries this annotator has not answered, with what to show for each."""
        pending = store.queries(pending_for=who.annotator_id)
        first = pending[:limit]
        gens = store.generations([g for q in first for g in q.generation_ids])
        total = store.count_queries()
        return s.QueueOut(
            annotator_id=who.annotator_id,
            rating_scale=list(settings.rating_scale),
            label_choices=list(settings.label_choices),
            pending=len(pending),
            answered=total - len(pending),  # each answer is to one stored query, at most one per annotator
            total=total,
            paused=store.paused(),
            queries=[
                s.QueryOut(id=q.id, kind=q.kind, round=q.round, items=[_item(gens[g]) for g in q.generation_ids])
                for q in first
                if all(g in gens for g in q.generation_ids)
            ],
        )

    @app.get("/api/settings", response_model=s.SettingsOut, responses=_errors(401), tags=["annotate"])
    def settings_view(who: Who) -> s.SettingsOut:
        """What people are asked (the run's instructions) and how they may answer (its scale and label choices)."""
        return settings_out(settings, from_run)

    AnswerBody = s.answer_model(settings.rating_scale, settings.label_choices)

    @app.post(
        "/api/answers",
        response_model=s.AnswerOut,
        status_code=201,
        responses={
            200: {"model": s.AnswerOut, "description": "the same answer was already stored; nothing changed"},
            404: {"model": s.ErrorOut, "description": "no such query"},
            409: {
                "model": s.ErrorOut,
                "description": "a different answer to this query is already stored, or the query asks for another kind",
            },
            503: {"model": s.ErrorOut, "description": "the store could not be written"},
            **_errors(401, 403, 413, 422),
        },
        tags=["annotate"],
    )
    async def answer(body: AnswerBody, who: Who, response: Response) -> s.AnswerOut:  # type: ignore[valid-type]  # built above
        """Store one answer. Sending the same answer again stores nothing and says so (200, duplicate)."""
        data: Any = body
        try:
            record = await _record_for(data, who.annotator_id)
        except InvalidFeedbackError as e:
            raise HTTPException(422, str(e)) from None
        except ValueError as e:  # a form this query cannot take (a control correction)
            raise HTTPException(409, str(e)) from None
        except StoreError as e:
            raise HTTPException(404, str(e)) from None
        try:
            stored = await writer.submit(record)
        except StoreError as e:
            message = str(e)
            # the query exists but asks for something else: a conflict with stored state, not a malformed body
            raise HTTPException(404 if "unknown query" in message else 409, message) from None
        # a database failure (down, full, read-only) goes on to rlhfkit.app.failures: 503 with the reason
        if stored:
            return s.AnswerOut(query_id=data.query_id, stored=True, duplicate=False)
        previous = await run_in_threadpool(store.answer_of, data.query_id, who.annotator_id)
        if previous is not None and not _same_answer(previous, record):
            raise HTTPException(409, f"you already answered query {data.query_id!r}; answers are final")
        response.status_code = 200
        return s.AnswerOut(query_id=data.query_id, stored=False, duplicate=True)

    async def _record_for(body: Any, annotator_id: str) -> Feedback:
        """The feedback record a request body stands for (ValueError if it cannot be one)."""
        if isinstance(body, s.ComparisonChoiceIn | s.ComparisonGradedIn):
            mu_a = body.mu_a if isinstance(body, s.ComparisonGradedIn) else None
            return Comparison.make(body.query_id, body.answer, annotator_id, mu_a=mu_a)
        if isinstance(body, s.RatingIn):
            return Rating.make(body.query_id, body.value, annotator_id, scale=settings.rating_scale)
        if isinstance(body, s.LabelIn):
            return Label.make(body.query_id, body.label, annotator_id, settings.label_choices, settings.label_ordinal)
        if isinstance(body, s.RankingIn):
            return Ranking.make(body.query_id, body.ranked, annotator_id)
        if isinstance(body, s.LanguageIn):
            return Language.make(body.query_id, body.utterance, annotator_id)
        original = await run_in_threadpool(_corrected_text, store, body.query_id)
        return Correction.make(body.query_id, Text(original.prompt, body.completion, info=original.info), annotator_id)

    @app.get("/api/answers", response_model=list[s.StoredAnswer], responses=_errors(401, 403, 422), tags=["annotate"])
    def answers(
        who: Who,
        annotator_id: Annotated[str | None, Query(max_length=128, description="default: your own")] = None,
    ) -> list[s.StoredAnswer]:
        """Stored answers of one annotator: your own, or anyone's with an admin token."""
        target = annotator_id or who.annotator_id
        if target != who.annotator_id and not who.is_admin:
            raise HTTPException(403, "annotators may read only their own answers")
        return [_stored(f) for f in store.feedback(annotator_id=target)]

    # -- media --------------------------------------------------------------------------

    @app.get(
        "/api/media/{fmt}/{generation_id}",
        responses={
            200: {"content": {"video/webm": {}, "image/gif": {}}, "description": "the rendered segment"},
            404: {"model": s.ErrorOut, "description": "no control generation with this id that a query shows"},
            **_errors(401, 422),
        },
        tags=["annotate"],
    )
    def media_file(
        who: Who,
        fmt: Literal["webm", "gif"],
        generation_id: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
    ) -> Response:
        """A control segment as a short WebM video or animated GIF (rendered on first request, then cached).

        Only generations that a stored query shows are rendered; when
        ``max_waiting_renders`` renders are already running or waiting, 503.
        """
        gen = store.generations([generation_id]).get(generation_id)
        if gen is None or not isinstance(gen.content, Segment):
            return _error(404, "no control generation with this id")
        path = media.cached(generation_id, fmt)
        if path is None:
            if not any(generation_id in q.generation_ids for q in store.queries()):
                return _error(404, "no query shows this generation")
            try:
                path = media.get(generation_id, gen.content, fmt, queue_limit=config.max_waiting_renders)
            except MediaBusyError:
                return failures.unavailable("busy rendering other videos; try again in a moment")
            except MediaError as e:
                return _error(404, str(e))
            except OSError as e:  # the media folder is full or read-only
                log.warning("rendering %s.%s failed: %s", generation_id, fmt, e.strerror or type(e).__name__)
                return failures.unavailable(f"the video could not be written: {e.strerror or 'disk error'}")
        return FileResponse(path, media_type=FORMATS[fmt], headers={"cache-control": "private, max-age=86400"})

    # -- admin --------------------------------------------------------------------------

    @app.get("/api/admin/progress", response_model=s.ProgressOut, responses=_errors(401, 403), tags=["admin"])
    def progress(who: Admin) -> s.ProgressOut:
        """Answers per annotator (admins who have answered nothing are left out)."""
        people = people_progress(store)
        return s.ProgressOut(queries=store.count_queries(), answers=store.count_feedback(), annotators=people)

    @app.get("/api/admin/rounds", response_model=s.RoundsOut, responses=_errors(401, 403), tags=["admin"])
    def rounds(who: Admin) -> s.RoundsOut:
        """Per round: queries posted, answers to them, true and learned return (when metrics.jsonl is readable)."""
        return rounds_view(store, run_dir, "/report/")

    @app.get("/report/", include_in_schema=False)
    def report(who: Admin) -> Response:
        """The run's report.html (admins only: it shows the config, which may hold the store's URL)."""
        path = run_dir / "report.html"
        if not path.is_file():
            return _error(404, "no report yet: the loop writes report.html after each round")
        return FileResponse(path, media_type="text/html", headers={"cache-control": "no-store", **REPORT_CSP})

    @app.get("/report/plots/{name}", include_in_schema=False)
    def report_plot(who: Admin, name: str) -> Response:
        path = run_dir / "plots" / name
        if not re.fullmatch(r"[a-z0-9_]{1,64}\.png", name) or not path.is_file():
            return _error(404, "no such plot")
        return FileResponse(path, media_type="image/png", headers={"cache-control": "no-cache"})

    @app.get("/api/admin/agreement", response_model=s.AgreementOut, responses=_errors(401, 403), tags=["admin"])
    def agreement_view(who: Admin) -> s.AgreementOut:
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

    def loop_state() -> s.LoopOut:
        status = store.loop_status()
        return s.LoopOut(paused=store.paused(), status={} if status is None else status.to_json())

    @app.get("/api/admin/loop", response_model=s.LoopOut, responses=_errors(401, 403), tags=["admin"])
    def get_loop(who: Admin) -> s.LoopOut:
        return loop_state()

    @app.post("/api/admin/loop", response_model=s.LoopOut, responses=_errors(401, 403, 413, 422), tags=["admin"])
    def set_loop(body: s.LoopIn, who: Admin) -> s.LoopOut:
        """Pause or resume the loop: it holds before its next optimisation step until resumed."""
        store.set_paused(body.paused)
        log.info("loop %s by %s", "paused" if body.paused else "resumed", who.annotator_id)
        return loop_state()

    app.add_middleware(GuardMiddleware, max_body=config.max_body_bytes)
    return app


def _corrected_text(store: FeedbackStore, query_id: str) -> Text:
    """The text a correction query shows (ValueError for a control segment or an unknown query)."""
    query = next((q for q in store.queries() if q.id == query_id), None)
    if query is None:
        raise StoreError(f"answer to unknown query {query_id!r}")
    gen = store.generations([query.generation_ids[0]])[query.generation_ids[0]]
    if not isinstance(gen.content, Text):
        raise ValueError("a control segment is corrected with edited states, which this form cannot send")
    return gen.content


def _same_answer(a: Feedback, b: Feedback) -> bool:
    """Whether two answers say the same thing (their time aside)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Correction) and isinstance(b, Correction):
        return _json(a.corrected) == _json(b.corrected)
    return bool(dataclasses.replace(a, created_at=0.0) == dataclasses.replace(b, created_at=0.0))


def _json(content: Any) -> Any:
    return content.to_json() if isinstance(content, Text) else None


def _stored(f: Feedback) -> s.StoredAnswer:
    mu_a = f.mu[0] if isinstance(f, Comparison) and f.mu is not None else None
    answer = f.answer.value if isinstance(f, Comparison) else f.kind
    payload: dict[str, Any] | None = None
    if isinstance(f, Rating):
        payload = {"value": f.value, "scale": list(f.scale)}
    elif isinstance(f, Label):
        payload = {"label": f.label, "choices": list(f.choices)}
    elif isinstance(f, Ranking):
        payload = {"ranked": list(f.ranked)}
    elif isinstance(f, Language):
        payload = {"utterance": f.utterance}
    elif isinstance(f, Correction) and isinstance(f.corrected, Text):
        payload = {"completion": f.corrected.completion}
    return s.StoredAnswer(
        query_id=f.query_id,
        annotator_id=f.annotator_id,
        kind=f.kind,
        answer=answer,
        mu_a=mu_a,
        payload=payload,
        created_at=f.created_at,
    )


def _item(g: Generation) -> s.ItemOut:
    c = g.content
    if isinstance(c, Segment):
        return s.ItemOut(
            generation_id=g.id,
            domain="control",
            video=f"/api/media/webm/{g.id}",
            image=f"/api/media/gif/{g.id}",
            steps=len(c),
        )

    def plain(v: Any) -> str | list[s.Message]:
        return v if isinstance(v, str) else [s.Message(role=m["role"], content=m["content"]) for m in v]

    return s.ItemOut(generation_id=g.id, domain="text", prompt=plain(c.prompt), completion=plain(c.completion))


def store_url_for(run_dir: str | Path, db: str | None = None) -> str:
    """The store a run folder uses: ``db`` if given, else its config's ``feedback.store_url``, else its SQLite file.

    ``postgresql://`` URLs get the psycopg (v3) driver. A folder that holds
    neither a config nor a store is refused, so a typo does not create an empty store.
    """
    import tomllib

    d = Path(run_dir)
    url = db
    if url is None and (d / "config.toml").is_file():
        feedback = tomllib.loads((d / "config.toml").read_text(encoding="utf-8")).get("feedback", {})
        url = feedback.get("store_url") or None if isinstance(feedback, dict) else None
    if url is None:
        if not (d / "config.toml").is_file() and not (d / "feedback.sqlite").is_file():
            raise FileNotFoundError(
                f"{d} is not a run folder (no config.toml or feedback.sqlite); pass the run folder or --db URL"
            )
        return f"sqlite:///{d / 'feedback.sqlite'}"
    return normalise_store_url(url)


def serve(
    config: AppConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    store: FeedbackStore | None = None,
) -> None:
    """Run the app (over ``store``, or the store at ``config.store_url``) on uvicorn until interrupted."""
    import uvicorn

    app = create_app(config, store=store)
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=False, server_header=False)


def run_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> tuple[Any, threading.Thread, int]:
    """Start ``app`` on uvicorn in a daemon thread (tests, the bench); returns (server, thread, port).

    Stop it with ``server.should_exit = True; thread.join()``.
    """
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    chosen = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on", server_header=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        if not thread.is_alive():
            raise RuntimeError("the app server did not start")
        time.sleep(0.01)
    return server, thread, chosen
