"""Rows of a preference file: JSON Lines read line by line, each field checked, each bad row named.

A format module turns one row into records with a :data:`RowParser`, raising
:class:`RowError` (the field at fault and what is wrong) at the first bad
field; :func:`read_file` and :func:`collect` add the file and line, turning it
into a :class:`~rlhfkit.feedback.formats.common.DataFormatError`, or, with
``skip_bad_rows``, count it in the :class:`~rlhfkit.feedback.formats.common.ImportReport`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhfkit.feedback.formats.common import (
    FILE,
    ROW,
    DataFormatError,
    ImportReport,
    PreferenceRecord,
    TextValue,
    freeze_text,
    is_empty,
    is_number,
    normalize_mu,
)
from rlhfkit.types import Message


class RowError(Exception):
    """A bad field of the row being read: ``field`` is its path in the row (or ``"<row>"``), ``message`` why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class RowContext:
    """What every record of one file or data set gets: its ``source`` and ``annotator_id``."""

    source: str
    annotator_id: str


RowParser = Callable[[Mapping[str, Any], int, RowContext], list[PreferenceRecord]]
"""``(row, line, context) -> records``: the records of one row (several for a scored row); raises :class:`RowError`."""


def required(row: Mapping[str, Any], key: str) -> Any:
    if key not in row:
        raise RowError(key, "missing")
    return row[key]


def plain_text(value: Any, name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        hint = " (chat messages belong in a conversational file)" if isinstance(value, list) else ""
        raise RowError(name, f"must be a string, got {type(value).__name__}{hint}")
    if not allow_empty and not value.strip():
        raise RowError(name, "is empty")
    return value


def messages(value: Any, name: str, *, allow_empty: bool = False) -> tuple[Message, ...]:
    if not isinstance(value, list):
        raise RowError(name, f"must be a list of chat messages, got {type(value).__name__}")
    for i, m in enumerate(value):
        if not isinstance(m, Mapping):
            raise RowError(f"{name}[{i}]", f"must be a message object, got {type(m).__name__}")
        for key in ("role", "content"):
            if key not in m:
                raise RowError(f"{name}[{i}].{key}", "missing")
            if not isinstance(m[key], str):
                raise RowError(f"{name}[{i}].{key}", f"must be a string, got {type(m[key]).__name__}")
    frozen = freeze_text(value, name)
    assert not isinstance(frozen, str)
    if not allow_empty and is_empty(frozen):
        raise RowError(name, "is empty")
    return frozen


def optional_number(row: Mapping[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if not is_number(value) or not math.isfinite(value):
        raise RowError(key, f"must be a finite number, got {value!r}")
    return float(value)


def row_mu(row: Mapping[str, Any]) -> tuple[float, float] | None:
    """The row's ``"mu"`` (our extension: a tie, a graded label, ``null`` for incomparable); ``(1, 0)`` without."""
    if "mu" not in row:
        return (1.0, 0.0)
    try:
        return normalize_mu(row["mu"])
    except ValueError as e:
        raise RowError("mu", str(e)) from None


def make_record(
    ctx: RowContext,
    line: int,
    prompt: TextValue,
    chosen: TextValue,
    rejected: TextValue,
    mu: tuple[float, float] | None,
    margin: float | None = None,
    scores: tuple[float, float] | None = None,
) -> PreferenceRecord:
    """A record of the row on ``line``; what the record itself refuses is a fault of the whole row."""
    if chosen == rejected:
        raise RowError("rejected", "is the same as 'chosen'")
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
        raise RowError(ROW, str(e)) from None


# -- reading --------------------------------------------------------------------


def json_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line number, raw line)`` of every non-blank line, a leading UTF-8 byte-order mark dropped."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark
            if raw.strip():
                yield number, raw


def decode_line(raw: bytes) -> Any:
    """One line's JSON value; columns in errors count from the line's first character.

    The line ending is cut off first: left on, a row cut short (``{"prompt": "x"``)
    fails at the newline, which ``json`` reports as column 1 of a second line.
    """
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise RowError(ROW, f"not valid UTF-8 (byte {e.start + 1} of the line)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()):
            why = "the line ends before the JSON value does; each line must hold one whole JSON object"
        else:
            why = f"{e.msg} at column {e.pos + 1}"
        raise RowError(ROW, f"not valid JSON: {why}") from None


def first_row(path: str | Path) -> tuple[int, Mapping[str, Any]]:
    """``(line, row)`` of the first non-blank line of a JSON Lines file, for telling its format.

    Raises :class:`DataFormatError` when that line is not a JSON object or the
    file holds no rows, in the words the readers use.
    """
    for line, raw in json_lines(Path(path)):
        try:
            row = decode_line(raw)
            if not isinstance(row, Mapping):
                raise RowError(ROW, f"must be a JSON object, got {type(row).__name__}")
        except RowError as e:
            raise DataFormatError(str(path), line, e.field, e.message) from None
        return line, row
    raise DataFormatError(str(path), 0, FILE, "the file holds no rows")


def collect(
    where: str, rows: Iterable[tuple[int, Any]], parse: RowParser, ctx: RowContext, skip: bool
) -> ImportReport[PreferenceRecord]:
    """The records of ``(line, row)`` items (a row as raw bytes or already decoded), errors named after ``where``."""
    records: list[PreferenceRecord] = []
    errors: list[str] = []
    for line, item in rows:
        try:
            row = decode_line(item) if isinstance(item, bytes) else item
            if not isinstance(row, Mapping):
                raise RowError(ROW, f"must be a JSON object, got {type(row).__name__}")
            records.extend(parse(row, line, ctx))
        except RowError as e:
            error = DataFormatError(where, line, e.field, e.message)
            if not skip:
                raise error from None
            errors.append(str(error))
    return ImportReport(records=tuple(records), skipped=len(errors), errors=tuple(errors))


def read_file(
    path: str | Path, parse: RowParser, skip_bad_rows: bool, annotator_id: str, source: str | None
) -> ImportReport[PreferenceRecord]:
    """Every row of a JSON Lines file through ``parse``; ``source`` defaults to the file's absolute path."""
    path = Path(path)
    ctx = RowContext(source=str(path.resolve()) if source is None else source, annotator_id=annotator_id)
    return collect(str(path), json_lines(path), parse, ctx, skip_bad_rows)
