"""Frozen, typed records that flow between the steps of the loop.

Data flows one way: a domain produces :class:`Generation` records, the query
selector pairs them into :class:`Query` records, a human answers a query with a
feedback record (for now :class:`Comparison`), and the store keeps all three.

Every record is immutable. Arrays inside a :class:`Segment` are made read-only
on construction so that a record cannot be changed behind the store's back.

Other feedback kinds (rankings, ratings, labels, corrections, language) are
added as further frozen dataclasses that share :class:`FeedbackBase`'s fields
(``query_id``, ``annotator_id``, ``created_at``) and declare their own ``kind``;
the store keeps their kind-specific fields in a JSON payload column, so a new
kind needs no change to the schema.
"""

from __future__ import annotations

import enum
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def new_id(rng: np.random.Generator | None = None) -> str:
    """A fresh random id (32 hex characters) for a record.

    With ``rng`` the id comes from that seeded generator, so a seeded run names
    its records the same way every time (and splits them the same way, since the
    held-out set is chosen by a hash of the query id).
    """
    if rng is None:
        return uuid.uuid4().hex
    return uuid.UUID(bytes=rng.bytes(16), version=4).hex


def _frozen_array(x: Any, dtype: Any = np.float64) -> NDArray[Any]:
    arr = np.array(x, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Segment:
    """A piece of a control trajectory: what a human watches and judges.

    Shapes, with ``T`` the segment length:

    - ``observations``: ``(T, obs_dim)``, the observation *before* each action;
    - ``actions``: ``(T, act_dim)`` for Box action spaces, ``(T,)`` for Discrete;
    - ``true_rewards``: ``(T,)``, the task's true per-step reward. It is used by
      simulated humans and for evaluation only, never by the reward model.

    ``info`` holds small JSON-able extras (episode index, start step, env id).
    """

    observations: FloatArray
    actions: NDArray[Any]
    true_rewards: FloatArray
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        obs = _frozen_array(self.observations)
        act = np.array(self.actions, copy=True)
        act = act if act.dtype.kind in "iu" else act.astype(np.float64)
        act.setflags(write=False)
        rew = _frozen_array(self.true_rewards)
        if obs.ndim != 2:
            raise ValueError(f"Segment.observations must be (T, obs_dim), got shape {obs.shape}")
        n = obs.shape[0]
        if act.shape[:1] != (n,) or act.ndim > 2:
            raise ValueError(f"Segment.actions must be (T,) or (T, act_dim) with T={n}, got {act.shape}")
        if rew.shape != (n,):
            raise ValueError(f"Segment.true_rewards must be (T,) with T={n}, got {rew.shape}")
        object.__setattr__(self, "observations", obs)
        object.__setattr__(self, "actions", act)
        object.__setattr__(self, "true_rewards", rew)
        object.__setattr__(self, "info", MappingProxyType(dict(self.info)))

    def __len__(self) -> int:
        return int(self.observations.shape[0])


Message = Mapping[str, str]
"""One chat turn, ``{"role": "user" | "assistant" | "system", "content": ...}``."""


def _freeze_text(value: str | Sequence[Message], name: str) -> str | tuple[Message, ...]:
    if isinstance(value, str):
        return value
    turns = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"Text.{name}[{i}] must be a message {{'role': str, 'content': str}}, got {m!r}")
        turns.append(MappingProxyType({"role": m["role"], "content": m["content"]}))
    return tuple(turns)


@dataclass(frozen=True)
class Text:
    """A language-model generation: a prompt and the completion written for it.

    Each is plain text, or a conversation as a sequence of chat messages (then
    the tokenizer's chat template renders it). ``info`` holds JSON-able extras.
    """

    prompt: str | tuple[Message, ...]
    completion: str | tuple[Message, ...]
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", _freeze_text(self.prompt, "prompt"))
        object.__setattr__(self, "completion", _freeze_text(self.completion, "completion"))
        object.__setattr__(self, "info", MappingProxyType(dict(self.info)))

    def to_json(self) -> dict[str, Any]:
        def plain(v: str | tuple[Message, ...]) -> str | list[dict[str, str]]:
            return v if isinstance(v, str) else [dict(m) for m in v]

        return {"prompt": plain(self.prompt), "completion": plain(self.completion), "info": dict(self.info)}


Content = Segment | Text
"""What a generation holds: a control segment or a text."""


@dataclass(frozen=True, eq=False)
class Generation:
    """One sample ``x_i ~ pi_phi`` from a policy, with where it came from.

    ``policy_id`` names the policy that produced it (e.g. ``"round-3"``) and
    ``round`` the loop round in which it was sampled.
    """

    id: str
    round: int
    policy_id: str
    content: Content

    @property
    def domain(self) -> str:
        return "control" if isinstance(self.content, Segment) else "text"

    @property
    def segment(self) -> Segment:
        """The control segment (a TypeError for a text generation)."""
        if not isinstance(self.content, Segment):
            raise TypeError(f"generation {self.id} holds text, not a control segment")
        return self.content

    @property
    def text(self) -> Text:
        """The text (a TypeError for a control generation)."""
        if not isinstance(self.content, Text):
            raise TypeError(f"generation {self.id} holds a control segment, not text")
        return self.content


@dataclass(frozen=True)
class Query:
    """A question put to a human about a tuple of generations.

    For a comparison ``generation_ids`` is the pair ``(A, B)``; a ranking query
    holds ``k`` ids. ``kind`` names the feedback kind the query asks for.
    """

    id: str
    generation_ids: tuple[str, ...]
    round: int
    kind: str = "comparison"
    created_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if len(set(self.generation_ids)) != len(self.generation_ids):
            raise ValueError(f"Query {self.id}: generation ids must be distinct, got {self.generation_ids}")
        if self.kind == "comparison" and len(self.generation_ids) != 2:
            raise ValueError(
                f"Query {self.id}: a comparison needs exactly 2 generations, got {len(self.generation_ids)}"
            )


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


#: All feedback records the store understands. Later kinds join this union.
Feedback = Comparison
