"""Frozen, typed records that flow between the steps of the loop.

Data flows one way: a domain produces :class:`Generation` records, the query
selector pairs them into :class:`Query` records, a human answers a query with a
feedback record (:mod:`rlhfkit.feedback_records`), and the store keeps all three.

Every record is immutable. Arrays inside a :class:`Segment` are made read-only
on construction so that a record cannot be changed behind the store's back.

The feedback records (comparisons, rankings, ratings, labels, corrections,
language) are in :mod:`rlhfkit.feedback_records`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

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

    ``kind`` names the feedback kind the query asks for, and fixes how many
    generations it shows (:data:`QUERY_SIZES`): a comparison the pair ``(A, B)``,
    a ranking ``k >= 2`` items, a rating, label or correction one generation ``x``,
    a language query a pair whose difference the human talks about.
    """

    id: str
    generation_ids: tuple[str, ...]
    round: int
    kind: str = "comparison"
    created_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if len(set(self.generation_ids)) != len(self.generation_ids):
            raise ValueError(f"Query {self.id}: generation ids must be distinct, got {self.generation_ids}")
        if self.kind not in QUERY_SIZES:
            raise ValueError(f"Query {self.id}: unknown kind {self.kind!r}; expected one of {', '.join(QUERY_SIZES)}")
        low, high = QUERY_SIZES[self.kind]
        n = len(self.generation_ids)
        if low == high and n != low:
            raise ValueError(
                f"Query {self.id}: a {self.kind} needs exactly {low} generation{'s' if low > 1 else ''}, got {n}"
            )
        if n < low or (high is not None and n > high):
            raise ValueError(f"Query {self.id}: a {self.kind} needs at least {low} generations, got {n}")


QUERY_SIZES: dict[str, tuple[int, int | None]] = {
    "comparison": (2, 2),
    "ranking": (2, None),
    "rating": (1, 1),
    "label": (1, 1),
    "correction": (1, 1),
    "language": (2, 2),
}
"""How many generations a query of each kind shows: ``(at least, at most)``; None = no upper bound."""


def completion_text(x: Content) -> str:
    """The completion of a text as one string (a chat's messages joined)."""
    if not isinstance(x, Text):
        raise TypeError("expected a text generation, got a control segment")
    c = x.completion
    return c if isinstance(c, str) else " ".join(m["content"] for m in c)
