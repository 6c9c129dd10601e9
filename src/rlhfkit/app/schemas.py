"""The web API's request and response bodies (pydantic): they are the OpenAPI schema.

Requests forbid unknown fields and bound every string and list, so a malformed
body is refused with a 422 that names the field, before anything is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    create_model,
    field_validator,
)

from rlhfkit.feedback_records import NONE_OF_THESE, VISIBLE_PATTERN, has_visible_text

QueryId = str


def _visible(text: str) -> str:
    if not has_visible_text(text):
        raise ValueError("must hold visible text, not only spaces or invisible characters")
    return text


VisibleText = Annotated[str, AfterValidator(_visible), Field(json_schema_extra={"pattern": VISIBLE_PATTERN})]
"""Free text that shows something (:func:`rlhfkit.feedback_records.has_visible_text`); the schema says so too."""

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


class RatingIn(BaseModel):
    """A score for the one generation of a rating query, on the app's rating scale."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["rating"]
    query_id: QueryId = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    value: float = Field(allow_inf_nan=False)


class LabelIn(BaseModel):
    """A label for the one generation of a label query: one of the app's choices, or "none of these"."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["label"]
    query_id: QueryId = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    label: str = Field(min_length=1, max_length=200)


class RankingIn(BaseModel):
    """The generations of a ranking query, best first (each exactly once)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["ranking"]
    query_id: QueryId = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    ranked: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=2, max_length=50, json_schema_extra={"uniqueItems": True}
    )

    @field_validator("ranked")
    @classmethod
    def _each_once(cls, ranked: list[str]) -> list[str]:
        if len(set(ranked)) != len(ranked):
            raise ValueError("a ranking lists each generation once")
        return ranked


class LanguageIn(BaseModel):
    """Free text about the pair of a language query ("less swinging", "shorter answers")."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["language"]
    query_id: QueryId = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    utterance: VisibleText = Field(min_length=1, max_length=2000)


class CorrectionIn(BaseModel):
    """An edited completion for the one text generation of a correction query (same prompt)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["correction"]
    query_id: QueryId = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    completion: VisibleText = Field(min_length=1, max_length=4000)


def _answer_tag(v: Any) -> str | None:
    if isinstance(v, dict):
        kind = v.get("kind", "comparison")
        if kind == "comparison":
            return "graded" if v.get("answer") == "graded" else "choice"
        return kind if isinstance(kind, str) else None
    return None


def answer_model(rating_scale: tuple[float, float], label_choices: Sequence[str]) -> Any:
    """:data:`AnswerIn` with this app's rating scale and label choices written into the schema.

    The API then documents exactly what it accepts (a rating within the scale, a
    label from the choices or "none of these"), and rejects the rest with a 422.
    """
    low, high = rating_scale
    rating = create_model("RatingIn", __base__=RatingIn, value=(float, Field(ge=low, le=high, allow_inf_nan=False)))
    labels = tuple(dict.fromkeys([*label_choices, NONE_OF_THESE]))
    label_type: Any = Literal.__getitem__(labels)  # Literal["bad", "good", "none of these"], from the config
    label = create_model("LabelIn", __base__=LabelIn, label=(label_type, ...))
    return Annotated[
        Annotated[ComparisonChoiceIn, Tag("choice")]
        | Annotated[ComparisonGradedIn, Tag("graded")]
        | Annotated[rating, Tag("rating")]
        | Annotated[label, Tag("label")]
        | Annotated[RankingIn, Tag("ranking")]
        | Annotated[LanguageIn, Tag("language")]
        | Annotated[CorrectionIn, Tag("correction")],
        Discriminator(_answer_tag),
    ]


AnswerIn = Annotated[
    Annotated[ComparisonChoiceIn, Tag("choice")]
    | Annotated[ComparisonGradedIn, Tag("graded")]
    | Annotated[RatingIn, Tag("rating")]
    | Annotated[LabelIn, Tag("label")]
    | Annotated[RankingIn, Tag("ranking")]
    | Annotated[LanguageIn, Tag("language")]
    | Annotated[CorrectionIn, Tag("correction")],
    Discriminator(_answer_tag),
]
"""An answer to a query of any kind: ``kind`` (default "comparison") decides the fields;
for a comparison ``answer`` does ("graded" needs ``mu_a``)."""


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
    payload: dict[str, Any] | None = Field(default=None, description="the fields of kinds other than comparison")
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
    rating_scale: list[float] = Field(description="(low, high) of the rating scale")
    label_choices: list[str] = Field(description="the label choices; 'none of these' is always allowed too")
    pending: int = Field(description="queries this annotator has not answered yet")
    answered: int
    total: int = Field(description="all stored queries")
    paused: bool = Field(description="whether an admin paused the loop (answers are still stored)")
    queries: list[QueryOut]


class AnnotatorProgress(BaseModel):
    annotator_id: str
    kind: str
    answered: int
    role: Literal["annotator", "admin", "none"] = Field(
        default="annotator", description="the role of the person's login tokens; 'none': answered without one"
    )


class SettingsOut(BaseModel):
    """What people are asked and how they may answer: the run's, from its config (``source = "run"``), or the
    app's fallback for a store no run has written (``"fallback"``)."""

    instructions: str = Field(description="what 'better' means for this run (plain text)")
    rating_scale: list[float] = Field(description="(low, high) of the rating scale")
    label_choices: list[str] = Field(description="the label choices; 'none of these' is always allowed too")
    label_ordinal: bool = Field(description="whether the label choices are ordered worst to best")
    task: str
    source: Literal["run", "fallback"]


class RoundOut(BaseModel):
    round: int
    queries: int = Field(description="queries the loop posted in this round")
    answers: int = Field(description="answers stored to this round's queries, by everyone")
    true_return: float | None = Field(default=None, description="the task's true return after this round")
    learned_return: float | None = Field(default=None, description="the learned reward's return after this round")


class RoundsOut(BaseModel):
    rounds: list[RoundOut]
    metrics: bool = Field(description="whether the run's metrics.jsonl was readable (returns are null otherwise)")
    report: str | None = Field(description="URL of the run's report.html, null until the loop has written one")


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
