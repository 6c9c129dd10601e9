"""What every format shares: the preference record, the import report, the errors, and a stored pair.

- :class:`PreferenceRecord`: one answer read from a preference file (TRL,
  HH-RLHF, scored completions): a prompt, the chosen and the rejected
  completion, and the label distribution ``mu``.
- :class:`ImportReport`: what an import read and what it stored, the one report
  of every reader and of every import into the store.
- :class:`DataFormatError` (a preference file's row, named by file, line and
  field) and :class:`InteropError` (a Label Studio or Argilla file or export,
  named by file, line or row, and field or option): the errors a person meets.
- :class:`StoredPair`: a stored comparison of two texts oriented with the
  preferred one first, what the preference writers turn into a row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar

from rlhfkit.types import Message, Text

__all__ = [
    "FILE",
    "ROW",
    "DataFormatError",
    "ImportReport",
    "InteropError",
    "PreferenceFormat",
    "PreferenceRecord",
    "StoredPair",
    "TextValue",
]

TextValue = str | tuple[Message, ...]
"""A prompt or a completion: plain text, or a conversation of chat messages."""

PreferenceFormat = Literal["trl", "trl_conversational", "hh", "scored"]
"""The preference file shapes read and written (see :mod:`rlhfkit.feedback.formats`)."""

PREFERENCE_FORMATS: tuple[PreferenceFormat, ...] = ("trl", "trl_conversational", "hh", "scored")

ROW = "<row>"
"""The "field" a :class:`DataFormatError` names when the row as a whole is at fault."""
FILE = "<file>"
"""... and when the file as a whole is."""


# -- records ------------------------------------------------------------------


def is_number(value: Any) -> bool:
    """An int or float, not a bool (JSON's ``true`` is no score)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def freeze_text(value: Any, name: str) -> TextValue:
    """A prompt or completion as stored in a record: a string, or a tuple of read-only messages."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a string or a sequence of messages, got {type(value).__name__}")
    turns: list[Message] = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"{name}[{i}] must be a message {{'role': str, 'content': str}}, got {m!r}")
        turns.append(MappingProxyType({"role": m["role"], "content": m["content"]}))
    return tuple(turns)


def is_empty(value: TextValue) -> bool:
    """Whether a text, or every message of a conversation, is blank."""
    if isinstance(value, str):
        return not value.strip()
    return all(not m["content"].strip() for m in value)


def normalize_mu(mu: Any, name: str = "mu") -> tuple[float, float] | None:
    """Check a label distribution and return it as ``(a, 1 - a)`` (so it round-trips exactly)."""
    if mu is None:
        return None
    if isinstance(mu, str | bytes | Mapping) or not isinstance(mu, Sequence) or len(mu) != 2:
        raise ValueError(f"{name} must be a pair [mu_chosen, mu_rejected] or null, got {mu!r}")
    if not all(is_number(v) for v in mu):
        raise ValueError(f"{name} entries must be numbers, got {mu!r}")
    a, b = float(mu[0]), float(mu[1])
    if not (math.isfinite(a) and math.isfinite(b)) or min(a, b) < 0.0 or max(a, b) > 1.0:
        raise ValueError(f"{name} entries must be finite and in [0, 1], got {mu!r}")
    if abs(a + b - 1.0) > 1e-6:
        raise ValueError(f"{name} must sum to 1, got {mu!r}")
    if a < b:
        raise ValueError(f"{name}: the chosen completion's share must be at least the rejected one's, got {mu!r}")
    return (a, 1.0 - a)


@dataclass(frozen=True)
class PreferenceRecord:
    """One imported answer: for ``prompt``, ``chosen`` is preferred to ``rejected``.

    Attributes:
        prompt: plain text, or a tuple of chat messages (``()`` / ``""`` when
            the data set gives no separate prompt).
        chosen, rejected: the two completions, of the same kind as the prompt
            (all plain text or all chat messages), never empty, never equal.
        mu: the label distribution ``(mu(chosen), mu(rejected))``: ``(1, 0)``
            for a plain pair, ``(0.5, 0.5)`` for a tie, another split for a
            graded label, ``None`` for "incomparable". It is stored as
            ``(a, 1 - a)`` with ``a >= 0.5``.
        margin: TRL's optional ``"margin"`` (how much better chosen is), or ``None``.
        source_line: the 1-based line (or row) of the source it came from.
        annotator_id: who gave the answer (by default the reader's ``annotator_id``).
        scores: the ``(chosen, rejected)`` scores of a ``"scored"`` row, else ``None``.
        source: where the record came from (by default the file's absolute
            path); together with ``source_line`` it names the record's store ids.
            It is not part of equality, so the same answers read from two
            copies of a file compare equal.
    """

    prompt: TextValue
    chosen: TextValue
    rejected: TextValue
    mu: tuple[float, float] | None = (1.0, 0.0)
    margin: float | None = None
    source_line: int = 0
    annotator_id: str = "dataset"
    scores: tuple[float, float] | None = None
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        prompt = freeze_text(self.prompt, "prompt")
        chosen = freeze_text(self.chosen, "chosen")
        rejected = freeze_text(self.rejected, "rejected")
        if not (isinstance(prompt, str) == isinstance(chosen, str) == isinstance(rejected, str)):
            raise ValueError("prompt, chosen and rejected must all be plain text or all be chat messages")
        if is_empty(chosen):
            raise ValueError("chosen is empty")
        if is_empty(rejected):
            raise ValueError("rejected is empty")
        if chosen == rejected:
            raise ValueError("chosen and rejected are the same completion")
        object.__setattr__(self, "prompt", prompt)
        object.__setattr__(self, "chosen", chosen)
        object.__setattr__(self, "rejected", rejected)
        object.__setattr__(self, "mu", normalize_mu(self.mu))
        if self.margin is not None:
            if not is_number(self.margin) or not math.isfinite(self.margin):
                raise ValueError(f"margin must be a finite number or None, got {self.margin!r}")
            object.__setattr__(self, "margin", float(self.margin))
        if self.scores is not None:
            s = tuple(self.scores)
            if len(s) != 2 or not all(is_number(v) and math.isfinite(v) for v in s):
                raise ValueError(f"scores must be two finite numbers or None, got {self.scores!r}")
            object.__setattr__(self, "scores", (float(s[0]), float(s[1])))
        if isinstance(self.source_line, bool) or not isinstance(self.source_line, int) or self.source_line < 0:
            raise ValueError(f"source_line must be a non-negative int, got {self.source_line!r}")


# -- the report -------------------------------------------------------------------

R = TypeVar("R")


@dataclass(frozen=True)
class ImportReport(Generic[R]):
    """What an import read and what it stored; each call fills the fields of what it did.

    Reading a preference file (``read_trl`` and friends, ``read_preferences``)
    fills the first three: ``records`` holds the good rows' records, and with
    ``skip_bad_rows=True`` the bad rows left out are counted in ``skipped``,
    one message each in ``errors`` (without it the first bad row raises).
    Storing answers (``import_into_store``) fills the last three: ``stored``
    answers were new, ``duplicates`` were in the store already (the same query
    and annotator) and were left as they were, and ``annotators`` gave them.
    The Label Studio and Argilla imports read a file and store it in one call,
    so they fill both: ``records`` are the feedback records built from the file
    (each stored or a duplicate); they skip no row (a bad one stops the import).
    """

    records: tuple[R, ...] = ()
    """What was read: :class:`PreferenceRecord` from a preference file, feedback records from a labelling tool."""
    skipped: int = 0
    """Bad rows left out (``skip_bad_rows=True``)."""
    errors: tuple[str, ...] = ()
    """One :class:`DataFormatError` message per skipped row, in file order."""
    stored: int = 0
    """New answers stored."""
    duplicates: int = 0
    """Answers already in the store (the same annotator and query), left as they were."""
    annotators: tuple[str, ...] = ()
    """Who gave the answers stored or found, sorted."""


# -- errors -----------------------------------------------------------------------


class DataFormatError(ValueError):
    """A malformed row of a preference file: ``str(err)`` reads ``FILE:LINE: field FIELD: what is wrong``.

    ``field`` is a path into the row (``"chosen"``, ``"prompt[2].content"``,
    ``"completions[1].score"``), or ``"<row>"`` when the row as a whole is at
    fault (not JSON, not an object), or ``"<file>"`` when the file is (no
    rows); those two name no field: ``FILE:LINE: what is wrong`` and
    ``FILE: what is wrong``.
    """

    def __init__(self, path: str, line: int, field: str, message: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.message = message
        if field == FILE:
            super().__init__(f"{path}: {message}")
        elif field == ROW:
            super().__init__(f"{path}:{line}: {message}")
        else:
            super().__init__(f"{path}:{line}: field {field!r}: {message}")


class InteropError(ValueError):
    """A Label Studio or Argilla file that cannot be imported or written: the message names the file, line or
    row, and field or option."""


# -- writing --------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredPair:
    """A stored comparison of two texts, oriented so that ``chosen`` is the preferred one: one row to write.

    ``mu`` is ``(mu(chosen), mu(rejected))`` with ``mu(chosen) >= 0.5``, or
    ``None`` for "incomparable"; ``margin`` is the one imported with the pair,
    if any.
    """

    query_id: str
    prompt: TextValue
    chosen: Text
    rejected: Text
    mu: tuple[float, float] | None
    margin: float | None


def as_json(value: TextValue) -> str | list[dict[str, str]]:
    """A prompt or completion as JSON holds it: the text, or a list of message objects."""
    return value if isinstance(value, str) else [dict(m) for m in value]


def as_chat(value: TextValue, role: str) -> tuple[Message, ...]:
    """A conversation: chat messages as they are, plain text as one message of ``role`` (none when empty)."""
    if isinstance(value, str):
        return (MappingProxyType({"role": role, "content": value}),) if value else ()
    return value


def with_label(row: dict[str, Any], pair: StoredPair) -> dict[str, Any]:
    """``row`` with the pair's ``"margin"`` and, unless it is a plain ``(1, 0)``, its ``"mu"`` (``null`` when
    incomparable): our extension of TRL's rows that lets ties and graded answers round-trip."""
    if pair.margin is not None:
        row["margin"] = pair.margin
    if pair.mu != (1.0, 0.0):
        row["mu"] = None if pair.mu is None else list(pair.mu)
    return row
