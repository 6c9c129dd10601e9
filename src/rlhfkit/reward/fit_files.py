"""``rlhfkit fit-reward``: a text reward model from a preference file, end to end.

1. read the file in its format (TRL standard or conversational, HH-RLHF, or
   scored completions), detected from its first row unless named;
2. load the model — a folder saved with ``save_pretrained`` (any
   ``AutoModelForSequenceClassification``; a causal LM gets a fresh scalar head)
   or the ``tiny`` preset (a GPT-2-shaped model with a byte-level BPE tokenizer
   trained on the training texts, so nothing is downloaded);
3. turn the records into answers (:func:`pairs_to_answers`: one generation per
   distinct completion of a prompt, one comparison per record), so the fit scores
   each prompt once per step for all of its completions — the UltraFeedback shape
   costs one prompt and ``k`` completions, not ``k(k-1)/2`` pairs;
4. fit with the one reward fit (``reward/fit.py``, soft-label Bradley–Terry on the
   transformer, :func:`file_config`'s defaults), measure held-out accuracy (on
   ``--eval-data``, or on a hash-chosen share of the prompts), and save the model
   with ``save_pretrained`` (safetensors) and ``metrics.json``.

With LoRA (``--lora-r``, a :class:`~rlhfkit.models.adapters.MemoryConfig`) only the adapters and
the score head train, and the saved model has the adapters merged in: it loads as a plain model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from rlhfkit.feedback.answers import AnswerSet
from rlhfkit.feedback.formats import DataFormatError, PreferenceRecord, ReadFormat, read_preferences
from rlhfkit.feedback_records import Answer, Comparison
from rlhfkit.files import atomic_write_bytes
from rlhfkit.models.adapters import MemoryConfig, merged, prepare_model
from rlhfkit.reward.config import RewardConfig
from rlhfkit.reward.fit import fit_reward
from rlhfkit.reward.transformer import (
    SequenceRewardModel,
    TextValue,
    load_reward_model,
    prompt_token_ids,
    render,
)
from rlhfkit.types import Generation, Query, Text

FILE_DEFAULTS: dict[str, Any] = {
    "ensemble_size": 1,
    "epochs": 1,
    "lr": 5e-4,
    "weight_decay": 0.0,
    "batch_size": 32,
    "max_tokens": 4096,
    "center_coef": 1e-3,
}
"""``fit-reward``'s reward fit where it differs from :class:`RewardConfig`'s defaults: one transformer, one
epoch at 5e-4, no weight decay (the command's options set epochs, lr, max_tokens, batch_size and seed)."""


def file_config(**fields: Any) -> RewardConfig:
    """``fit-reward``'s config: :data:`FILE_DEFAULTS` with ``fields`` set (``ValueError`` naming a bad one)."""
    return RewardConfig(**{**FILE_DEFAULTS, **fields})


LabelledPair = tuple[TextValue, TextValue, TextValue, tuple[float, float]]
"""``(prompt, completion_a, completion_b, mu)``."""


def _comparison(query_id: str, mu: tuple[float, float], annotator_id: str) -> Comparison:
    a, b = float(mu[0]), float(mu[1])
    answer = {(1.0, 0.0): Answer.A, (0.0, 1.0): Answer.B, (0.5, 0.5): Answer.EQUAL}.get((a, b), Answer.GRADED)
    return Comparison(query_id=query_id, annotator_id=annotator_id, created_at=0.0, answer=answer, mu=(a, b))


def pairs_to_answers(
    pairs: Sequence[LabelledPair], tokenizer: PreTrainedTokenizerBase, annotator_id: str = "dataset"
) -> AnswerSet:
    """Labelled pairs as answers: each distinct completion of a prompt one generation, each pair one comparison.

    Completions given as chat messages become their text; prompts are told apart by
    their rendering (the tokenizer's chat template). A pair of the same text twice
    carries no preference and is left out.
    """
    generations: dict[tuple[str, str], Generation] = {}
    queries: list[Query] = []
    answers: list[Comparison] = []

    def generation(prompt: TextValue, key: str, completion: str) -> str:
        g = generations.get((key, completion))
        if g is None:
            g = Generation(f"g{len(generations)}", 0, "file", Text(prompt, completion))
            generations[(key, completion)] = g
        return g.id

    for prompt, a, b, mu in pairs:
        key = render(tokenizer, prompt, as_prompt=True)
        ids = [generation(prompt, key, render(tokenizer, v, as_prompt=False)) for v in (a, b)]
        if ids[0] == ids[1]:
            continue
        queries.append(Query(f"q{len(queries)}", (ids[0], ids[1]), 0, created_at=0.0))
        answers.append(_comparison(queries[-1].id, mu, annotator_id))
    return AnswerSet.of(answers, queries, generations.values())


def records_to_answers(records: Sequence[PreferenceRecord], tokenizer: PreTrainedTokenizerBase) -> AnswerSet:
    """:func:`pairs_to_answers` of the records that carry a preference (incomparable ones are left out)."""
    return pairs_to_answers([(r.prompt, r.chosen, r.rejected, r.mu) for r in records if r.mu is not None], tokenizer)


def _texts(records: Sequence[PreferenceRecord]) -> list[str]:
    out: list[str] = []
    for r in records:
        for value in (r.prompt, r.chosen, r.rejected):
            out.append(value if isinstance(value, str) else " ".join(m["content"] for m in value))
    return out


def _n_prompts(answers: AnswerSet, tokenizer: PreTrainedTokenizerBase) -> int:
    """Distinct prompts the answers are about."""
    shown = {g for f in answers.feedback for g in answers.queries[f.query_id].generation_ids}
    return len({render(tokenizer, answers.generations[g].text.prompt, as_prompt=True) for g in shown})


def _held_out(prompt_ids: tuple[int, ...], frac: float, seed: int) -> bool:
    h = hashlib.sha256(f"{seed}:{prompt_ids}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < frac


@dataclass(frozen=True)
class FitRewardResult:
    """What ``rlhfkit fit-reward`` reports and writes to ``metrics.json``."""

    accuracy: float
    n_train: int
    n_eval: int
    pairs_per_second: float
    n_prompts: int
    skipped_rows: int
    incomparable: int
    epochs: int
    steps: int
    """Optimiser steps taken (all epochs)."""
    skipped_eval_rows: int = 0
    """Of ``skipped_rows``, those of the held-out file."""


def fit_reward_files(
    data: str | Path,
    model: str,
    out: str | Path,
    eval_data: str | Path | None = None,
    format: ReadFormat = "auto",
    skip_bad_rows: bool = False,
    eval_frac: float = 0.1,
    config: RewardConfig | None = None,
    memory: MemoryConfig | None = None,
) -> FitRewardResult:
    """Read, fit, evaluate and save; see the module docstring.

    Without ``eval_data`` the held-out share is chosen by prompt (a hash of its
    tokens and ``config.seed``), so no held-out pair shares a prompt with a
    training pair; ``config.holdout_frac`` is not used here (``eval_frac`` is). ``memory``:
    LoRA, activation checkpointing, bf16 for the model (default: none).
    """
    config = config or file_config()
    train_report = read_preferences(data, format, skip_bad_rows)
    eval_report = read_preferences(eval_data, format, skip_bad_rows) if eval_data is not None else None
    records = train_report.records
    if not records:
        bad = f" (all {train_report.skipped} rows skipped as bad)" if train_report.skipped else ""
        raise DataFormatError(str(data), 0, "<file>", f"no usable rows{bad}")
    loaded, tokenizer = load_reward_model(model, _texts(records), config.seed)
    reward_model = prepare_model(loaded, memory or MemoryConfig(), "seq_cls", "fit-reward")
    if eval_report is not None:
        train, held = records_to_answers(records, tokenizer), records_to_answers(eval_report.records, tokenizer)
    else:
        prompt_ids = {}
        for r in records:
            rendered = render(tokenizer, r.prompt, as_prompt=True)
            if rendered not in prompt_ids:
                prompt_ids[rendered] = _held_out(prompt_token_ids(tokenizer, rendered), eval_frac, config.seed)
        every = records_to_answers(records, tokenizer)

        def held_out(f: Any) -> bool:
            prompt = every.shown(f)[0]
            assert isinstance(prompt, Text)
            return prompt_ids[render(tokenizer, prompt.prompt, as_prompt=True)]

        train, held = every.select(lambda f: not held_out(f)), every.select(held_out)
    if len(train) == 0:
        why = (
            f"all {_n_prompts(held, tokenizer)} prompts fell in the held-out share (eval_frac {eval_frac:g})"
            if len(held) and eval_report is None
            else "every record is incomparable or compares a text with itself"
        )
        raise DataFormatError(str(data), 0, "<file>", f"no usable training pairs: {why}")
    metrics = fit_reward(SequenceRewardModel(reward_model, tokenizer), train, held, config)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged(reward_model).save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    result = FitRewardResult(
        accuracy=metrics.heldout_accuracy,
        n_train=metrics.n_train,
        n_eval=metrics.n_heldout,
        pairs_per_second=metrics.n_train * config.epochs / metrics.seconds if metrics.seconds > 0 else float("nan"),
        n_prompts=_n_prompts(train, tokenizer),
        skipped_rows=train_report.skipped + (eval_report.skipped if eval_report else 0),
        incomparable=sum(r.mu is None for r in records),
        epochs=config.epochs,
        steps=metrics.steps,
        skipped_eval_rows=eval_report.skipped if eval_report else 0,
    )
    payload: dict[str, Any] = asdict(result)
    payload["accuracy"] = None if np.isnan(result.accuracy) else result.accuracy
    atomic_write_bytes(out_dir / "metrics.json", (json.dumps(payload, indent=2) + "\n").encode())
    return result
