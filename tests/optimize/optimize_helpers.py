"""Helpers for the optimiser tests: a learned text reward (the loop's steps 1 and 2 on a toy preference).

The "human" prefers completions with a larger share of vowels among their letters
(Bradley–Terry with scale 40, so a difference of 0.05 in vowel share is chosen
right 88% of the time). Completions are sampled from the same tiny random
GPT-2 the optimiser tests start from (4 per prompt), every pair within a prompt is
labelled, and a tiny GPT-2 reward model is fitted on them. The optimisers then
maximise that learned reward; the tests also read the true vowel share, so a
rise in the learned reward that the human would not endorse shows up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from rlhfkit.models.text import TextPolicy
from rlhfkit.models.text_batch import Prompt
from rlhfkit.models.text_builders import tiny_gpt2
from rlhfkit.reward.fit import fit_reward
from rlhfkit.reward.fit_files import file_config, pairs_to_answers
from rlhfkit.reward.transformer import RewardModelScorer, SequenceRewardModel, load_reward_model
from rlhfkit.tasks import text as text_task


def vowel_share(prompts: Sequence[Prompt], completions: Sequence[str]) -> np.ndarray:
    """The toy true reward: the share of letters in the completion that are vowels (0 without letters)."""
    out = []
    for c in completions:
        letters = [ch for ch in c.lower() if ch.isalpha()]
        out.append(sum(ch in "aeiou" for ch in letters) / len(letters) if letters else 0.0)
    return np.array(out)


def tiny_policy(tokenizer: PreTrainedTokenizerFast, value_head: bool) -> TextPolicy:
    """The optimiser tests' starting policy: a 1-layer, 64-wide random GPT-2, seed 0."""
    torch.manual_seed(0)
    return TextPolicy(tiny_gpt2(tokenizer, n_layer=1, n_embd=64, n_head=2), tokenizer, value_head=value_head)


@dataclass
class LearnedReward:
    scorer: RewardModelScorer
    heldout_accuracy: float
    n_pairs: int


def fit_learned_vowel_reward(policy_tokenizer: PreTrainedTokenizerFast) -> LearnedReward:
    """A reward model fitted on 1,920 simulated comparisons (480 more held out) of the starting policy's completions."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        policy = tiny_policy(policy_tokenizer, value_head=False)
        prompts = text_task.prompts() * 40  # 400 prompt draws, 4 completions each, 6 pairs per draw
        batch = policy.generate(prompts, max_new_tokens=8, n_per_prompt=4, seed=100)
        owners = [prompts[int(j)] for j in batch.prompt_index]
        true = vowel_share(owners, batch.completions)
        rng = np.random.default_rng(0)
        items: list[tuple[str, str, str, tuple[float, float]]] = []
        held: list[tuple[str, str, str, tuple[float, float]]] = []
        for g in range(len(prompts)):
            rows = range(4 * g, 4 * g + 4)
            for a in rows:
                for b in rows:
                    if a >= b:
                        continue
                    p_a = 1.0 / (1.0 + np.exp(-40.0 * (true[a] - true[b])))
                    mu = (1.0, 0.0) if rng.random() < p_a else (0.0, 1.0)
                    (held if g % 5 == 0 else items).append((owners[a], batch.completions[a], batch.completions[b], mu))
        texts = [t for it in items for t in it[:3]]
        model, tokenizer = load_reward_model("tiny", texts, seed=0)
        metrics = fit_reward(
            SequenceRewardModel(model, tokenizer),
            pairs_to_answers(items, tokenizer),
            pairs_to_answers(held, tokenizer),
            # 10 prompts carry the 1,920 pairs: 2 epochs are 120 steps of up to 32 pairs (held-out accuracy
            # 0.742); 8 epochs over-fit (0.727 with the one reward fit, 0.663 before) now that a prompt's pairs
            # are split across steps
            file_config(epochs=2, lr=1e-3, seed=0),
        )
        return LearnedReward(RewardModelScorer(model, tokenizer), metrics.heldout_accuracy, len(items))
    finally:
        torch.set_num_threads(n_threads)
