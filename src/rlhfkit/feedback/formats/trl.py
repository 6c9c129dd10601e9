"""TRL's preference rows, read and written: the *standard* (plain text) and the *conversational* (chat) shape.

``"trl"``
    ``{"prompt": str, "chosen": str, "rejected": str}`` with an optional
    ``"margin"`` number. The *implicit prompt* form ``{"chosen": str,
    "rejected": str}`` is read with the prompt ``""`` and the whole texts as
    completions (no attempt is made to split off a shared leading text).
``"trl_conversational"``
    prompt and completions are lists of chat messages ``{"role": str,
    "content": str}``; the implicit-prompt form (no ``"prompt"``) is read with
    the prompt ``()``.

Either may carry ``"mu"`` (see :mod:`rlhfkit.feedback.formats`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlhfkit.feedback.formats.common import (
    ImportReport,
    PreferenceRecord,
    StoredPair,
    as_chat,
    as_json,
    with_label,
)
from rlhfkit.feedback.formats.rows import (
    RowContext,
    make_record,
    messages,
    optional_number,
    plain_text,
    read_file,
    required,
    row_mu,
)


def parse_trl(row: Mapping[str, Any], line: int, ctx: RowContext) -> list[PreferenceRecord]:
    """The record of one standard row."""
    prompt = "" if row.get("prompt") is None else plain_text(row["prompt"], "prompt", allow_empty=True)
    chosen = plain_text(required(row, "chosen"), "chosen")
    rejected = plain_text(required(row, "rejected"), "rejected")
    return [make_record(ctx, line, prompt, chosen, rejected, row_mu(row), optional_number(row, "margin"))]


def parse_trl_conversational(row: Mapping[str, Any], line: int, ctx: RowContext) -> list[PreferenceRecord]:
    """The record of one conversational row."""
    prompt = () if row.get("prompt") is None else messages(row["prompt"], "prompt", allow_empty=True)
    chosen = messages(required(row, "chosen"), "chosen")
    rejected = messages(required(row, "rejected"), "rejected")
    return [make_record(ctx, line, prompt, chosen, rejected, row_mu(row), optional_number(row, "margin"))]


def read_trl(
    path: str | Path, *, skip_bad_rows: bool = False, annotator_id: str = "dataset", source: str | None = None
) -> ImportReport[PreferenceRecord]:
    """Read a TRL standard preference file (JSON Lines, plain-text rows).

    Rows are ``{"prompt", "chosen", "rejected"}`` strings with an optional
    ``"margin"`` number and an optional ``"mu"``; without ``"prompt"`` (TRL's
    implicit-prompt form) the prompt is ``""`` and the whole texts are the
    completions. Blank lines are ignored.

    Args:
        path: the ``.jsonl`` file.
        skip_bad_rows: skip malformed rows and count them in the report
            instead of raising :class:`DataFormatError` at the first one.
        annotator_id: the records' ``annotator_id``.
        source: the records' ``source`` (default: the file's absolute path);
            give a stable name if the file may move, so that a re-import
            still finds the records already stored.
    """
    return read_file(path, parse_trl, skip_bad_rows, annotator_id, source)


def read_trl_conversational(
    path: str | Path, *, skip_bad_rows: bool = False, annotator_id: str = "dataset", source: str | None = None
) -> ImportReport[PreferenceRecord]:
    """Read a TRL conversational preference file: prompt and completions are lists of messages.

    A message is ``{"role": str, "content": str}`` (other keys are dropped).
    Without ``"prompt"`` the prompt is ``()``. Arguments as for :func:`read_trl`.
    """
    return read_file(path, parse_trl_conversational, skip_bad_rows, annotator_id, source)


def trl_row(pair: StoredPair) -> dict[str, Any]:
    """A standard row; chat content is an error; an empty prompt gives the implicit-prompt form."""
    values = (pair.prompt, pair.chosen.completion, pair.rejected.completion)
    if not all(isinstance(v, str) for v in values):
        raise ValueError(
            f"query {pair.query_id}: format 'trl' needs plain-text prompt and completions, this one holds chat "
            "messages (use 'trl_conversational' or 'hh')"
        )
    row: dict[str, Any] = {"prompt": pair.prompt} if pair.prompt != "" else {}
    row["chosen"] = pair.chosen.completion
    row["rejected"] = pair.rejected.completion
    return with_label(row, pair)


def conversational_row(pair: StoredPair) -> dict[str, Any]:
    """A conversational row; plain text becomes one user message (the prompt) or one assistant message."""
    prompt = as_chat(pair.prompt, "user")
    row: dict[str, Any] = {"prompt": as_json(prompt)} if prompt else {}
    row["chosen"] = as_json(as_chat(pair.chosen.completion, "assistant"))
    row["rejected"] = as_json(as_chat(pair.rejected.completion, "assistant"))
    return with_label(row, pair)
