"""What each kind of feedback costs a person, in human-seconds.

Richer feedback costs more effort, so kinds are compared per minute of human
time, not per answer. Each answer costs the time to look at what the query
shows plus the time to give that kind of answer::

    seconds = view_seconds * n_shown + answer_seconds[kind]            (ranking: + place_seconds * (k - 1))

The defaults are round, documented guesses for short clips (a 50-step control
segment plays in about 2.5 s at 20 fps) and one-line completions, in line with
"a clip comparison takes a few seconds"; change them to match your interface:

==============  ======================================================  ===========
kind            what the person does                                    default (s)
==============  ======================================================  ===========
comparison      watch 2 clips, click the better one                     2*2 + 1 = 5
ranking (k)     watch k clips, place each after the first               2k + 1.5(k-1)
rating          watch 1 clip, pick a point on the scale                 2 + 2 = 4
label           watch 1 clip, click one of a few buttons                2 + 1 = 3
correction      watch 1 clip, edit a chunk of it (or a sentence)        2 + 20 = 22
language        watch 2 clips, type a short phrase                      2*2 + 8 = 12
==============  ======================================================  ===========
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rlhfkit.checks import non_negative, require
from rlhfkit.feedback_records import Feedback, Ranking
from rlhfkit.types import QUERY_SIZES


def _default_answer_seconds() -> dict[str, float]:
    return {"comparison": 1.0, "ranking": 0.0, "rating": 2.0, "label": 1.0, "correction": 20.0, "language": 8.0}


@dataclass(frozen=True)
class EffortCosts:
    """Human-seconds per answer of each kind (formula and defaults in the module docstring)."""

    view_seconds: float = 2.0
    """Seconds to watch or read one generation that a query shows."""
    place_seconds: float = 1.5
    """Extra seconds per item placed in a ranking, after the first."""
    answer_seconds: Mapping[str, float] = field(default_factory=_default_answer_seconds)
    """Seconds to give the answer itself, by kind, on top of viewing."""

    def __post_init__(self) -> None:
        require(self, {"view_seconds": (non_negative, ">= 0"), "place_seconds": (non_negative, ">= 0")})
        merged = {**_default_answer_seconds(), **dict(self.answer_seconds)}
        unknown = sorted(set(merged) - set(QUERY_SIZES))
        if unknown:
            raise ValueError(f"answer_seconds: unknown kinds {unknown}; expected some of {', '.join(QUERY_SIZES)}")
        bad = {k: v for k, v in merged.items() if not v >= 0}
        if bad:
            raise ValueError(f"answer_seconds must be >= 0, got {bad}")
        object.__setattr__(self, "answer_seconds", merged)

    def seconds(self, kind: str, n_shown: int | None = None) -> float:
        """Human-seconds for one answer of ``kind`` to a query showing ``n_shown`` generations.

        ``n_shown`` defaults to the kind's fixed query size (a ranking needs it).
        """
        if kind not in QUERY_SIZES:
            raise ValueError(f"unknown feedback kind {kind!r}; expected one of {', '.join(QUERY_SIZES)}")
        low, high = QUERY_SIZES[kind]
        if n_shown is None:
            if low != high:
                raise ValueError(f"the cost of a {kind} depends on how many items it shows: pass n_shown")
            n_shown = low
        extra = self.place_seconds * (n_shown - 1) if kind == Ranking.kind else 0.0
        return self.view_seconds * n_shown + self.answer_seconds[kind] + extra

    def minutes(self, kind: str, n_answers: int, n_shown: int | None = None) -> float:
        """Human-minutes for ``n_answers`` answers of one kind."""
        return n_answers * self.seconds(kind, n_shown) / 60.0

    def total_minutes(self, feedback: Iterable[Feedback]) -> float:
        """Human-minutes spent on stored answers (a ranking costs by its length)."""
        total = 0.0
        for f in feedback:
            total += self.seconds(f.kind, len(f.ranked) if isinstance(f, Ranking) else None)
        return total / 60.0


@dataclass(frozen=True)
class EffortConfig:
    """Human-seconds for one answer of each kind, as a run's config gives them (``[feedback.effort]``).

    The defaults are :class:`EffortCosts`' defaults (the table in this module's
    docstring), with rankings of 4 items, the size the loops ask for.
    """

    comparison: float = 5.0
    """Seconds per comparison: watch two generations, pick the better one."""
    ranking: float = 12.5
    """Seconds per ranking of 4: watch four, place each after the first."""
    rating: float = 4.0
    """Seconds per rating: watch one, pick a point on the scale."""
    label: float = 3.0
    """Seconds per label: watch one, click one of a few buttons."""
    correction: float = 22.0
    """Seconds per correction: watch one, edit a chunk of it (or a sentence)."""
    language: float = 12.0
    """Seconds per utterance: watch two, type a short phrase."""

    def __post_init__(self) -> None:
        bad = {f: getattr(self, f) for f in QUERY_SIZES if not 0 <= getattr(self, f) < float("inf")}
        if bad:
            raise ValueError(f"seconds per answer must be >= 0 and finite, got {bad}")

    def seconds(self, kind: str) -> float:
        """Human-seconds for one answer of ``kind``."""
        if kind not in QUERY_SIZES:
            raise ValueError(f"unknown feedback kind {kind!r}; expected one of {', '.join(QUERY_SIZES)}")
        return float(getattr(self, kind))

    def total_minutes(self, feedback: Iterable[Feedback]) -> float:
        """Human-minutes spent on stored answers."""
        return sum(self.seconds(f.kind) for f in feedback) / 60.0
