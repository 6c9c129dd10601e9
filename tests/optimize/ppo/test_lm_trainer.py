"""KL-regularised PPO for a language model: the config's checks, the adaptive beta read back from the logs, and
a tiny GPT-2 that raises a toy reward while its KL to the reference stays bounded. (Token rewards, masked GAE and
the masked PPO core, by hand: tests/optimize/ppo/test_loss.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from optimize_helpers import LearnedReward, tiny_policy, vowel_share
from transformers import PreTrainedTokenizerFast

from rlhfkit.optimize.kl import KLConfig
from rlhfkit.optimize.ppo.lm_trainer import TextPPOConfig, TextPPOTrainer
from rlhfkit.tasks import text as text_task

# -- config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompts_per_step": 4, "minibatch_size": 8}, "minibatch_size must be in \\[1, prompts_per_step\\]"),
        ({"gamma": 0.0}, "gamma must be in \\(0, 1\\]"),
    ],
)
def test_config_is_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TextPPOConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"adaptive": True, "beta": 0.0}, "beta must be > 0 and finite when adaptive"),
        ({"beta": -0.1}, "beta must be >= 0"),
        ({"target": 0.0}, "target must be > 0"),
    ],
)
def test_the_kl_settings_are_validated(kwargs: dict[str, Any], message: str) -> None:
    """The KL to the reference is the run's shared [kl] section (KLConfig), the same as a control run's."""
    with pytest.raises(ValueError, match=message):
        KLConfig(**kwargs)


# -- end to end on a tiny GPT-2 ---------------------------------------------------------


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The fixed-seed runs below reproduce their numbers only at a fixed thread count (float sums differ)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _trainer(tokenizer: PreTrainedTokenizerFast, kl: KLConfig, **overrides: Any) -> TextPPOTrainer:
    policy = tiny_policy(tokenizer, value_head=True)
    ref = policy.frozen_copy()
    settings: dict[str, Any] = {
        "prompts_per_step": 16,
        "max_new_tokens": 8,
        "minibatch_size": 8,
        "update_epochs": 4,
        "lr": 5e-4,
    }
    settings.update(overrides)
    return TextPPOTrainer(policy, ref, TextPPOConfig(**settings), seed=0, kl=kl)


KL_TARGET = 8.0
"""Nats per completion of 8 tokens (1 nat per token). With beta = 0.7 on the learned reward the runs below peak at
2.4 (k1) and 6.9 (k3); without the penalty (beta = 0) the same run reaches 25.1."""


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_ppo_raises_the_learned_reward_while_the_kl_stays_below_target(
    estimator: str, policy_tokenizer: PreTrainedTokenizerFast, learned_vowel_reward: LearnedReward, one_thread: None
) -> None:
    trainer = _trainer(policy_tokenizer, KLConfig(beta=0.7, estimator=estimator))  # type: ignore[arg-type]
    prompts = text_task.prompts()
    scorer = learned_vowel_reward.scorer
    before = trainer.policy.generate(prompts, max_new_tokens=8, n_per_prompt=8, seed=5)
    logs = trainer.train(prompts, scorer, 40)
    after = trainer.policy.generate(prompts, max_new_tokens=8, n_per_prompt=8, seed=5)
    owners = [prompts[int(j)] for j in before.prompt_index]
    learned = [float(scorer(owners, b.completions).mean()) for b in (before, after)]
    true = [float(vowel_share(owners, b.completions).mean()) for b in (before, after)]
    max_kl = max(max(log["kl_k1"], log["kl_k3"]) for log in logs)
    print(
        f"{estimator}: learned reward {learned[0]:.3f} -> {learned[1]:.3f}, true {true[0]:.3f} -> {true[1]:.3f}, "
        f"max kl per completion {max_kl:.2f}"
    )
    # Seen (1 thread): k1 learned 0.48 -> 1.92, true 0.284 -> 0.433, max KL 2.4 nats per completion;
    # k3 learned 0.48 -> 2.40, true 0.284 -> 0.515, max KL 6.9. k3 moves further at the same beta: as a
    # reward its own-token penalty barely pulls back (see TextPPOTrainer), so it is held less tightly, but held.
    assert learned[1] >= learned[0] + 1.0, learned
    assert true[1] >= true[0] + 0.05, true  # the learned reward carried the human's preference
    assert max_kl < KL_TARGET, max_kl
    # The bookkeeping: the logged KL is the chosen estimate, the objective is score - beta * KL per completion.
    for log in logs:
        assert log["kl"] == log[f"kl_{estimator}"]
        assert log["objective"] == pytest.approx(log["reward"] - log["beta"] * log["kl"], abs=1e-5)
        assert log["beta"] == 0.7
    assert trainer.generated_tokens == round(sum(16 * log["length"] for log in logs))
    assert logs[-1]["generated_tokens"] == trainer.generated_tokens


def test_without_the_penalty_the_same_run_leaves_the_target(
    policy_tokenizer: PreTrainedTokenizerFast, learned_vowel_reward: LearnedReward, one_thread: None
) -> None:
    logs = _trainer(policy_tokenizer, KLConfig(beta=0.0)).train(text_task.prompts(), learned_vowel_reward.scorer, 40)
    max_kl = max(log["kl_k1"] for log in logs)
    print("beta = 0: max kl per completion", max_kl)
    assert max_kl > 1.5 * KL_TARGET, max_kl  # seen: 25.1, so the bound above is the penalty's doing


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_adaptive_beta_follows_the_controller(
    estimator: str, policy_tokenizer: PreTrainedTokenizerFast, one_thread: None
) -> None:
    # A large learning rate drives the KL from 0 past a small target within a few steps. The target and the
    # horizon are per token (the [kl] section means the same in every domain): 1 nat per 8-token completion.
    target, horizon = 1.0 / 8, 64.0 * 8
    kl = KLConfig(beta=0.1, estimator=estimator, adaptive=True, target=target, horizon=horizon)  # type: ignore[arg-type]
    trainer = _trainer(policy_tokenizer, kl, lr=3e-3)
    logs = trainer.train(text_task.prompts(), vowel_share, 15)
    betas = [log["beta"] for log in logs] + [trainer.kl.beta]
    assert betas[0] == 0.1
    for i, log in enumerate(logs):
        # Ziegler et al. (2019): e = clip(KL / target - 1, -0.2, 0.2); beta <- beta * (1 + e * n / horizon),
        # KL per token over the step's n real tokens.
        assert log["kl_per_token"] == pytest.approx(log["kl"] * 16 / log["tokens"], rel=1e-6)
        e = min(max(log["kl_per_token"] / target - 1.0, -0.2), 0.2)
        assert betas[i + 1] == pytest.approx(betas[i] * (1.0 + e * log["tokens"] / horizon), rel=1e-12)
        assert (betas[i + 1] > betas[i]) == (log["kl_per_token"] > target)
    above = [log["kl_per_token"] > target for log in logs]
    print(estimator, "kl", [round(log["kl"], 2) for log in logs], "beta", [round(b, 4) for b in betas])
    # Seen: below target for the first 4 steps (beta shrinks), then above it for most of the rest (beta grows).
    assert not any(above[:2]) and sum(above[5:]) >= 6, above
    assert trainer.kl.beta > min(betas)
