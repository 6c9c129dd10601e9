"""What a text policy samples: prompts, and batches of completions with their log-probs.

A :class:`TextBatch` holds ``B`` sampled completions as tensors (the left-padded
prompt followed by the completion tokens, their masks and the sampler's
log-probs) and as text; :class:`~rlhfkit.models.text.TextPolicy` makes and scores
them. The helpers here are the token-level pieces both sampling and scoring use:
the completion mask (up to the first eos), the positions of left-padded rows, and
the one-uniform-per-row token draw.

Shapes: ``B`` rows, ``P`` the padded prompt length, ``T`` the completion length,
``V`` the vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rlhfkit.types import Message, Text

Prompt = str | Sequence[Message]
"""A prompt: raw text, or a conversation rendered with the tokenizer's chat template."""
TextRewardFn = Callable[[Sequence[Prompt], Sequence[str]], np.ndarray]
"""``reward(prompts, completions) -> (N,)``: one prompt per completion (what the language-model trainers optimise)."""


def completion_mask_from(completion_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """``(B, T)`` mask: 1 for tokens up to and including the first eos of each row, 0 after."""
    is_eos = (completion_ids == eos_token_id).long()
    eos_before = is_eos.cumsum(-1) - is_eos  # number of eos strictly before each position
    return (eos_before == 0).long()


def sample_tokens(logprobs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``(B, V)`` log-probs, drawn with probability ``exp(logprobs)``.

    Inverts the cumulative distribution with one uniform number per row: the
    first ``i`` with ``cdf_i > u * cdf_V``, so a token of probability 0 is never
    drawn. That takes ``B`` random numbers where ``torch.multinomial`` takes
    ``B * V`` (on CPU it races exponentials), which made it a sixth of the
    sampling time for a small model.
    """
    cdf = logprobs.exp().cumsum(-1)
    u = torch.rand((cdf.shape[0], 1), generator=generator, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


def position_ids_from(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions ``(B, L)`` of left-padded rows as ``generate`` assigns them: 0 at the first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


@dataclass
class TextBatch:
    """A batch of sampled completions, ``B`` rows, as tensors and text.

    - ``input_ids``: ``(B, P + T)``, the left-padded prompt followed by the
      completion (pad tokens after a row's eos);
    - ``attention_mask``: ``(B, P + T)``, 0 on prompt padding and after a row's
      first eos (the prompt mask followed by ``completion_mask``);
    - ``prompt_len``: ``P``, the padded prompt length; completions start there;
    - ``completion_mask``: ``(B, T)``, 1 for real completion tokens up to and
      including the first eos, 0 after;
    - ``logp``: ``(B, T)``, the sampler's log-prob of each completion token under
      the full softmax at temperature 1 (0 where ``completion_mask`` is 0);
    - ``completions``: the decoded completions, eos excluded;
    - ``prompt_index``: ``(B,)``, which prompt each row answers (row ``i`` holds
      completion ``i % n`` of prompt ``i // n`` for ``n`` completions per prompt);
    - ``finished``: ``(B,)`` bool, whether the row ended with eos (else it was cut
      at ``max_new_tokens``).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_len: int
    completion_mask: torch.Tensor
    logp: torch.Tensor
    completions: list[str]
    prompt_index: torch.Tensor
    finished: torch.Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def completion_ids(self) -> torch.Tensor:
        """``(B, T)``, the sampled tokens (the PPO actions)."""
        return self.input_ids[:, self.prompt_len :]

    @property
    def lengths(self) -> torch.Tensor:
        """``(B,)``, real completion tokens per row (eos included)."""
        return self.completion_mask.sum(-1)

    def obs(self) -> torch.Tensor:
        """``(B, 3, P + T)`` long: input ids, attention mask and a 0/1 row marking the completion positions.

        This is the observation that :meth:`TextPolicy.log_prob` and
        :meth:`TextPolicy.value` take (the PPO core indexes it along rows).
        """
        region = torch.zeros_like(self.input_ids)
        region[:, self.prompt_len :] = 1
        return torch.stack([self.input_ids, self.attention_mask.long(), region], dim=1)

    def subset(self, rows: torch.Tensor | Sequence[int]) -> TextBatch:
        """The rows ``rows`` of this batch (e.g. a minibatch); ``P`` and ``T`` are kept."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        return TextBatch(
            input_ids=self.input_ids[idx],
            attention_mask=self.attention_mask[idx],
            prompt_len=self.prompt_len,
            completion_mask=self.completion_mask[idx],
            logp=self.logp[idx],
            completions=[self.completions[int(i)] for i in idx],
            prompt_index=self.prompt_index[idx],
            finished=self.finished[idx],
        )

    def to_texts(self, prompts: Sequence[Prompt]) -> list[Text]:
        """One :class:`~rlhfkit.types.Text` record per row, given the prompts passed to ``generate``."""
        return [
            Text(prompt=_freeze(prompts[int(p)]), completion=c, info={"prompt_index": int(p), "finished": bool(f)})
            for p, c, f in zip(self.prompt_index, self.completions, self.finished, strict=True)
        ]


def _freeze(prompt: Prompt) -> str | tuple[Message, ...]:
    return prompt if isinstance(prompt, str) else tuple(prompt)
