"""Session fixtures for the optimiser tests: the policies' tokenizer and a learned text reward."""

from __future__ import annotations

import pytest
from optimize_helpers import LearnedReward, fit_learned_vowel_reward
from transformers import PreTrainedTokenizerFast

from rlhfkit.models.text_builders import train_tiny_tokenizer
from rlhfkit.tasks import text as text_task


@pytest.fixture(scope="session")
def policy_tokenizer() -> PreTrainedTokenizerFast:
    return train_tiny_tokenizer(text_task.corpus(300), vocab_size=300)


@pytest.fixture(scope="session")
def learned_vowel_reward(policy_tokenizer: PreTrainedTokenizerFast) -> LearnedReward:
    """See :func:`optimize_helpers.fit_learned_vowel_reward` (fitted once per test session)."""
    return fit_learned_vowel_reward(policy_tokenizer)
