"""RLOO and GRPO improve a reward on a tiny random GPT-2 while the KL to the reference stays small."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from rlhfkit.domains.text import Prompt, TextPolicy, tiny_gpt2, train_tiny_tokenizer
from rlhfkit.optimize.text_rl import GroupPGConfig, GroupPGTrainer
from rlhfkit.tasks import text as text_task


def vowel_share(prompts: Sequence[Prompt], completions: Sequence[str]) -> np.ndarray:
    """A toy reward: the share of letters in the completion that are vowels."""
    out = []
    for c in completions:
        letters = [ch for ch in c.lower() if ch.isalpha()]
        out.append(sum(ch in "aeiou" for ch in letters) / len(letters) if letters else 0.0)
    return np.array(out)


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]  # a transformers tokenizer
    return train_tiny_tokenizer(text_task.corpus(300), vocab_size=300)


# GRPO standardises advantages within a group, so its steps are larger at the same learning rate.
@pytest.mark.parametrize(("algorithm", "lr"), [("rloo", 2e-3), ("grpo", 1e-3)])
def test_group_methods_raise_the_reward_with_bounded_kl(algorithm: str, lr: float, tokenizer) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    policy = TextPolicy(tiny_gpt2(tokenizer, n_layer=1, n_embd=64, n_head=2), tokenizer, value_head=False)
    ref = policy.frozen_copy()
    cfg = GroupPGConfig(
        algorithm=algorithm,  # type: ignore[arg-type]  # parametrised with the two valid names
        n_per_prompt=4,
        prompts_per_step=4,
        max_new_tokens=8,
        learning_rate=lr,
        beta=0.1,
    )
    trainer = GroupPGTrainer(policy, ref, cfg, seed=0)
    prompts = text_task.prompts()
    logs = trainer.train(prompts, vowel_share, 40)
    first = np.mean([log["reward"] for log in logs[:5]])
    last = np.mean([log["reward"] for log in logs[-5:]])
    kl_target = 0.5  # nats per token
    print(algorithm, "reward", first, "->", last, "max kl", max(log["kl"] for log in logs))
    assert last >= first + 0.08, (first, last)
    assert max(log["kl"] for log in logs) < kl_target
