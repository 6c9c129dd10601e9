"""Import and export pairwise preference data sets.

Four file shapes are read, one JSON object per line (JSON Lines):

``"trl"``
    TRL's *standard* preference rows, ``{"prompt": str, "chosen": str,
    "rejected": str}`` with an optional ``"margin"`` number. The *implicit
    prompt* form ``{"chosen": str, "rejected": str}`` is read with the prompt
    ``""`` and the whole texts as completions (no attempt is made to split off
    a shared leading text).
``"trl_conversational"``
    TRL's *conversational* rows, where prompt and completions are lists of
    chat messages ``{"role": str, "content": str}``; the implicit-prompt form
    (no ``"prompt"``) is read with the prompt ``()``.
``"hh"``
    Anthropic HH-RLHF transcripts ``{"chosen": "\\n\\nHuman: ...\\n\\nAssistant:
    ...", "rejected": "..."}``. Both transcripts are split into turns; the
    turns before the final Assistant reply become the prompt (chat messages,
    ``Human`` → ``user``, ``Assistant`` → ``assistant``) and must be the same in
    both, and each final reply becomes a one-message completion.
``"scored"``
    Several scored completions per prompt (the UltraFeedback shape),
    ``{"prompt": str, "completions": [{"text" | "response": str, "score":
    number}, ...]}``, turned into pairs: every pair (``"all_pairs"``) or the
    best against the worst (``"best_vs_worst"``); equal scores give a tie, and
    with a ``temperature`` the label is graded, ``mu = sigmoid((s_i - s_j) / T)``.

Every row of ``"trl"``, ``"trl_conversational"`` and ``"hh"`` files may also
carry ``"mu": [mu_chosen, mu_rejected]`` (a tie or a graded label) or
``"mu": null`` (incomparable), an extension of ours that lets the exporters'
files round-trip; without it a row means ``mu = (1, 0)``. Other fields are
ignored.

Each answer read becomes one :class:`PreferenceRecord`. A malformed row raises
:class:`DataFormatError` naming the file, the line and the field, or, with
``skip_bad_rows=True``, is skipped and counted in an :class:`ImportReport`.
Rows held in memory (a ``datasets.Dataset``, a list of dicts) are read with
:func:`read_rows`.

:func:`import_into_store` writes records into a
:class:`~rlhfkit.feedback.store.FeedbackStore` under ids derived from the
source and line, so importing the same file again stores nothing twice, and
:func:`export_store` writes a store's comparisons back out in any of the four
shapes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, overload

from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.types import Annotator, Answer, Comparison, Generation, Message, Query, Text

__all__ = [
    "DataFormatError",
    "ImportReport",
    "PreferenceFormat",
    "PreferenceRecord",
    "ScoredMode",
    "export_store",
    "first_row",
    "import_into_store",
    "read_hh",
    "read_rows",
    "read_scored",
    "read_trl",
    "read_trl_conversational",
]

TextValue = str | tuple[Message, ...]
"""A prompt or a completion: plain text, or a conversation of chat messages."""

PreferenceFormat = Literal["trl", "trl_conversational", "hh", "scored"]
"""The file shapes this module reads and writes."""

ScoredMode = Literal["all_pairs", "best_vs_worst"]
"""How a ``"scored"`` row is turned into pairs."""

_FORMATS: tuple[str, ...] = ("trl", "trl_conversational", "hh", "scored")
_ROW = "<row>"  # the "field" named when the row as a whole is at fault
_FILE = "<file>"  # ... and when the file as a whole is


# -- records ------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _freeze(value: Any, name: str) -> TextValue:
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


def _is_empty(value: TextValue) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return all(not m["content"].strip() for m in value)


def _normalize_mu(mu: Any, name: str = "mu") -> tuple[float, float] | None:
    """Check a label distribution and return it as ``(a, 1 - a)`` (so it round-trips exactly)."""
    if mu is None:
        return None
    if isinstance(mu, str | bytes | Mapping) or not isinstance(mu, Sequence) or len(mu) != 2:
        raise ValueError(f"{name} must be a pair [mu_chosen, mu_rejected] or null, got {mu!r}")
    if not all(_is_number(v) for v in mu):
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
        prompt = _freeze(self.prompt, "prompt")
        chosen = _freeze(self.chosen, "chosen")
        rejected = _freeze(self.rejected, "rejected")
        if not (isinstance(prompt, str) == isinstance(chosen, str) == isinstance(rejected, str)):
            raise ValueError("prompt, chosen and rejected must all be plain text or all be chat messages")
        if _is_empty(chosen):
            raise ValueError("chosen is empty")
        if _is_empty(rejected):
            raise ValueError("rejected is empty")
        if chosen == rejected:
            raise ValueError("chosen and rejected are the same completion")
        object.__setattr__(self, "prompt", prompt)
        object.__setattr__(self, "chosen", chosen)
        object.__setattr__(self, "rejected", rejected)
        object.__setattr__(self, "mu", _normalize_mu(self.mu))
        if self.margin is not None:
            if not _is_number(self.margin) or not math.isfinite(self.margin):
                raise ValueError(f"margin must be a finite number or None, got {self.margin!r}")
            object.__setattr__(self, "margin", float(self.margin))
        if self.scores is not None:
            s = tuple(self.scores)
            if len(s) != 2 or not all(_is_number(v) and math.isfinite(v) for v in s):
                raise ValueError(f"scores must be two finite numbers or None, got {self.scores!r}")
            object.__setattr__(self, "scores", (float(s[0]), float(s[1])))
        if isinstance(self.source_line, bool) or not isinstance(self.source_line, int) or self.source_line < 0:
            raise ValueError(f"source_line must be a non-negative int, got {self.source_line!r}")


class DataFormatError(ValueError):
    """A malformed row: ``str(err)`` reads ``FILE:LINE: field FIELD: what is wrong``.

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
        if field == _FILE:
            super().__init__(f"{path}: {message}")
        elif field == _ROW:
            super().__init__(f"{path}:{line}: {message}")
        else:
            super().__init__(f"{path}:{line}: field {field!r}: {message}")


@dataclass(frozen=True)
class ImportReport:
    """What a reader returns with ``skip_bad_rows=True``.

    ``records`` are those of the good rows, ``skipped`` counts the bad rows and
    ``errors`` holds one :class:`DataFormatError` message per skipped row.
    """

    records: list[PreferenceRecord]
    skipped: int
    errors: list[str]


# -- row parsing ----------------------------------------------------------------


class _RowError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class _Context:
    source: str
    annotator_id: str


_RowParser = Callable[[Mapping[str, Any], int, _Context], list[PreferenceRecord]]


def _required(row: Mapping[str, Any], key: str) -> Any:
    if key not in row:
        raise _RowError(key, "missing")
    return row[key]


def _plain_text(value: Any, name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        hint = " (chat messages belong in a conversational file)" if isinstance(value, list) else ""
        raise _RowError(name, f"must be a string, got {type(value).__name__}{hint}")
    if not allow_empty and not value.strip():
        raise _RowError(name, "is empty")
    return value


def _messages(value: Any, name: str, *, allow_empty: bool = False) -> tuple[Message, ...]:
    if not isinstance(value, list):
        raise _RowError(name, f"must be a list of chat messages, got {type(value).__name__}")
    for i, m in enumerate(value):
        if not isinstance(m, Mapping):
            raise _RowError(f"{name}[{i}]", f"must be a message object, got {type(m).__name__}")
        for key in ("role", "content"):
            if key not in m:
                raise _RowError(f"{name}[{i}].{key}", "missing")
            if not isinstance(m[key], str):
                raise _RowError(f"{name}[{i}].{key}", f"must be a string, got {type(m[key]).__name__}")
    frozen = _freeze(value, name)
    assert not isinstance(frozen, str)
    if not allow_empty and _is_empty(frozen):
        raise _RowError(name, "is empty")
    return frozen


def _optional_number(row: Mapping[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if not _is_number(value) or not math.isfinite(value):
        raise _RowError(key, f"must be a finite number, got {value!r}")
    return float(value)


def _row_mu(row: Mapping[str, Any]) -> tuple[float, float] | None:
    if "mu" not in row:
        return (1.0, 0.0)
    try:
        return _normalize_mu(row["mu"])
    except ValueError as e:
        raise _RowError("mu", str(e)) from None


def _record(
    ctx: _Context,
    line: int,
    prompt: TextValue,
    chosen: TextValue,
    rejected: TextValue,
    mu: tuple[float, float] | None,
    margin: float | None = None,
    scores: tuple[float, float] | None = None,
) -> PreferenceRecord:
    if chosen == rejected:
        raise _RowError("rejected", "is the same as 'chosen'")
    try:
        return PreferenceRecord(
            prompt=prompt,
            chosen=chosen,
            rejected=rejected,
            mu=mu,
            margin=margin,
            source_line=line,
            annotator_id=ctx.annotator_id,
            scores=scores,
            source=ctx.source,
        )
    except ValueError as e:
        raise _RowError(_ROW, str(e)) from None


def _parse_trl(row: Mapping[str, Any], line: int, ctx: _Context) -> list[PreferenceRecord]:
    prompt = "" if row.get("prompt") is None else _plain_text(row["prompt"], "prompt", allow_empty=True)
    chosen = _plain_text(_required(row, "chosen"), "chosen")
    rejected = _plain_text(_required(row, "rejected"), "rejected")
    return [_record(ctx, line, prompt, chosen, rejected, _row_mu(row), _optional_number(row, "margin"))]


def _parse_trl_conversational(row: Mapping[str, Any], line: int, ctx: _Context) -> list[PreferenceRecord]:
    prompt = () if row.get("prompt") is None else _messages(row["prompt"], "prompt", allow_empty=True)
    chosen = _messages(_required(row, "chosen"), "chosen")
    rejected = _messages(_required(row, "rejected"), "rejected")
    return [_record(ctx, line, prompt, chosen, rejected, _row_mu(row), _optional_number(row, "margin"))]


_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_HH_MARKER = re.compile(r"\n\n(?:Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def _hh_turns(text: str, name: str) -> list[tuple[str, str]]:
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        raise _RowError(name, "a transcript must start with '\\n\\nHuman:'; found text before the first turn")
    turns = []
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        turns.append((_HH_ROLES[role], content[1:] if content.startswith(" ") else content))
    if not turns:
        raise _RowError(name, "no 'Human:' or 'Assistant:' turns in the transcript")
    if turns[-1][0] != "assistant":
        raise _RowError(name, "the transcript must end with an 'Assistant:' turn")
    if not turns[-1][1].strip():
        raise _RowError(name, "the final Assistant reply is empty")
    if len(turns) < 2:
        raise _RowError(name, "no turn before the final Assistant reply")
    return turns


def _parse_hh(row: Mapping[str, Any], line: int, ctx: _Context) -> list[PreferenceRecord]:
    chosen_turns = _hh_turns(_plain_text(_required(row, "chosen"), "chosen"), "chosen")
    rejected_turns = _hh_turns(_plain_text(_required(row, "rejected"), "rejected"), "rejected")
    shared, other = chosen_turns[:-1], rejected_turns[:-1]
    if shared != other:
        diff = next(
            (i for i, (x, y) in enumerate(zip(shared, other, strict=False)) if x != y), min(len(shared), len(other))
        )
        raise _RowError(
            "rejected",
            f"the turns before the final Assistant reply differ from 'chosen' from turn {diff + 1} on "
            f"({len(shared)} vs {len(other)} earlier turns)",
        )
    prompt = tuple(MappingProxyType({"role": r, "content": c}) for r, c in shared)
    chosen = (MappingProxyType({"role": "assistant", "content": chosen_turns[-1][1]}),)
    rejected = (MappingProxyType({"role": "assistant", "content": rejected_turns[-1][1]}),)
    return [_record(ctx, line, prompt, chosen, rejected, _row_mu(row), _optional_number(row, "margin"))]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _scored_parser(
    mode: ScoredMode, temperature: float | None, keep_ties: bool, prompt_key: str, score_key: str
) -> _RowParser:
    if mode not in ("all_pairs", "best_vs_worst"):
        raise ValueError(f"mode must be 'all_pairs' or 'best_vs_worst', got {mode!r}")
    if temperature is not None and (not _is_number(temperature) or not math.isfinite(temperature) or temperature <= 0):
        raise ValueError(f"temperature must be a positive number or None, got {temperature!r}")

    def parse(row: Mapping[str, Any], line: int, ctx: _Context) -> list[PreferenceRecord]:
        prompt = _plain_text(_required(row, prompt_key), prompt_key, allow_empty=True)
        completions = _required(row, "completions")
        if not isinstance(completions, list):
            raise _RowError("completions", f"must be a list, got {type(completions).__name__}")
        if len(completions) < 2:
            raise _RowError("completions", f"needs at least 2 completions, got {len(completions)}")
        texts: list[str] = []
        scores: list[float] = []
        for i, c in enumerate(completions):
            name = f"completions[{i}]"
            if not isinstance(c, Mapping):
                raise _RowError(name, f"must be an object, got {type(c).__name__}")
            text_key = "text" if c.get("text") is not None else "response"
            if c.get(text_key) is None:
                raise _RowError(f"{name}.text", "missing (expected 'text' or 'response')")
            text = _plain_text(c[text_key], f"{name}.{text_key}")
            if text in texts:
                raise _RowError(f"{name}.{text_key}", f"is the same as completions[{texts.index(text)}]")
            if c.get(score_key) is None:
                raise _RowError(f"{name}.{score_key}", "missing")
            score = c[score_key]
            if not _is_number(score) or not math.isfinite(score):
                raise _RowError(f"{name}.{score_key}", f"must be a finite number, got {score!r}")
            texts.append(text)
            scores.append(float(score))
        # Best first; a stable sort keeps the file's order among equal scores.
        order = sorted(range(len(texts)), key=lambda i: scores[i], reverse=True)
        if mode == "all_pairs":
            pairs = [(order[a], order[b]) for a in range(len(order)) for b in range(a + 1, len(order))]
        else:
            pairs = [(order[0], order[-1])]
        records = []
        for i, j in pairs:
            tie = scores[i] == scores[j]
            if tie and not keep_ties:
                continue
            mu_c = 0.5 if tie else 1.0 if temperature is None else _sigmoid((scores[i] - scores[j]) / temperature)
            records.append(
                _record(ctx, line, prompt, texts[i], texts[j], (mu_c, 1.0 - mu_c), scores=(scores[i], scores[j]))
            )
        return records

    return parse


_PARSERS: dict[str, _RowParser] = {
    "trl": _parse_trl,
    "trl_conversational": _parse_trl_conversational,
    "hh": _parse_hh,
}


def _parser(format: str, **scored: Any) -> _RowParser:
    if format == "scored":
        return _scored_parser(**scored)
    if format not in _PARSERS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(map(repr, _FORMATS))}")
    return _PARSERS[format]


# -- reading --------------------------------------------------------------------


def _json_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark
            if raw.strip():
                yield number, raw


def _decode(raw: bytes) -> Any:
    """One line's JSON value; columns in errors count from the line's first character.

    The line ending is cut off first: left on, a row cut short (``{"prompt": "x"``)
    fails at the newline, which ``json`` reports as column 1 of a second line.
    """
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise _RowError(_ROW, f"not valid UTF-8 (byte {e.start + 1} of the line)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()):
            why = "the line ends before the JSON value does; each line must hold one whole JSON object"
        else:
            why = f"{e.msg} at column {e.pos + 1}"
        raise _RowError(_ROW, f"not valid JSON: {why}") from None


def first_row(path: str | Path) -> tuple[int, Mapping[str, Any]]:
    """``(line, row)`` of the first non-blank line of a JSON Lines file, for telling its format.

    Raises :class:`DataFormatError` when that line is not a JSON object or the
    file holds no rows, in the words the readers use.
    """
    for line, raw in _json_lines(Path(path)):
        try:
            row = _decode(raw)
            if not isinstance(row, Mapping):
                raise _RowError(_ROW, f"must be a JSON object, got {type(row).__name__}")
        except _RowError as e:
            raise DataFormatError(str(path), line, e.field, e.message) from None
        return line, row
    raise DataFormatError(str(path), 0, _FILE, "the file holds no rows")


def _collect(where: str, rows: Iterable[tuple[int, Any]], parse: _RowParser, ctx: _Context, skip: bool) -> ImportReport:
    records: list[PreferenceRecord] = []
    errors: list[str] = []
    for line, item in rows:
        try:
            row = _decode(item) if isinstance(item, bytes) else item
            if not isinstance(row, Mapping):
                raise _RowError(_ROW, f"must be a JSON object, got {type(row).__name__}")
            records.extend(parse(row, line, ctx))
        except _RowError as e:
            error = DataFormatError(where, line, e.field, e.message)
            if not skip:
                raise error from None
            errors.append(str(error))
    return ImportReport(records=records, skipped=len(errors), errors=errors)


def _read_file(
    path: str | Path, parse: _RowParser, skip_bad_rows: bool, annotator_id: str, source: str | None
) -> list[PreferenceRecord] | ImportReport:
    path = Path(path)
    ctx = _Context(source=str(path.resolve()) if source is None else source, annotator_id=annotator_id)
    report = _collect(str(path), _json_lines(path), parse, ctx, skip_bad_rows)
    return report if skip_bad_rows else report.records


@overload
def read_trl(
    path: str | Path, *, skip_bad_rows: Literal[False] = ..., annotator_id: str = ..., source: str | None = ...
) -> list[PreferenceRecord]: ...
@overload
def read_trl(
    path: str | Path, *, skip_bad_rows: Literal[True], annotator_id: str = ..., source: str | None = ...
) -> ImportReport: ...
@overload
def read_trl(
    path: str | Path, *, skip_bad_rows: bool, annotator_id: str = ..., source: str | None = ...
) -> list[PreferenceRecord] | ImportReport: ...
def read_trl(
    path: str | Path, *, skip_bad_rows: bool = False, annotator_id: str = "dataset", source: str | None = None
) -> list[PreferenceRecord] | ImportReport:
    """Read a TRL standard preference file (JSON Lines, plain-text rows).

    Rows are ``{"prompt", "chosen", "rejected"}`` strings with an optional
    ``"margin"`` number and an optional ``"mu"``; without ``"prompt"`` (TRL's
    implicit-prompt form) the prompt is ``""`` and the whole texts are the
    completions. Blank lines are ignored.

    Args:
        path: the ``.jsonl`` file.
        skip_bad_rows: skip malformed rows and return an :class:`ImportReport`
            instead of raising :class:`DataFormatError` at the first one.
        annotator_id: the records' ``annotator_id``.
        source: the records' ``source`` (default: the file's absolute path);
            give a stable name if the file may move, so that a re-import
            still finds the records already stored.
    """
    return _read_file(path, _parse_trl, skip_bad_rows, annotator_id, source)


@overload
def read_trl_conversational(
    path: str | Path, *, skip_bad_rows: Literal[False] = ..., annotator_id: str = ..., source: str | None = ...
) -> list[PreferenceRecord]: ...
@overload
def read_trl_conversational(
    path: str | Path, *, skip_bad_rows: Literal[True], annotator_id: str = ..., source: str | None = ...
) -> ImportReport: ...
@overload
def read_trl_conversational(
    path: str | Path, *, skip_bad_rows: bool, annotator_id: str = ..., source: str | None = ...
) -> list[PreferenceRecord] | ImportReport: ...
def read_trl_conversational(
    path: str | Path, *, skip_bad_rows: bool = False, annotator_id: str = "dataset", source: str | None = None
) -> list[PreferenceRecord] | ImportReport:
    """Read a TRL conversational preference file: prompt and completions are lists of messages.

    A message is ``{"role": str, "content": str}`` (other keys are dropped).
    Without ``"prompt"`` the prompt is ``()``. Arguments as for :func:`read_trl`.
    """
    return _read_file(path, _parse_trl_conversational, skip_bad_rows, annotator_id, source)


@overload
def read_hh(
    path: str | Path, *, skip_bad_rows: Literal[False] = ..., annotator_id: str = ..., source: str | None = ...
) -> list[PreferenceRecord]: ...
@overload
def read_hh(
    path: str | Path, *, skip_bad_rows: Literal[True], annotator_id: str = ..., source: str | None = ...
) -> ImportReport: ...
@overload
def read_hh(
    path: str | Path, *, skip_bad_rows: bool, annotator_id: str = ..., source: str | None = ...
) -> list[PreferenceRecord] | ImportReport: ...
def read_hh(
    path: str | Path, *, skip_bad_rows: bool = False, annotator_id: str = "dataset", source: str | None = None
) -> list[PreferenceRecord] | ImportReport:
    """Read Anthropic HH-RLHF transcripts ``{"chosen": str, "rejected": str}``.

    Each transcript is split at ``"\\n\\nHuman:"`` / ``"\\n\\nAssistant:"`` (one
    space after the colon is dropped). It must end with a non-empty Assistant
    reply, and the turns before it, the shared prompt, must be the same in
    both transcripts, or the row is malformed (field ``"rejected"``). Records
    hold chat messages: the prompt's turns, and each final reply as
    ``({"role": "assistant", "content": reply},)``. Arguments as for :func:`read_trl`.
    """
    return _read_file(path, _parse_hh, skip_bad_rows, annotator_id, source)


@overload
def read_scored(
    path: str | Path,
    *,
    mode: ScoredMode = ...,
    temperature: float | None = ...,
    keep_ties: bool = ...,
    prompt_key: str = ...,
    score_key: str = ...,
    skip_bad_rows: Literal[False] = ...,
    annotator_id: str = ...,
    source: str | None = ...,
) -> list[PreferenceRecord]: ...
@overload
def read_scored(
    path: str | Path,
    *,
    mode: ScoredMode = ...,
    temperature: float | None = ...,
    keep_ties: bool = ...,
    prompt_key: str = ...,
    score_key: str = ...,
    skip_bad_rows: Literal[True],
    annotator_id: str = ...,
    source: str | None = ...,
) -> ImportReport: ...
@overload
def read_scored(
    path: str | Path,
    *,
    mode: ScoredMode = ...,
    temperature: float | None = ...,
    keep_ties: bool = ...,
    prompt_key: str = ...,
    score_key: str = ...,
    skip_bad_rows: bool,
    annotator_id: str = ...,
    source: str | None = ...,
) -> list[PreferenceRecord] | ImportReport: ...
def read_scored(
    path: str | Path,
    *,
    mode: ScoredMode = "all_pairs",
    temperature: float | None = None,
    keep_ties: bool = True,
    prompt_key: str = "prompt",
    score_key: str = "score",
    skip_bad_rows: bool = False,
    annotator_id: str = "dataset",
    source: str | None = None,
) -> list[PreferenceRecord] | ImportReport:
    """Read rows of scored completions (UltraFeedback shape) and pair them up.

    A row is ``{"prompt": str, "completions": [{"text" | "response": str,
    "score": number}, ...]}`` with at least two completions of distinct texts.
    The completions are ordered best first (equal scores keep the file's
    order) and paired, the better one as ``chosen``:

    - ``mode="all_pairs"``: every pair, ``k (k - 1) / 2`` records for ``k``
      completions; ``mode="best_vs_worst"``: the first best against the last worst;
    - equal scores give ``mu = (0.5, 0.5)`` (dropped with ``keep_ties=False``);
    - otherwise ``mu = (1, 0)``, or with a ``temperature`` ``T`` the graded
      ``mu = (sigmoid((s_i - s_j) / T), 1 - ...)``.

    Records keep the two scores in ``scores``; ``margin`` is ``None``.
    ``prompt_key`` / ``score_key`` name those fields for files that call them
    otherwise (``"instruction"``, ``"overall_score"``). Other arguments as for
    :func:`read_trl`.
    """
    parse = _scored_parser(mode, temperature, keep_ties, prompt_key, score_key)
    return _read_file(path, parse, skip_bad_rows, annotator_id, source)


@overload
def read_rows(
    rows: Iterable[Mapping[str, Any]],
    format: PreferenceFormat,
    *,
    source: str,
    skip_bad_rows: Literal[False] = ...,
    annotator_id: str = ...,
    first_line: int = ...,
    mode: ScoredMode = ...,
    temperature: float | None = ...,
    keep_ties: bool = ...,
    prompt_key: str = ...,
    score_key: str = ...,
) -> list[PreferenceRecord]: ...
@overload
def read_rows(
    rows: Iterable[Mapping[str, Any]],
    format: PreferenceFormat,
    *,
    source: str,
    skip_bad_rows: Literal[True],
    annotator_id: str = ...,
    first_line: int = ...,
    mode: ScoredMode = ...,
    temperature: float | None = ...,
    keep_ties: bool = ...,
    prompt_key: str = ...,
    score_key: str = ...,
) -> ImportReport: ...
@overload
def read_rows(
    rows: Iterable[Mapping[str, Any]],
    format: PreferenceFormat,
    *,
    source: str,
    skip_bad_rows: bool,
    annotator_id: str = ...,
    first_line: int = ...,
    mode: ScoredMode = ...,
    temperature: float | None = ...,
    keep_ties: bool = ...,
    prompt_key: str = ...,
    score_key: str = ...,
) -> list[PreferenceRecord] | ImportReport: ...
def read_rows(
    rows: Iterable[Mapping[str, Any]],
    format: PreferenceFormat,
    *,
    source: str,
    skip_bad_rows: bool = False,
    annotator_id: str = "dataset",
    first_line: int = 1,
    mode: ScoredMode = "all_pairs",
    temperature: float | None = None,
    keep_ties: bool = True,
    prompt_key: str = "prompt",
    score_key: str = "score",
) -> list[PreferenceRecord] | ImportReport:
    """Read rows already in memory, e.g. a ``datasets.Dataset`` or a list of dicts.

    ``source`` names the data (say ``"Anthropic/hh-rlhf:train"``): it appears
    in error messages in place of a file name and derives the store ids. Row
    ``i`` (from 0) gets ``source_line = first_line + i``, so by default the
    same numbers as the lines of the data set written as JSON Lines.
    A ``None`` prompt reads as a missing one.

    Beware that ``datasets`` fills a field missing from some rows with
    ``None``, and ``"mu": None`` reads as "incomparable": a file whose rows
    carry ``"mu"`` only sometimes (as :func:`export_store` writes them) is
    read exactly with :func:`read_trl` and friends, not through ``datasets``.
    ``mode`` … ``score_key`` apply to ``format="scored"`` only (see
    :func:`read_scored`); the rest are as for :func:`read_trl`.

    Example::

        ds = datasets.load_dataset("Anthropic/hh-rlhf", split="train")
        records = read_rows(ds, "hh", source="Anthropic/hh-rlhf:train")
    """
    parse = _parser(
        format, mode=mode, temperature=temperature, keep_ties=keep_ties, prompt_key=prompt_key, score_key=score_key
    )
    ctx = _Context(source=source, annotator_id=annotator_id)
    report = _collect(source, enumerate(rows, start=first_line), parse, ctx, skip_bad_rows)
    return report if skip_bad_rows else report.records


# -- the store --------------------------------------------------------------------


def _plain(value: TextValue) -> str | list[dict[str, str]]:
    return value if isinstance(value, str) else [dict(m) for m in value]


def _digest(*parts: Any) -> str:
    data = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:32]


def _generation_id(record: PreferenceRecord, completion: TextValue) -> str:
    return _digest("generation", record.source, record.source_line, _plain(record.prompt), _plain(completion))


def _answer(query_id: str, mu: tuple[float, float] | None, annotator_id: str) -> Comparison:
    if mu is None:
        return Comparison.make(query_id, Answer.INCOMPARABLE, annotator_id)
    if mu == (1.0, 0.0):
        return Comparison.make(query_id, Answer.A, annotator_id)
    if mu == (0.0, 1.0):
        return Comparison.make(query_id, Answer.B, annotator_id)
    if mu == (0.5, 0.5):
        return Comparison.make(query_id, Answer.EQUAL, annotator_id)
    return Comparison.make(query_id, Answer.GRADED, annotator_id, mu_a=mu[0])


def import_into_store(
    records: Iterable[PreferenceRecord],
    store: FeedbackStore,
    round: int = 0,
    annotator_id: str | None = None,
    *,
    policy_id: str = "dataset",
    batch_size: int = 500,
) -> int:
    """Store records as comparison answers; returns how many answers were new.

    Each record becomes two text :class:`~rlhfkit.types.Generation` records
    (the prompt with ``chosen`` as A, the prompt with ``rejected`` as B), one
    comparison :class:`~rlhfkit.types.Query` ``(A, B)`` and one
    :class:`~rlhfkit.types.Comparison`: answer A for ``mu = (1, 0)``, EQUAL for
    ``(0.5, 0.5)``, GRADED with ``mu_A = mu[0]`` otherwise, INCOMPARABLE for
    ``None``. A generation's ``info`` keeps ``source``, ``source_line`` and, when
    the record has them, its ``score`` and the pair's ``margin``, so that
    :func:`export_store` can write them back.

    Ids are hashes of the record's ``source`` and ``source_line`` (and of the
    texts), so importing the same file again stores no record twice: the
    generations and queries are found, and the store keeps one answer per
    (query, annotator). Records are written in batches of ``batch_size``: a
    batch's generations and queries are committed first, then each answer,
    so no answer is ever stored without its query; an interrupted import
    may leave some imported queries unanswered, and running it again completes them.
    Each annotator is registered as an :class:`~rlhfkit.types.Annotator` of kind
    ``"dataset"`` (a no-op for an id already known).

    Args:
        records: what a reader returned.
        store: the store to write into.
        round: the round of the generations and queries.
        annotator_id: the answers' annotator; ``None`` keeps each record's own.
        policy_id: the generations' ``policy_id``.
        batch_size: records per batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    new = 0
    annotators: set[str] = set()  # registered as kind "dataset" by this call
    batch: list[PreferenceRecord] = []

    def flush() -> int:
        generations: dict[str, Generation] = {}
        queries: list[Query] = []
        answers: list[Comparison] = []
        for r in batch:
            ids = []
            scores: tuple[float | None, float | None] = (None, None) if r.scores is None else r.scores
            for completion, score in ((r.chosen, scores[0]), (r.rejected, scores[1])):
                info: dict[str, Any] = {"source": r.source, "source_line": r.source_line}
                if score is not None:
                    info["score"] = score
                if r.margin is not None:
                    info["margin"] = r.margin
                gid = _generation_id(r, completion)
                generations.setdefault(
                    gid, Generation(gid, round, policy_id, Text(prompt=r.prompt, completion=completion, info=info))
                )
                ids.append(gid)
            query = Query(id=_digest("query", r.source, r.source_line, *ids), generation_ids=tuple(ids), round=round)
            queries.append(query)
            who = r.annotator_id if annotator_id is None else annotator_id
            answers.append(_answer(query.id, r.mu, who))
        store.add_generations(generations.values())
        store.add_queries(queries)
        for who in sorted({a.annotator_id for a in answers} - annotators):
            store.add_annotator(Annotator(id=who, kind="dataset"))
            annotators.add(who)
        batch.clear()
        return sum(store.record(a) for a in answers)

    for record in records:
        batch.append(record)
        if len(batch) >= batch_size:
            new += flush()
    if batch:
        new += flush()
    return new


# -- export -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Pair:
    query_id: str
    prompt: TextValue
    chosen: Text
    rejected: Text
    mu: tuple[float, float] | None
    margin: float | None


def _stored_pairs(store: FeedbackStore, annotator_id: str | None, include_incomparable: bool) -> Iterator[_Pair]:
    """The store's text comparisons, oldest first, oriented so that ``chosen`` is the preferred one."""
    answers = store.comparisons(annotator_id)
    queries = {q.id: q for q in store.queries()}
    needed = sorted({gid for c in answers for gid in queries[c.query_id].generation_ids})
    generations: dict[str, Generation] = {}
    for i in range(0, len(needed), 500):
        generations.update(store.generations(ids=needed[i : i + 500]))
    for c in answers:
        if c.mu is None and not include_incomparable:
            continue
        a, b = (generations[gid] for gid in queries[c.query_id].generation_ids)
        if not (isinstance(a.content, Text) and isinstance(b.content, Text)):
            continue  # a comparison of control segments has no text to write
        ta, tb = a.content, b.content
        if ta.prompt != tb.prompt:
            raise ValueError(f"query {c.query_id}: its two generations answer different prompts")
        mu, swap = c.mu, c.mu is not None and c.mu[0] < c.mu[1]
        if swap:
            assert mu is not None
            ta, tb, mu = tb, ta, (mu[1], mu[0])
        margin = ta.info.get("margin")
        if swap or margin is None or margin != tb.info.get("margin"):
            margin = None
        yield _Pair(c.query_id, ta.prompt, ta, tb, mu, margin)


def _as_chat(value: TextValue, role: str) -> tuple[Message, ...]:
    if isinstance(value, str):
        return (MappingProxyType({"role": role, "content": value}),) if value else ()
    return value


def _extras(row: dict[str, Any], pair: _Pair) -> dict[str, Any]:
    if pair.margin is not None:
        row["margin"] = pair.margin
    if pair.mu != (1.0, 0.0):
        row["mu"] = None if pair.mu is None else list(pair.mu)
    return row


def _trl_row(pair: _Pair) -> dict[str, Any]:
    values = (pair.prompt, pair.chosen.completion, pair.rejected.completion)
    if not all(isinstance(v, str) for v in values):
        raise ValueError(
            f"query {pair.query_id}: format 'trl' needs plain-text prompt and completions, this one holds chat "
            "messages (use 'trl_conversational' or 'hh')"
        )
    row: dict[str, Any] = {"prompt": pair.prompt} if pair.prompt != "" else {}
    row["chosen"] = pair.chosen.completion
    row["rejected"] = pair.rejected.completion
    return _extras(row, pair)


def _conversational_row(pair: _Pair) -> dict[str, Any]:
    prompt = _as_chat(pair.prompt, "user")
    row: dict[str, Any] = {"prompt": _plain(prompt)} if prompt else {}
    row["chosen"] = _plain(_as_chat(pair.chosen.completion, "assistant"))
    row["rejected"] = _plain(_as_chat(pair.rejected.completion, "assistant"))
    return _extras(row, pair)


_HH_NAMES = {"user": "Human", "assistant": "Assistant"}


def _hh_transcript(pair: _Pair, completion: TextValue) -> str:
    turns = [*_as_chat(pair.prompt, "user"), *_as_chat(completion, "assistant")]
    if len(turns) < 2 or turns[-1]["role"] != "assistant" or len(_as_chat(completion, "assistant")) != 1:
        raise ValueError(
            f"query {pair.query_id}: format 'hh' needs a non-empty prompt and one assistant message per completion"
        )
    parts = []
    for m in turns:
        if m["role"] not in _HH_NAMES:
            raise ValueError(f"query {pair.query_id}: format 'hh' has no {m['role']!r} turns (only user/assistant)")
        if _HH_MARKER.search(m["content"]):
            raise ValueError(f"query {pair.query_id}: a message contains a 'Human:'/'Assistant:' turn marker")
        parts.append(f"\n\n{_HH_NAMES[m['role']]}: {m['content']}")
    return "".join(parts)


def _hh_row(pair: _Pair) -> dict[str, Any]:
    row = {
        "chosen": _hh_transcript(pair, pair.chosen.completion),
        "rejected": _hh_transcript(pair, pair.rejected.completion),
    }
    return _extras(row, pair)


def _scored_rows(pairs: Iterable[_Pair]) -> Iterator[dict[str, Any]]:
    groups: dict[str, list[_Pair]] = {}
    for pair in pairs:
        if pair.mu is None:
            continue  # an incomparable answer says nothing about scores
        if not all(isinstance(v, str) for v in (pair.prompt, pair.chosen.completion, pair.rejected.completion)):
            raise ValueError(f"query {pair.query_id}: format 'scored' needs plain-text prompt and completions")
        assert isinstance(pair.prompt, str)
        groups.setdefault(pair.prompt, []).append(pair)
    for prompt, group in groups.items():
        wins: dict[str, float] = {}
        stored: dict[str, set[Any]] = {}
        for pair in group:
            assert pair.mu is not None
            for text, share in ((pair.chosen, pair.mu[0]), (pair.rejected, pair.mu[1])):
                key = str(text.completion)
                wins[key] = wins.get(key, 0.0) + share
                stored.setdefault(key, set()).add(text.info.get("score"))
        use_stored = all(len(s) == 1 and _is_number(next(iter(s))) for s in stored.values())
        completions = [
            {"text": text, "score": next(iter(stored[text])) if use_stored else score} for text, score in wins.items()
        ]
        yield {"prompt": prompt, "completions": completions}


def export_store(
    store: FeedbackStore,
    path: str | Path,
    format: PreferenceFormat,
    *,
    include_incomparable: bool = False,
    annotator_id: str | None = None,
) -> int:
    """Write the store's text comparisons as a preference file; returns the number of rows.

    Rows follow the order the answers were stored in, and each answer is
    written with ``chosen`` = the preferred completion: B's for an answer B (or
    a graded answer with ``mu_B > mu_A``), A's otherwise. Ties and graded
    answers carry ``"mu": [mu_chosen, mu_rejected]`` so they read back as they
    were; ``"margin"`` is written when the store has one (imported records).
    ``"trl"`` and ``"trl_conversational"`` rows with an empty prompt are
    written in TRL's implicit-prompt form.

    - ``"trl"``: plain-text rows; chat content is an error.
    - ``"trl_conversational"``: message lists; plain text is converted (the
      prompt to one user message, a completion to one assistant message).
    - ``"hh"``: transcripts; the prompt's turns must be user/assistant and
      each completion one assistant message (plain text is converted as above).
    - ``"scored"``: one row per distinct prompt with its completions in order
      of first appearance; the scores are those imported from a scored file
      when every completion of the prompt has one, otherwise its wins (1 per
      win, ``mu`` for a tie or a graded answer). Plain text only.

    Incomparable answers are skipped: TRL would read any written pair as a
    real preference. With ``include_incomparable=True`` they are written with
    ``"mu": null`` (trl, trl_conversational, hh; never in ``"scored"``), which
    this module reads back as incomparable. Comparisons of control segments
    are skipped. ``annotator_id`` restricts the export to one annotator's
    answers. The file is replaced atomically.
    """
    if format not in _FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(map(repr, _FORMATS))}")
    pairs = _stored_pairs(store, annotator_id, include_incomparable)
    rows: Iterable[dict[str, Any]]
    if format == "scored":
        rows = _scored_rows(pairs)
    else:
        make = {"trl": _trl_row, "trl_conversational": _conversational_row, "hh": _hh_row}[format]
        rows = (make(pair) for pair in pairs)
    lines = [json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n" for row in rows]
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(lines)
