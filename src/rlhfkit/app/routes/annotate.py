"""A person's side of the app: their queue, what they are asked, and their answers.

An annotator sees only their own queue and their own answers; an admin may read
anyone's answers. Answers go through the :class:`~rlhfkit.app.writer.AnswerWriter`
(group commit): a request is answered only after its answer is committed.

The body of ``POST /api/answers`` names this run's rating scale and label
choices (the OpenAPI schema documents exactly what is accepted, and anything
else is 422 before it reaches the store). The run's settings are read when the
app starts, after this module is imported, so :func:`add_routes` serves the
module-level :func:`answer` with its body typed for the run (:func:`bind`);
called alone, :func:`answer` takes any :data:`~rlhfkit.app.schemas.AnswerIn`.

The answer route carries the load (docs/benchmarks.md, "Annotation app under
load"), so it gets the app's store, answer writer and settings once, when it is
served, instead of as dependencies: FastAPI solves each dependency on every
request, about 80 Python calls each in FastAPI 0.165 (the store and the writer
as dependencies took an answer from 675 to 833 calls in the app, measured with
cProfile). The other handlers take them as dependencies (:mod:`rlhfkit.app.deps`).
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time.

import dataclasses
import functools
import inspect
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, HTTPException, Query, Response
from starlette.concurrency import run_in_threadpool

from rlhfkit.app import schemas as s
from rlhfkit.app.deps import Settings, SettingsFromRun, Store, Who
from rlhfkit.app.replies import errors
from rlhfkit.app.runview import settings_out
from rlhfkit.app.writer import AnswerWriter
from rlhfkit.feedback.store import AnnotationSettings, FeedbackStore, StoreError
from rlhfkit.feedback_records import (
    Comparison,
    Correction,
    Feedback,
    InvalidFeedbackError,
    Label,
    Language,
    Ranking,
    Rating,
)
from rlhfkit.types import Generation, Segment, Text


def queue(who: Who, store: Store, settings: Settings, limit: Annotated[int, Query(ge=1, le=100)] = 10) -> s.QueueOut:
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
            s.QueryOut(id=q.id, kind=q.kind, round=q.round, items=[item(gens[g]) for g in q.generation_ids])
            for q in first
            if all(g in gens for g in q.generation_ids)
        ],
    )


def settings_view(who: Who, settings: Settings, from_run: SettingsFromRun) -> s.SettingsOut:
    """What people are asked (the run's instructions) and how they may answer (its scale and label choices)."""
    return settings_out(settings, from_run)


async def answer(
    body: s.AnswerIn,
    who: Who,
    response: Response,
    store: FeedbackStore,
    writer: AnswerWriter,
    settings: AnnotationSettings,
) -> s.AnswerOut:
    """Store one answer. Sending the same answer again stores nothing and says so (200, duplicate)."""
    try:
        record = await record_for(body, who.annotator_id, store, settings)
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
        return s.AnswerOut(query_id=body.query_id, stored=True, duplicate=False)
    previous = await run_in_threadpool(store.answer_of, body.query_id, who.annotator_id)
    if previous is not None and not same_answer(previous, record):
        raise HTTPException(409, f"you already answered query {body.query_id!r}; answers are final")
    response.status_code = 200
    return s.AnswerOut(query_id=body.query_id, stored=False, duplicate=True)


def answers(
    who: Who,
    store: Store,
    annotator_id: Annotated[str | None, Query(max_length=128, description="default: your own")] = None,
) -> list[s.StoredAnswer]:
    """Stored answers of one annotator: your own, or anyone's with an admin token."""
    target = annotator_id or who.annotator_id
    if target != who.annotator_id and not who.is_admin:
        raise HTTPException(403, "annotators may read only their own answers")
    return [stored_answer(f) for f in store.feedback(annotator_id=target)]


Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Any]])


def bind(endpoint: Endpoint, body_type: Any, **values: Any) -> Endpoint:
    """``endpoint`` as one app serves it: its ``body`` typed ``body_type``, and the parameters in ``values`` given.

    FastAPI reads a route's parameters, and so its schema, from the endpoint's
    ``inspect.signature``, which honours ``__signature__``: the returned function
    shows FastAPI ``body`` typed ``body_type`` and none of ``values`` (passed on
    every call), and calls ``endpoint`` unchanged, under its own name (the
    operation id) and docstring.
    """
    signature = inspect.signature(endpoint, eval_str=True)
    parameters = [
        p.replace(annotation=body_type) if p.name == "body" else p
        for p in signature.parameters.values()
        if p.name not in values
    ]

    @functools.wraps(endpoint)
    async def route(*args: Any, **kwargs: Any) -> Any:
        return await endpoint(*args, **kwargs, **values)

    route.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]  # read by FastAPI
    return route  # type: ignore[return-value]  # called as endpoint is, less the bound parameters


def add_routes(app: FastAPI, settings: AnnotationSettings) -> None:
    """Serve a person's queue, the run's settings and answers on ``app``; answers are checked against ``settings``."""
    tags: list[str | Enum] = ["annotate"]
    body_type = s.answer_model(settings.rating_scale, settings.label_choices)
    app.add_api_route("/api/queue", queue, response_model=s.QueueOut, responses=errors(401, 403, 422), tags=tags)
    app.add_api_route("/api/settings", settings_view, response_model=s.SettingsOut, responses=errors(401), tags=tags)
    app.add_api_route(
        "/api/answers",
        # this route carries the load: its parts are bound once, not solved as dependencies per request
        bind(answer, body_type, store=app.state.store, writer=app.state.writer, settings=settings),
        methods=["POST"],
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
            **errors(401, 403, 413, 422),
        },
        tags=tags,
    )
    app.add_api_route(
        "/api/answers", answers, response_model=list[s.StoredAnswer], responses=errors(401, 403, 422), tags=tags
    )


# -- from request bodies to records, and from records to replies ---------------------------


async def record_for(body: Any, annotator_id: str, store: FeedbackStore, settings: AnnotationSettings) -> Feedback:
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
    original = await run_in_threadpool(corrected_text, store, body.query_id)
    return Correction.make(body.query_id, Text(original.prompt, body.completion, info=original.info), annotator_id)


def corrected_text(store: FeedbackStore, query_id: str) -> Text:
    """The text a correction query shows (ValueError for a control segment or an unknown query)."""
    query = next((q for q in store.queries() if q.id == query_id), None)
    if query is None:
        raise StoreError(f"answer to unknown query {query_id!r}")
    gen = store.generations([query.generation_ids[0]])[query.generation_ids[0]]
    if not isinstance(gen.content, Text):
        raise ValueError("a control segment is corrected with edited states, which this form cannot send")
    return gen.content


def same_answer(a: Feedback, b: Feedback) -> bool:
    """Whether two answers say the same thing (their time aside)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Correction) and isinstance(b, Correction):
        return _json(a.corrected) == _json(b.corrected)
    return bool(dataclasses.replace(a, created_at=0.0) == dataclasses.replace(b, created_at=0.0))


def _json(content: Any) -> Any:
    return content.to_json() if isinstance(content, Text) else None


def stored_answer(f: Feedback) -> s.StoredAnswer:
    """One stored answer as the API shows it."""
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


def item(g: Generation) -> s.ItemOut:
    """One generation as a query shows it: a text's prompt and completion, or a control segment's media URLs."""
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
