"""Anthropic HH-RLHF transcripts, read and written: ``{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", ...}``.

Both transcripts are split into turns; the turns before the final Assistant
reply become the prompt (chat messages, ``Human`` → ``user``, ``Assistant`` →
``assistant``) and must be the same in both, and each final reply becomes a
one-message completion. A row may carry ``"mu"`` and ``"margin"`` as TRL's do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rlhfkit.feedback.formats.common import ImportReport, PreferenceRecord, StoredPair, TextValue, as_chat, with_label
from rlhfkit.feedback.formats.rows import (
    RowContext,
    RowError,
    make_record,
    optional_number,
    plain_text,
    read_file,
    required,
    row_mu,
)

_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_MARKER = re.compile(r"\n\n(?:Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}
_NAMES = {"user": "Human", "assistant": "Assistant"}


def _turns(text: str, name: str) -> list[tuple[str, str]]:
    parts = _TURN.split(text)
    if parts[0].strip():
        raise RowError(name, "a transcript must start with '\\n\\nHuman:'; found text before the first turn")
    turns = []
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        turns.append((_ROLES[role], content[1:] if content.startswith(" ") else content))
    if not turns:
        raise RowError(name, "no 'Human:' or 'Assistant:' turns in the transcript")
    if turns[-1][0] != "assistant":
        raise RowError(name, "the transcript must end with an 'Assistant:' turn")
    if not turns[-1][1].strip():
        raise RowError(name, "the final Assistant reply is empty")
    if len(turns) < 2:
        raise RowError(name, "no turn before the final Assistant reply")
    return turns


def parse_hh(row: Mapping[str, Any], line: int, ctx: RowContext) -> list[PreferenceRecord]:
    """The record of one pair of transcripts."""
    chosen_turns = _turns(plain_text(required(row, "chosen"), "chosen"), "chosen")
    rejected_turns = _turns(plain_text(required(row, "rejected"), "rejected"), "rejected")
    shared, other = chosen_turns[:-1], rejected_turns[:-1]
    if shared != other:
        diff = next(
            (i for i, (x, y) in enumerate(zip(shared, other, strict=False)) if x != y), min(len(shared), len(other))
        )
        raise RowError(
            "rejected",
            f"the turns before the final Assistant reply differ from 'chosen' from turn {diff + 1} on "
            f"({len(shared)} vs {len(other)} earlier turns)",
        )
    prompt = tuple(MappingProxyType({"role": r, "content": c}) for r, c in shared)
    chosen = (MappingProxyType({"role": "assistant", "content": chosen_turns[-1][1]}),)
    rejected = (MappingProxyType({"role": "assistant", "content": rejected_turns[-1][1]}),)
    return [make_record(ctx, line, prompt, chosen, rejected, row_mu(row), optional_number(row, "margin"))]


def read_hh(
    path: str | Path, *, skip_bad_rows: bool = False, annotator_id: str = "dataset", source: str | None = None
) -> ImportReport[PreferenceRecord]:
    """Read Anthropic HH-RLHF transcripts ``{"chosen": str, "rejected": str}``.

    Each transcript is split at ``"\\n\\nHuman:"`` / ``"\\n\\nAssistant:"`` (one
    space after the colon is dropped). It must end with a non-empty Assistant
    reply, and the turns before it, the shared prompt, must be the same in
    both transcripts, or the row is malformed (field ``"rejected"``). Records
    hold chat messages: the prompt's turns, and each final reply as
    ``({"role": "assistant", "content": reply},)``. Arguments as for
    :func:`~rlhfkit.feedback.formats.trl.read_trl`.
    """
    return read_file(path, parse_hh, skip_bad_rows, annotator_id, source)


def _transcript(pair: StoredPair, completion: TextValue) -> str:
    turns = [*as_chat(pair.prompt, "user"), *as_chat(completion, "assistant")]
    if len(turns) < 2 or turns[-1]["role"] != "assistant" or len(as_chat(completion, "assistant")) != 1:
        raise ValueError(
            f"query {pair.query_id}: format 'hh' needs a non-empty prompt and one assistant message per completion"
        )
    parts = []
    for m in turns:
        if m["role"] not in _NAMES:
            raise ValueError(f"query {pair.query_id}: format 'hh' has no {m['role']!r} turns (only user/assistant)")
        if _MARKER.search(m["content"]):
            raise ValueError(f"query {pair.query_id}: a message contains a 'Human:'/'Assistant:' turn marker")
        parts.append(f"\n\n{_NAMES[m['role']]}: {m['content']}")
    return "".join(parts)


def hh_row(pair: StoredPair) -> dict[str, Any]:
    """A pair of transcripts; the prompt's turns must be user/assistant, each completion one assistant message."""
    row = {
        "chosen": _transcript(pair, pair.chosen.completion),
        "rejected": _transcript(pair, pair.rejected.completion),
    }
    return with_label(row, pair)
