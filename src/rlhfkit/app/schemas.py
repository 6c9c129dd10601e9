"""The web API's request and response bodies (pydantic): they are the OpenAPI schema.

Requests forbid unknown fields and bound every string and list, so a malformed
body is refused with a 422 that names the field, before anything is stored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

QueryId = str
ANSWERS = ("A", "B", "equal", "graded", "incomparable")


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Every error: one sentence in ``detail``; validation errors also list each field."""

    detail: str
    errors: list[ErrorItem] | None = None


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    token: str = Field(min_length=1, max_length=256, description="the token `rlhfkit annotators add` printed")


class MeOut(BaseModel):
    annotator_id: str
    role: Literal["annotator", "admin"]


class ComparisonChoiceIn(BaseModel):
    """A comparison answered with a choice: "A" or "B" (that one is better), "equal" (about
    equal), or "incomparable" (can't compare; stored, never trained on)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["comparison"] = "comparison"
    query_id: QueryId = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    answer: Literal["A", "B", "equal", "incomparable"]


class ComparisonGradedIn(BaseModel):
    """A comparison answered with the confidence slider: ``mu_a`` = the probability that A is better."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["comparison"] = "comparison"
    query_id: QueryId = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    answer: Literal["graded"]
    mu_a: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)


ComparisonAnswerIn = Annotated[ComparisonChoiceIn | ComparisonGradedIn, Field(discriminator="answer")]
"""An answer to a comparison query; ``answer`` decides which fields it has."""


class AnswerOut(BaseModel):
    query_id: str
    stored: bool = Field(description="true if this request stored the answer")
    duplicate: bool = Field(description="true if the same answer was already stored (a retry); nothing changed")


class StoredAnswer(BaseModel):
    query_id: str
    annotator_id: str
    kind: str
    answer: str
    mu_a: float | None
    created_at: float


class Message(BaseModel):
    role: str
    content: str


class ItemOut(BaseModel):
    """One generation shown in a query: text (prompt and completion) or a control segment (media URLs)."""

    generation_id: str
    domain: Literal["text", "control"]
    prompt: str | list[Message] | None = None
    completion: str | list[Message] | None = None
    video: str | None = Field(default=None, description="URL of a WebM video of a control segment")
    image: str | None = Field(default=None, description="URL of an animated GIF of a control segment")
    steps: int | None = None


class QueryOut(BaseModel):
    id: str
    kind: str
    round: int
    items: list[ItemOut]


class QueueOut(BaseModel):
    annotator_id: str
    pending: int = Field(description="queries this annotator has not answered yet")
    answered: int
    total: int = Field(description="all stored queries")
    paused: bool = Field(description="whether an admin paused the loop (answers are still stored)")
    queries: list[QueryOut]


class AnnotatorProgress(BaseModel):
    annotator_id: str
    kind: str
    answered: int


class ProgressOut(BaseModel):
    queries: int
    answers: int
    annotators: list[AnnotatorProgress]


class PairAgreement(BaseModel):
    annotators: list[str]
    agree: int
    pairs: int


class AgreementOut(BaseModel):
    n_units: int
    n_pairs: int
    pairwise: float | None
    alpha_nominal: float | None
    alpha_interval: float | None
    by_pair: list[PairAgreement]


class LoopIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    paused: bool


class LoopOut(BaseModel):
    paused: bool
    status: dict[str, str | float | int | bool | None] = Field(
        default_factory=dict, description="what the loop last reported (round, phase, time)"
    )


class HealthOut(BaseModel):
    ok: bool
