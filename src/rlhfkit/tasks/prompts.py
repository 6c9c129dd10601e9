"""A text run's prompts from the user's own file, and the share of them held out for evaluation.

``[text] prompts`` names a JSONL file, one prompt per line: ``{"prompt": "plain text"}`` or
``{"prompt": [{"role": "user", "content": "..."}, ...]}`` (rendered with the tokenizer's chat
template), or a folder saved by ``datasets`` (``Dataset.save_to_disk``) with a ``prompt``
column of either shape. Other fields are ignored. A bad line is one error naming the file,
the line and what is wrong; nothing is half-read.

:func:`split_prompts` holds out ``heldout_frac`` of the prompts, chosen by a hash of the
prompt's text (the same prompts whatever their order or the run's seed): the loop samples
queries and trains on the rest and evaluates on them alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlhfkit.errors import ConfigError
from rlhfkit.models.text_batch import Prompt


class PromptFileError(ConfigError):
    """A prompts file that cannot be read (names the file, the line and the field)."""


def _prompt(value: Any, where: str) -> Prompt:
    if isinstance(value, str):
        if not value.strip():
            raise PromptFileError(f"{where}: field 'prompt' is empty")
        return value
    if isinstance(value, list) and value:
        messages = []
        for i, m in enumerate(value):
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise PromptFileError(
                    f'{where}: field \'prompt\'[{i}]: expected a message {{"role": ..., "content": ...}}, got {m!r}'
                )
            messages.append({"role": m["role"], "content": m["content"]})
        return tuple(messages)
    raise PromptFileError(
        f"{where}: field 'prompt': expected a string or a list of chat messages, got {type(value).__name__}"
    )


def read_prompts(path: str | Path) -> list[Prompt]:
    """Every prompt in a JSONL file or a ``datasets`` folder (see the module docstring)."""
    p = Path(path)
    if p.is_dir():
        return _read_dataset(p)
    if not p.is_file():
        raise PromptFileError(f"text.prompts: {p}: no such file or folder")
    prompts: list[Prompt] = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{p}, line {n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise PromptFileError(f"{where}: not JSON ({e.msg}, column {e.colno})") from None
            if not isinstance(row, dict) or "prompt" not in row:
                raise PromptFileError(f"{where}: expected an object with a field 'prompt'")
            prompts.append(_prompt(row["prompt"], where))
    if not prompts:
        raise PromptFileError(f"{p}: no prompts in the file")
    return prompts


def _read_dataset(folder: Path) -> list[Prompt]:
    from datasets import load_from_disk

    try:
        ds = load_from_disk(str(folder))
    except (FileNotFoundError, ValueError) as e:
        raise PromptFileError(f"text.prompts: {folder}: not a folder saved by datasets ({e})") from None
    if "prompt" not in getattr(ds, "column_names", []):
        raise PromptFileError(f"{folder}: the dataset has no column 'prompt' (columns: {ds.column_names})")
    prompts = [_prompt(v, f"{folder}, row {i}") for i, v in enumerate(ds["prompt"])]
    if not prompts:
        raise PromptFileError(f"{folder}: no prompts in the dataset")
    return prompts


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
        raise PromptFileError(
            f"text.heldout_prompts = {frac}: of {len(prompts)} prompts, {len(held)} would be held out and "
            f"{len(train)} kept for training; both need at least one (more prompts, or another share)"
        )
    return train, held
