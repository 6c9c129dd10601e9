"""The answers a human gives: one frozen record per feedback kind, and who gives them.

A human answers a :class:`~rlhfkit.types.Query` with a feedback record: a
:class:`Comparison` (A, B, about equal, graded, or incomparable), a :class:`Ranking`,
a :class:`Rating`, a :class:`Label`, a :class:`Correction` or a :class:`Language`
utterance. Every kind shares :class:`FeedbackBase`'s fields (``query_id``,
``annotator_id``, ``created_at``) and declares its own ``kind``; the store keeps the
kind-specific fields in a JSON payload column, so a new kind needs no change to the
schema. Each record checks its kind's rules on construction
(:class:`InvalidFeedbackError`, one clear message, nothing stored).
"""

from __future__ import annotations

import enum
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rlhfkit.types import Content, Segment, Text


class Answer(enum.StrEnum):
    """What a human said about a pair (A, B)."""

    A = "A"  #: A is better: mu = (1, 0)
    B = "B"  #: B is better: mu = (0, 1)
    EQUAL = "equal"  #: about equal: mu = (0.5, 0.5)
    GRADED = "graded"  #: a graded answer, mu as given, e.g. (0.9, 0.1)
    INCOMPARABLE = "incomparable"  #: stored, never trained on: mu is None


@dataclass(frozen=True)
class Annotator:
    """Who answers: a simulated human, a recorded data set or a person."""

    id: str
    kind: str = "simulated"  # "simulated" | "dataset" | "person"
    name: str = ""


@dataclass(frozen=True)
class FeedbackBase:
    """Fields every feedback record carries."""

    query_id: str
    annotator_id: str
    created_at: float


@dataclass(frozen=True)
class Comparison(FeedbackBase):
    """A pairwise answer with its label distribution ``mu = (mu(A), mu(B))``.

    ``mu`` is ``None`` exactly when the answer is :attr:`Answer.INCOMPARABLE`;
    otherwise both entries lie in ``[0, 1]`` and sum to 1. Build records with
    the class methods rather than by hand.
    """

    answer: Answer
    mu: tuple[float, float] | None

    kind: ClassVar[str] = "comparison"

    def __post_init__(self) -> None:
        if self.answer is Answer.INCOMPARABLE:
            if self.mu is not None:
                raise ValueError("an incomparable answer carries no label distribution (mu must be None)")
            return
        if self.mu is None or len(self.mu) != 2:
            raise ValueError(f"answer {self.answer.value!r} needs mu = (mu_A, mu_B), got {self.mu!r}")
        a, b = (float(v) for v in self.mu)
        if not (math.isfinite(a) and math.isfinite(b)) or min(a, b) < 0.0 or max(a, b) > 1.0:
            raise ValueError(f"mu entries must be finite and in [0, 1], got {self.mu!r}")
        if abs(a + b - 1.0) > 1e-6:
            raise ValueError(f"mu must sum to 1, got {self.mu!r} (sum {a + b})")
        expected = {Answer.A: (1.0, 0.0), Answer.B: (0.0, 1.0), Answer.EQUAL: (0.5, 0.5)}.get(self.answer)
        if expected is not None and (a, b) != expected:
            raise ValueError(f"answer {self.answer.value!r} means mu = {expected}, got {self.mu!r}")
        object.__setattr__(self, "mu", (a, b))

    @property
    def usable(self) -> bool:
        """Whether this answer is trained on (everything but incomparable)."""
        return self.mu is not None

    @classmethod
    def make(
        cls,
        query_id: str,
        answer: Answer | str,
        annotator_id: str,
        mu_a: float | None = None,
        created_at: float | None = None,
    ) -> Comparison:
        """Build a comparison; ``mu_a`` is needed only for :attr:`Answer.GRADED`.

        ``answer`` may be given as its string value (``"A"``, ``"B"``, ``"equal"``,
        ``"graded"``, ``"incomparable"``), as a web form or JSON file sends it.
        """
        try:
            answer = Answer(answer)
        except ValueError:
            allowed = ", ".join(repr(a.value) for a in Answer)
            raise ValueError(f"unknown answer {answer!r}; expected one of {allowed}") from None
        mu: tuple[float, float] | None
        if answer is Answer.A:
            mu = (1.0, 0.0)
        elif answer is Answer.B:
            mu = (0.0, 1.0)
        elif answer is Answer.EQUAL:
            mu = (0.5, 0.5)
        elif answer is Answer.GRADED:
            if mu_a is None:
                raise ValueError("a graded answer needs mu_a = P(A > B)")
            mu = (float(mu_a), 1.0 - float(mu_a))
        else:
            mu = None
        return cls(
            query_id=query_id,
            annotator_id=annotator_id,
            created_at=time.time() if created_at is None else created_at,
            answer=answer,
            mu=mu,
        )


VISIBLE_PATTERN = (
    r"[^\x00-\x20\x7f-\xa0\xad\u034f\u115f\u1160\u1680\u180e\u2000-\u200f\u2028-\u202f"
    r"\u205f-\u206f\u2800\u3000\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb]"
)
"""One character that shows: not a space, a control, or an invisible character (zero-width
spaces and joiners, bidi and other format marks, variation selectors, Hangul fillers, the
blank Braille pattern). Written so that Python's ``re`` and JSON Schema (ECMA-262) read it
alike: the web app's schema publishes it for utterances and corrected completions."""

_VISIBLE_RE = re.compile(VISIBLE_PATTERN)


def has_visible_text(text: str) -> bool:
    """Whether ``text`` holds a character of :data:`VISIBLE_PATTERN`.

    ``str.strip`` keeps zero-width spaces and joiners (U+200B-U+200D, U+2060, U+FEFF),
    so an answer made only of them would look empty to a person yet count as text.
    """
    return _VISIBLE_RE.search(text) is not None


class InvalidFeedbackError(ValueError):
    """A feedback record that breaks its kind's rules (one clear message; nothing is stored)."""


NONE_OF_THESE = "none of these"
"""The label every choice set admits: the item fits none of the declared choices (stored, never trained on)."""


def _now(created_at: float | None) -> float:
    return time.time() if created_at is None else float(created_at)


@dataclass(frozen=True)
class Ranking(FeedbackBase):
    """The ``k`` generations of a ranking query ordered best first (Plackett–Luce).

    ``ranked`` lists generation ids, each exactly once; the store checks that
    they are the query's generations.
    """

    ranked: tuple[str, ...]

    kind: ClassVar[str] = "ranking"

    def __post_init__(self) -> None:
        ranked = tuple(self.ranked)
        if len(ranked) < 2 or not all(isinstance(g, str) and g for g in ranked):
            raise InvalidFeedbackError(f"a ranking orders at least 2 generation ids (non-empty), got {ranked!r}")
        dup = sorted({g for g in ranked if ranked.count(g) > 1})
        if dup:
            raise InvalidFeedbackError(f"a ranking lists each generation once; {dup} appear more than once")
        object.__setattr__(self, "ranked", ranked)

    @classmethod
    def make(cls, query_id: str, ranked: Sequence[str], annotator_id: str, created_at: float | None = None) -> Ranking:
        return cls(query_id=query_id, annotator_id=annotator_id, created_at=_now(created_at), ranked=tuple(ranked))


@dataclass(frozen=True)
class Rating(FeedbackBase):
    """A score for one generation on a declared scale ``(low, high)``, e.g. ``(1, 7)``.

    People use a scale differently (one is harsh, one rates everything 5 to 7):
    the reward fit learns a per-annotator scale and offset (see
    ``reward/kinds.py``), so only the annotator id and the value are needed here.
    """

    value: float
    scale: tuple[float, float]

    kind: ClassVar[str] = "rating"

    def __post_init__(self) -> None:
        if len(self.scale) != 2:
            raise InvalidFeedbackError(f"a rating scale is (low, high), got {self.scale!r}")
        low, high = (float(v) for v in self.scale)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise InvalidFeedbackError(f"a rating scale needs finite low < high, got {self.scale!r}")
        value = float(self.value)
        if not math.isfinite(value) or not low <= value <= high:
            raise InvalidFeedbackError(f"rating {self.value!r} is outside its scale [{low:g}, {high:g}]")
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "scale", (low, high))

    @classmethod
    def make(
        cls,
        query_id: str,
        value: float,
        annotator_id: str,
        scale: tuple[float, float] = (1.0, 7.0),
        created_at: float | None = None,
    ) -> Rating:
        return cls(query_id=query_id, annotator_id=annotator_id, created_at=_now(created_at), value=value, scale=scale)


@dataclass(frozen=True)
class Label(FeedbackBase):
    """A label for one generation from a declared choice set, or :data:`NONE_OF_THESE`.

    ``ordinal = True``: ``choices`` are listed worst to best ("bad", "ok", "good")
    and the fit learns thresholds between them; a binary good/bad label is the
    simplest case. ``ordinal = False``: the choices are unordered categories.
    """

    label: str
    choices: tuple[str, ...]
    ordinal: bool = True

    kind: ClassVar[str] = "label"

    def __post_init__(self) -> None:
        choices = tuple(self.choices)
        if len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
            raise InvalidFeedbackError(f"a label's choice set needs at least 2 non-empty names, got {choices!r}")
        if len(set(choices)) != len(choices) or NONE_OF_THESE in choices:
            raise InvalidFeedbackError(
                f"a label's choices must be distinct and must not list {NONE_OF_THESE!r} (always allowed), "
                f"got {choices!r}"
            )
        if self.label != NONE_OF_THESE and self.label not in choices:
            raise InvalidFeedbackError(
                f"label {self.label!r} is not in its choice set {list(choices)} (or {NONE_OF_THESE!r})"
            )
        object.__setattr__(self, "choices", choices)
        object.__setattr__(self, "ordinal", bool(self.ordinal))

    @property
    def usable(self) -> bool:
        """Whether this label is trained on (everything but "none of these")."""
        return self.label != NONE_OF_THESE

    @property
    def index(self) -> int:
        """Position of the label in ``choices`` (-1 for "none of these")."""
        return self.choices.index(self.label) if self.usable else -1

    @classmethod
    def make(
        cls,
        query_id: str,
        label: str,
        annotator_id: str,
        choices: Sequence[str] = ("bad", "good"),
        ordinal: bool = True,
        created_at: float | None = None,
    ) -> Label:
        return cls(
            query_id=query_id,
            annotator_id=annotator_id,
            created_at=_now(created_at),
            label=label,
            choices=tuple(choices),
            ordinal=ordinal,
        )


def check_correction(original: Content, corrected: Content) -> None:
    """Raise :class:`InvalidFeedbackError` unless ``corrected`` can stand in for ``original``.

    A control correction keeps the segment's shapes (same length, observation
    and action sizes); a text correction keeps the prompt and edits the completion.
    """
    if isinstance(original, Segment):
        if not isinstance(corrected, Segment):
            raise InvalidFeedbackError("a correction of a control segment must be a segment, got text")
        for name in ("observations", "actions", "true_rewards"):
            want, got = getattr(original, name).shape, getattr(corrected, name).shape
            if want != got:
                raise InvalidFeedbackError(f"correction has {name} of shape {got}, the corrected segment has {want}")
    else:
        if not isinstance(corrected, Text):
            raise InvalidFeedbackError("a correction of a text must be a text, got a control segment")
        if corrected.prompt != original.prompt:
            raise InvalidFeedbackError("a text correction edits the completion; its prompt must be the original's")


@dataclass(frozen=True, eq=False)
class Correction(FeedbackBase):
    """An improved version ``x'`` of the query's generation ``x``.

    For control ``corrected`` is an edited segment (the same length and sizes,
    e.g. an edited action chunk and the states it leads to); for text, the same
    prompt with an edited completion. It is learned as a reward-rational choice
    (Jeon, Milli, Dragan 2020): ``x'`` was chosen over ``x`` and over nearby
    alternatives.
    """

    corrected: Content

    kind: ClassVar[str] = "correction"

    def __post_init__(self) -> None:
        c = self.corrected
        if isinstance(c, Segment):
            if not all(np.isfinite(a).all() for a in (c.observations, c.actions, c.true_rewards)):
                raise InvalidFeedbackError("a corrected segment must hold finite numbers only")
        elif isinstance(c, Text):
            body = c.completion if isinstance(c.completion, str) else "".join(m["content"] for m in c.completion)
            if not has_visible_text(body):
                raise InvalidFeedbackError("a corrected text needs a completion with visible text")
        else:
            raise InvalidFeedbackError(f"a correction holds a Segment or a Text, got {type(c).__name__}")

    @classmethod
    def make(cls, query_id: str, corrected: Content, annotator_id: str, created_at: float | None = None) -> Correction:
        return cls(query_id=query_id, annotator_id=annotator_id, created_at=_now(created_at), corrected=corrected)


@dataclass(frozen=True)
class Language(FeedbackBase):
    """Free text about a pair ``(A, B)`` ("less swinging", "shorter answers"), stored raw.

    An interpreter (``feedback/language.py``) turns it into training signal when
    the reward is fitted; the stored text is never rewritten.
    """

    utterance: str

    kind: ClassVar[str] = "language"

    def __post_init__(self) -> None:
        if not isinstance(self.utterance, str) or not has_visible_text(self.utterance):
            # the text is not repeated: it is free input, and an error may reach a web reply
            raise InvalidFeedbackError("an utterance must hold visible text (not only spaces or invisible characters)")

    @classmethod
    def make(cls, query_id: str, utterance: str, annotator_id: str, created_at: float | None = None) -> Language:
        return cls(query_id=query_id, annotator_id=annotator_id, created_at=_now(created_at), utterance=utterance)


#: All feedback records the store understands.
Feedback = Comparison | Ranking | Rating | Label | Correction | Language

FEEDBACK_KINDS: dict[str, type[Comparison | Ranking | Rating | Label | Correction | Language]] = {
    k.kind: k for k in (Comparison, Ranking, Rating, Label, Correction, Language)
}
"""Each feedback record class by its ``kind``."""
