"""``rlhfkit fit-reward``: a text reward model from a preference file, end to end.

1. read the file in its format (TRL standard or conversational, HH-RLHF, or
   scored completions), detected from its first row unless named;
2. load the model — a folder saved with ``save_pretrained`` (any
   ``AutoModelForSequenceClassification``; a causal LM gets a fresh scalar head)
   or the ``tiny`` preset (a GPT-2-shaped model with a byte-level BPE tokenizer
   trained on the training texts, so nothing is downloaded);
3. group the records by prompt (one prompt encoding per group, all of its
   completions and labelled pairs together — the UltraFeedback shape costs one
   prompt and ``k`` completions, not ``k(k-1)/2`` pairs);
4. fit with the soft-label Bradley–Terry loss, measure held-out accuracy (on
   ``--eval-data``, or on a hash-chosen share of the prompts), and save the model
   with ``save_pretrained`` (safetensors) and ``metrics.json``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2ForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rlhfkit.feedback.formats import DataFormatError, PreferenceRecord, read_preferences
from rlhfkit.files import atomic_write_bytes
from rlhfkit.models.text_builders import ModelFolderError, tiny_gpt2, train_tiny_tokenizer
from rlhfkit.reward.text import (
    PromptGroup,
    TextRewardFitConfig,
    TextRewardMetrics,
    fit_text_reward,
    group_rewards,
    length_batches,
)
from rlhfkit.types import Message

Format = Literal["auto", "trl", "trl_conversational", "hh", "scored"]
TextValue = str | tuple[Message, ...]


def render(tokenizer: PreTrainedTokenizerBase, value: TextValue, as_prompt: bool) -> str:
    """Text of a prompt or completion; chat messages go through the tokenizer's chat template."""
    if isinstance(value, str):
        return value
    messages = [{"role": m["role"], "content": m["content"]} for m in value]
    if as_prompt:
        out = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=bool(messages))
        return out if isinstance(out, str) else ""
    return "".join(m["content"] for m in messages)


LabelledPair = tuple[TextValue, TextValue, TextValue, tuple[float, float]]
"""``(prompt, completion_a, completion_b, mu)``."""


def records_to_groups(records: Sequence[PreferenceRecord], tokenizer: PreTrainedTokenizerBase) -> list[PromptGroup]:
    """One :class:`PromptGroup` per distinct prompt; incomparable records are left out."""
    return pairs_to_groups([(r.prompt, r.chosen, r.rejected, r.mu) for r in records if r.mu is not None], tokenizer)


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, prompt: str) -> tuple[int, ...]:
    """Token ids of a rendered prompt; an empty prompt becomes the bos (or eos) token."""
    ids = tokenizer(prompt, add_special_tokens=True)["input_ids"] if prompt else []
    if not ids:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids = [start]
    return tuple(ids)


def completion_token_ids(tokenizer: PreTrainedTokenizerBase, completion: str) -> tuple[int, ...]:
    """A completion's ids without special tokens, closed by eos so the reward is read where it ends."""
    return (*tokenizer(completion, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id)


def pairs_to_groups(pairs: Sequence[LabelledPair], tokenizer: PreTrainedTokenizerBase) -> list[PromptGroup]:
    """Group labelled pairs by prompt: each prompt encoded once, each distinct completion once."""
    by_prompt: dict[str, tuple[list[str], dict[str, int], list[tuple[int, int]], list[tuple[float, float]]]] = {}
    for prompt_value, a, b, mu in pairs:
        prompt = render(tokenizer, prompt_value, as_prompt=True)
        comps, index, pair_idx, mus = by_prompt.setdefault(prompt, ([], {}, [], []))
        ids = []
        for value in (a, b):
            text = render(tokenizer, value, as_prompt=False)
            if text not in index:
                index[text] = len(comps)
                comps.append(text)
            ids.append(index[text])
        if ids[0] == ids[1]:
            continue  # the same text twice carries no preference
        pair_idx.append((ids[0], ids[1]))
        mus.append((float(mu[0]), float(mu[1])))
    return [
        PromptGroup(
            prompt_token_ids(tokenizer, prompt),
            tuple(completion_token_ids(tokenizer, c) for c in comps),
            tuple(pair_idx),
            tuple(mus),
        )
        for prompt, (comps, _, pair_idx, mus) in by_prompt.items()
        if pair_idx
    ]


class RewardModelScorer:
    """A text reward model as the reward function the optimisers take: ``(prompts, completions) -> (N,)``.

    Prompts are rendered as :func:`render` does (chat prompts through the
    tokenizer's template with the generation prompt), so that the model scores
    exactly what it was fitted on. The completions of one prompt share its
    encoding (one :class:`PromptGroup` per distinct prompt), and batches are cut
    by length under ``max_tokens`` padded positions.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, max_tokens: int = 8192) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    @torch.no_grad()
    def __call__(self, prompts: Sequence[TextValue | Sequence[Message]], completions: Sequence[str]) -> np.ndarray:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions: one prompt per completion")
        self.model.eval()
        rows: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            rows.setdefault(render(self.tokenizer, p if isinstance(p, str) else tuple(p), as_prompt=True), []).append(i)
        groups = [
            PromptGroup(
                prompt_token_ids(self.tokenizer, prompt),
                tuple(completion_token_ids(self.tokenizer, completions[i]) for i in idx),
                (),
                (),
            )
            for prompt, idx in rows.items()
        ]
        order = [idx for idx in rows.values()]
        out = np.zeros(len(completions), dtype=np.float64)
        for batch in length_batches(groups, self.max_tokens):
            rewards = group_rewards(self.model, [groups[g] for g in batch], int(self.tokenizer.pad_token_id))
            for g, r in zip(batch, rewards, strict=True):
                out[order[g]] = r.double().cpu().numpy()
        return out


def _texts(records: Sequence[PreferenceRecord]) -> list[str]:
    out: list[str] = []
    for r in records:
        for value in (r.prompt, r.chosen, r.rejected):
            out.append(value if isinstance(value, str) else " ".join(m["content"] for m in value))
    return out


def load_reward_model(
    model: str, training_texts: Sequence[str], seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A scalar-output sequence classifier and its tokenizer: the ``tiny`` preset or a saved folder."""
    tokenizer: PreTrainedTokenizerBase
    if model == "tiny":
        tokenizer = train_tiny_tokenizer(training_texts, vocab_size=1024)
        config = tiny_gpt2(tokenizer, n_layer=2, n_embd=128, n_head=4, n_positions=512).config
        config.num_labels = 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            reward_model = GPT2ForSequenceClassification(config)
        return reward_model, tokenizer
    path = Path(model)
    if not path.is_dir():
        raise ModelFolderError(f"--model {model!r}: not a preset (tiny) and not a folder saved with save_pretrained")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        reward_model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    except (OSError, ValueError) as e:
        raise ModelFolderError(f"--model {path}: cannot load a model and tokenizer ({e})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    reward_model.config.pad_token_id = tokenizer.pad_token_id
    return reward_model, tokenizer


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
    format: Format = "auto",
    skip_bad_rows: bool = False,
    eval_frac: float = 0.1,
    config: TextRewardFitConfig | None = None,
) -> FitRewardResult:
    """Read, fit, evaluate and save; see the module docstring."""
    config = config or TextRewardFitConfig()
    train_report = read_preferences(data, format, skip_bad_rows)
    eval_report = read_preferences(eval_data, format, skip_bad_rows) if eval_data is not None else None
    records = train_report.records
    if not records:
        bad = f" (all {train_report.skipped} rows skipped as bad)" if train_report.skipped else ""
        raise DataFormatError(str(data), 0, "<file>", f"no usable rows{bad}")
    reward_model, tokenizer = load_reward_model(model, _texts(records), config.seed)
    groups = records_to_groups(records, tokenizer)
    if eval_report is not None:
        train, held = groups, records_to_groups(eval_report.records, tokenizer)
    else:
        train = [g for g in groups if not _held_out(g.prompt_ids, eval_frac, config.seed)]
        held = [g for g in groups if _held_out(g.prompt_ids, eval_frac, config.seed)]
    if not train:
        why = (
            f"all {len(groups)} prompts fell in the held-out share (eval_frac {eval_frac:g})"
            if groups and eval_report is None
            else "every record is incomparable or compares a text with itself"
        )
        raise DataFormatError(str(data), 0, "<file>", f"no usable training pairs: {why}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    metrics: TextRewardMetrics = fit_text_reward(reward_model, train, held, pad, config)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    reward_model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    result = FitRewardResult(
        accuracy=metrics.accuracy,
        n_train=metrics.n_train,
        n_eval=metrics.n_eval,
        pairs_per_second=metrics.pairs_per_second,
        n_prompts=len(train),
        skipped_rows=train_report.skipped + (eval_report.skipped if eval_report else 0),
        incomparable=sum(r.mu is None for r in records),
        epochs=config.epochs,
        steps=len(metrics.losses),
        skipped_eval_rows=eval_report.skipped if eval_report else 0,
    )
    payload: dict[str, Any] = asdict(result)
    payload["accuracy"] = None if np.isnan(result.accuracy) else result.accuracy
    atomic_write_bytes(out_dir / "metrics.json", (json.dumps(payload, indent=2) + "\n").encode())
    return result
