"""A text run's prompts from the user's own file, and the share of them held out for evaluation.

``[text] prompts`` names a JSON Lines file, one prompt per line: ``{"prompt": "plain text"}`` or
``{"prompt": [{"role": "user", "content": "..."}, ...]}`` (rendered with the tokenizer's chat
template), or a folder saved by ``datasets`` (``Dataset.save_to_disk``) with a ``prompt``
column of either shape. Other fields are ignored. Rows are read and checked by the same
readers as the preference files (``rows.py``), so a bad row is one
:class:`~rlhfkit.feedback.formats.common.DataFormatError` in their words (``FILE:LINE: field
'prompt': ...``); nothing is half-read.

:func:`split_prompts` holds out ``heldout_frac`` of the prompts, chosen by a hash of the
prompt's text (the same prompts whatever their order or the run's seed): the loop samples
queries and trains on the rest and evaluates on them alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rlhfkit.errors import ConfigError
from rlhfkit.feedback.formats.common import FILE, ROW, DataFormatError
from rlhfkit.feedback.formats.rows import RowError, decode_line, json_lines, messages, plain_text, required
from rlhfkit.models.text_batch import Prompt


def _prompts(where: str, rows: Iterable[tuple[int, Any]]) -> list[Prompt]:
    """The prompt of each ``(line, row)`` (a row as raw bytes or already decoded); errors named after ``where``."""
    prompts: list[Prompt] = []
    for line, item in rows:
        try:
            row = decode_line(item) if isinstance(item, bytes) else item
            if not isinstance(row, Mapping):
                raise RowError(ROW, f"must be a JSON object, got {type(row).__name__}")
            value = required(row, "prompt")
            prompts.append(plain_text(value, "prompt") if isinstance(value, str) else messages(value, "prompt"))
        except RowError as e:
            raise DataFormatError(where, line, e.field, e.message) from None
    if not prompts:
        raise DataFormatError(where, 0, FILE, "holds no prompts")
    return prompts


def read_prompts(path: str | Path) -> list[Prompt]:
    """Every prompt in a JSON Lines file or a ``datasets`` folder (see the module docstring)."""
    p = Path(path)
    if p.is_dir():
        return _read_dataset(p)
    if not p.is_file():
        raise ConfigError(f"text.prompts: {p}: no such file or folder")
    return _prompts(str(p), json_lines(p))


def _read_dataset(folder: Path) -> list[Prompt]:
    from datasets import load_from_disk

    try:
        ds = load_from_disk(str(folder))
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"text.prompts: {folder}: not a folder saved by datasets ({e})") from None
    if "prompt" not in getattr(ds, "column_names", []):
        raise DataFormatError(str(folder), 0, FILE, f"the dataset has no column 'prompt' (columns: {ds.column_names})")
    return _prompts(str(folder), ((i + 1, {"prompt": v}) for i, v in enumerate(ds["prompt"])))


def _key(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps([dict(m) for m in prompt], sort_keys=True)


def is_heldout_prompt(prompt: Prompt, frac: float) -> bool:
    """Whether ``prompt`` is in the held-out share ``frac``, by a hash of its text."""
    digest = hashlib.sha256(_key(prompt).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < frac


def split_prompts(prompts: Sequence[Prompt], frac: float) -> tuple[list[Prompt], list[Prompt]]:
    """``(train, heldout)``: ``frac`` of the prompts held out by hash; each side keeps at least one prompt."""
    train = [p for p in prompts if not is_heldout_prompt(p, frac)]
    held = [p for p in prompts if is_heldout_prompt(p, frac)]
    if not held or not train:
        raise ConfigError(
            f"text.heldout_prompts = {frac}: of {len(prompts)} prompts, {len(held)} would be held out and "
            f"{len(train)} kept for training; both need at least one (more prompts, or another share)"
        )
    return train, held
