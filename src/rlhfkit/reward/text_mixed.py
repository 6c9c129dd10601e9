"""A transformer text reward model in the mixed-kind fit: the text loop's reward for every kind of feedback.

:class:`SequenceRewardModel` lets ``reward/mixed.py``'s :func:`~rlhfkit.reward.mixed.fit_mixed`
train the same ``AutoModelForSequenceClassification`` that the text loop
optimises the policy against (and scores with
:class:`~rlhfkit.reward.text_fit.RewardModelScorer`), so rankings, ratings,
labels, corrections and language train the transformer itself, not a stand-in.
Each step scores only the completions its minibatch touches, grouped by prompt
so each prompt is encoded once (:func:`~rlhfkit.reward.text.group_rewards`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rlhfkit.reward.text import PromptGroup, group_rewards
from rlhfkit.reward.text_fit import completion_token_ids, prompt_token_ids, render
from rlhfkit.types import Content, Text

Encoded = list[tuple[tuple[int, ...], tuple[int, ...]]]
"""Per item: (prompt token ids, completion token ids)."""


class SequenceRewardModel(nn.Module):
    """Wraps a sequence classifier and its tokenizer as an item reward model (``reward/mixed.py``).

    Returns have a leading ensemble axis of size 1: ``(1, n)``.
    """

    size = 1

    def __init__(self, model: nn.Module, tokenizer: Any) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer

    def encode(self, items: Sequence[Content]) -> Encoded:
        out: Encoded = []
        for x in items:
            if not isinstance(x, Text) or not isinstance(x.completion, str):
                raise TypeError("a SequenceRewardModel scores texts with plain-string completions")
            prompt = render(self.tokenizer, x.prompt if isinstance(x.prompt, str) else tuple(x.prompt), as_prompt=True)
            out.append((prompt_token_ids(self.tokenizer, prompt), completion_token_ids(self.tokenizer, x.completion)))
        return out

    def set_stats(self, encoded: Encoded) -> None:
        """Nothing to standardise: the transformer reads tokens."""

    def returns(self, encoded: Encoded, idx: torch.Tensor | None = None) -> torch.Tensor:
        rows = list(range(len(encoded))) if idx is None else [int(i) for i in idx]
        by_prompt: dict[tuple[int, ...], list[int]] = {}
        for j, i in enumerate(rows):
            by_prompt.setdefault(encoded[i][0], []).append(j)
        groups = [
            PromptGroup(prompt, tuple(encoded[rows[j]][1] for j in js), (), ()) for prompt, js in by_prompt.items()
        ]
        rewards = group_rewards(self.model, groups, int(self.tokenizer.pad_token_id))
        out = torch.zeros(len(rows), dtype=rewards[0].dtype if rewards else torch.float32)
        order = torch.tensor([j for js in by_prompt.values() for j in js], dtype=torch.long)
        if len(order):
            out = out.index_put((order,), torch.cat(rewards))
        return out.unsqueeze(0)
