"""Every stored answer with what it is about: the one read that the reward fit takes.

A reward fit needs three things from the store: the answers (feedback records of
any kind), the queries they answer (which generations were shown, in which
order) and those generations. :func:`read_answers` reads them together into an
:class:`AnswerSet`; :meth:`AnswerSet.split` holds out a fixed share of it by a
hash of each answer's query id (:func:`is_heldout`), so an answer stays on the
same side of the split from round to round while the model is warm-started, and
every kind is split by the same rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from rlhfkit.feedback.win_rate import is_evaluation
from rlhfkit.feedback_records import Feedback
from rlhfkit.types import Content, Generation, Query

if TYPE_CHECKING:
    from rlhfkit.feedback.store import FeedbackStore


def is_heldout(query_id: str, frac: float) -> bool:
    """Whether an answer is held out: a fixed share chosen by a hash of its query id, stable across rounds."""
    h = int.from_bytes(hashlib.sha256(query_id.encode()).digest()[:8], "big")
    return h / 2**64 < frac


def _frozen(mapping: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class AnswerSet:
    """Answers (``feedback``, oldest first) with the queries and generations they are about.

    ``queries`` and ``generations`` are read-only maps by id; they hold at least
    every query an answer names and every generation those queries show.
    """

    feedback: tuple[Feedback, ...]
    queries: Mapping[str, Query] = field(default_factory=dict)
    generations: Mapping[str, Generation] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "feedback", tuple(self.feedback))
        object.__setattr__(self, "queries", _frozen(self.queries))
        object.__setattr__(self, "generations", _frozen(self.generations))
        for f in self.feedback:
            q = self.queries.get(f.query_id)
            if q is None:
                raise ValueError(f"answer to query {f.query_id!r}: the query is not in the answer set")
            missing = [g for g in q.generation_ids if g not in self.generations]
            if missing:
                raise ValueError(f"query {q.id!r} shows generations not in the answer set: {missing}")

    @classmethod
    def of(cls, feedback: Iterable[Feedback], queries: Iterable[Query], generations: Iterable[Generation]) -> AnswerSet:
        """An answer set from lists of records (the queries and generations are indexed by id)."""
        return cls(tuple(feedback), {q.id: q for q in queries}, {g.id: g for g in generations})

    def __len__(self) -> int:
        return len(self.feedback)

    def shown(self, answer: Feedback) -> tuple[Content, ...]:
        """What the human was shown for ``answer``: the contents of its query's generations, in order."""
        return tuple(self.generations[g].content for g in self.queries[answer.query_id].generation_ids)

    def select(self, keep: Callable[[Feedback], bool]) -> AnswerSet:
        """The answers for which ``keep`` is true (with the same queries and generations)."""
        return AnswerSet(tuple(f for f in self.feedback if keep(f)), self.queries, self.generations)

    def split(self, holdout_frac: float) -> tuple[AnswerSet, AnswerSet]:
        """``(train, heldout)``: the answers whose query id :func:`is_heldout` keeps out, and the rest.

        The same rule for every kind; ``holdout_frac = 0`` holds out nothing.
        """
        held = [is_heldout(f.query_id, holdout_frac) for f in self.feedback]
        train = tuple(f for f, h in zip(self.feedback, held, strict=True) if not h)
        heldout = tuple(f for f, h in zip(self.feedback, held, strict=True) if h)
        return AnswerSet(train, self.queries, self.generations), AnswerSet(heldout, self.queries, self.generations)


def read_answers(store: FeedbackStore, kinds: Sequence[str] | None = None) -> AnswerSet:
    """Every stored answer (of ``kinds``, default all) with its queries and the generations they show.

    Answers to evaluation comparisons (:mod:`rlhfkit.feedback.win_rate`) are left out: they judge the
    policy and are never fitted.
    """
    feedback = [f for f in store.feedback() if (kinds is None or f.kind in kinds) and not is_evaluation(f.query_id)]
    asked = {f.query_id for f in feedback}
    queries = {q.id: q for q in store.queries() if q.id in asked}
    generations = store.generations(sorted({g for q in queries.values() for g in q.generation_ids}))
    return AnswerSet(tuple(feedback), queries, generations)
