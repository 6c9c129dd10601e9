"""KL-regularised PPO for text: token rewards and masked GAE by hand, the masked PPO core, the adaptive beta
read back from the logs, and a tiny GPT-2 that raises a toy reward while its KL to the reference stays bounded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from optimize_helpers import LearnedReward, tiny_policy, vowel_share
from torch import nn
from torch.distributions import Categorical
from transformers import PreTrainedTokenizerFast

from rlhfkit.optimize.ppo import PPOConfig, ppo_update
from rlhfkit.optimize.text_ppo import TextPPOConfig, TextPPOTrainer, token_gae, token_rewards
from rlhfkit.tasks import text as text_task


def _mask(lengths: list[int], T: int) -> torch.Tensor:
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]


# -- exact maths --------------------------------------------------------------------


def test_token_rewards_by_hand() -> None:
    scores = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    kl = torch.tensor(
        [
            [0.1, 0.2, 0.3, 0.4],
            [0.5, -0.1, 0.7, 0.9],  # k1 may be negative per token: that token's reward is then positive
            [9.0, 9.0, 9.0, 9.0],  # whatever sits after the end is ignored
        ],
        dtype=torch.float64,
    )
    mask = _mask([2, 4, 1], 4)
    rewards = token_rewards(scores, kl, mask, beta=0.5)
    expected = [
        [-0.05, -0.1 + 1.0, 0.0, 0.0],  # -beta * kl on the 2 real tokens, the score at the last one
        [-0.25, 0.05, -0.35, -0.45 + 2.0],  # a full-length row: the score at position T - 1
        [-4.5 - 0.5, 0.0, 0.0, 0.0],  # a one-token completion (eos at once): penalty and score together
    ]
    assert rewards.tolist() == [pytest.approx(row, abs=1e-12) for row in expected]
    # Summed over a row: score - beta * (the completion's KL).
    assert rewards.sum(-1).tolist() == pytest.approx([1.0 - 0.5 * 0.3, 2.0 - 0.5 * 2.0, -0.5 - 0.5 * 9.0], abs=1e-12)


def test_token_rewards_rejects_a_mask_with_holes() -> None:
    holes = torch.tensor([[True, False, True]])
    with pytest.raises(ValueError, match="prefix"):
        token_rewards(torch.zeros(1), torch.zeros(1, 3), holes, beta=0.1)


def test_token_gae_over_a_masked_sequence_by_hand() -> None:
    gamma, lam = 0.9, 0.8  # gamma * lambda = 0.72
    rewards = torch.tensor([[0.1, -0.2, 1.5, 7.0], [0.0, 0.0, 0.0, 2.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.4, 1.0, 99.0], [1.0, 1.2, 1.5, 1.8]], dtype=torch.float64)
    mask = _mask([3, 4], 4)  # row 0 ends at token 2: its reward 7.0 and value 99.0 at token 3 are padding
    adv, ret = token_gae(rewards, values, mask, gamma, lam)

    # Row 0. The last real token is terminal: no bootstrap from V = 99.
    d2 = 1.5 - 1.0  # 0.5
    d1 = -0.2 + 0.9 * 1.0 - 0.4  # 0.3
    d0 = 0.1 + 0.9 * 0.4 - 0.5  # -0.04
    a2 = d2  # 0.5
    a1 = d1 + 0.72 * a2  # 0.66
    a0 = d0 + 0.72 * a1  # 0.4352
    assert [a0, a1, a2] == pytest.approx([0.4352, 0.66, 0.5], abs=1e-12)
    assert adv[0].tolist() == pytest.approx([a0, a1, a2, 0.0], abs=1e-12)
    assert ret[0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.4, a2 + 1.0, 0.0], abs=1e-12)

    # Row 1, a full-length completion: the score arrives at token 3 and nothing follows it.
    d3 = 2.0 - 1.8  # 0.2
    d2 = 0.9 * 1.8 - 1.5  # 0.12
    d1 = 0.9 * 1.5 - 1.2  # 0.15
    d0 = 0.9 * 1.2 - 1.0  # 0.08
    b3 = d3
    b2 = d2 + 0.72 * b3  # 0.264
    b1 = d1 + 0.72 * b2  # 0.34008
    b0 = d0 + 0.72 * b1  # 0.3248576
    assert [b0, b1, b2, b3] == pytest.approx([0.3248576, 0.34008, 0.264, 0.2], abs=1e-12)
    assert adv[1].tolist() == pytest.approx([b0, b1, b2, b3], abs=1e-12)
    assert ret[1].tolist() == pytest.approx([b0 + 1.0, b1 + 1.2, b2 + 1.5, b3 + 1.8], abs=1e-12)

    # gamma = lambda = 1: returns are the rewards-to-go within the completion, zero after it.
    _, mc = token_gae(rewards, values, mask, 1.0, 1.0)
    assert mc.tolist() == [pytest.approx([1.4, 1.3, 1.5, 0.0], abs=1e-12), pytest.approx([2.0] * 4, abs=1e-12)]


class TokenCategorical(nn.Module):
    """One categorical over 3 tokens at every position and a scalar value; obs has the shape of the actions."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))
        self.v = nn.Parameter(torch.tensor(0.5))

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = Categorical(logits=self.logits.expand(*actions.shape, 3))
        return d.log_prob(actions), d.entropy()

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v.expand(obs.shape)


def test_masked_ppo_update_equals_the_update_on_real_tokens_only() -> None:
    g = torch.Generator().manual_seed(0)
    B, T = 6, 4
    mask = _mask([4, 2, 3, 1, 4, 2], T)
    actions = torch.randint(0, 3, (B, T), generator=g)
    advantages = torch.randn(B, T, generator=g, dtype=torch.float64).float()
    returns = torch.randn(B, T, generator=g, dtype=torch.float64).float()
    with torch.no_grad():
        old_logp, _ = TokenCategorical().log_prob(actions, actions)
    cfg = PPOConfig(update_epochs=3, minibatch_size=B, max_grad_norm=1e9)  # one minibatch: order-free

    # Padding holds garbage (nan log-probs, huge advantages and returns): with the mask it must not matter.
    garbage = TokenCategorical()
    opt = torch.optim.SGD(garbage.parameters(), lr=0.3)
    stats = ppo_update(
        garbage,
        opt,
        torch.zeros(B, T),
        actions,
        torch.where(mask, old_logp, torch.nan),
        torch.where(mask, advantages, 1e6),
        torch.where(mask, returns, -1e6),
        cfg,
        mask=mask,
    )
    # The same update on the 16 real tokens as a flat batch without a mask.
    flat = TokenCategorical()
    opt = torch.optim.SGD(flat.parameters(), lr=0.3)
    n_real = int(mask.sum())
    flat_cfg = PPOConfig(update_epochs=3, minibatch_size=n_real, max_grad_norm=1e9)
    flat_stats = ppo_update(
        flat, opt, torch.zeros(n_real), actions[mask], old_logp[mask], advantages[mask], returns[mask], flat_cfg
    )
    assert torch.allclose(garbage.logits, flat.logits, atol=1e-6)
    assert torch.allclose(garbage.v, flat.v, atol=1e-6)
    assert garbage.logits.detach().ne(torch.tensor([0.3, -0.2, 0.1])).all()  # it did move
    for field in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac"):
        assert getattr(stats, field) == pytest.approx(getattr(flat_stats, field), abs=1e-6), field


# -- config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kl_estimator": "k2"}, "kl_estimator must be 'k1' or 'k3'"),
        ({"prompts_per_step": 4, "minibatch_size": 8}, "minibatch_size must be in \\[1, prompts_per_step\\]"),
        ({"adaptive_kl": True, "beta": 0.0}, "beta must be > 0 when adaptive_kl"),
        ({"beta": -0.1}, "beta must be >= 0"),
        ({"kl_target": 0.0}, "kl_target must be > 0"),
        ({"gamma": 0.0}, "gamma must be in \\(0, 1\\]"),
    ],
)
def test_config_is_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TextPPOConfig(**kwargs)


# -- end to end on a tiny GPT-2 ---------------------------------------------------------


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The fixed-seed runs below reproduce their numbers only at a fixed thread count (float sums differ)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _trainer(tokenizer: PreTrainedTokenizerFast, **overrides: Any) -> TextPPOTrainer:
    policy = tiny_policy(tokenizer, value_head=True)
    ref = policy.frozen_copy()
    settings: dict[str, Any] = {
        "prompts_per_step": 16,
        "max_new_tokens": 8,
        "minibatch_size": 8,
        "update_epochs": 4,
        "learning_rate": 5e-4,
        "beta": 0.1,
    }
    settings.update(overrides)
    return TextPPOTrainer(policy, ref, TextPPOConfig(**settings), seed=0)


KL_TARGET = 8.0
"""Nats per completion of 8 tokens (1 nat per token). With beta = 0.7 on the learned reward the runs below peak at
2.4 (k1) and 6.9 (k3); without the penalty (beta = 0) the same run reaches 25.1."""


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_ppo_raises_the_learned_reward_while_the_kl_stays_below_target(
    estimator: str, policy_tokenizer: PreTrainedTokenizerFast, learned_vowel_reward: LearnedReward, one_thread: None
) -> None:
    trainer = _trainer(policy_tokenizer, kl_estimator=estimator, beta=0.7)
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
    logs = _trainer(policy_tokenizer, beta=0.0).train(text_task.prompts(), learned_vowel_reward.scorer, 40)
    max_kl = max(log["kl_k1"] for log in logs)
    print("beta = 0: max kl per completion", max_kl)
    assert max_kl > 1.5 * KL_TARGET, max_kl  # seen: 25.1, so the bound above is the penalty's doing


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_adaptive_beta_follows_the_controller(
    estimator: str, policy_tokenizer: PreTrainedTokenizerFast, one_thread: None
) -> None:
    # A large learning rate drives the KL from 0 past a small target within a few steps.
    target, horizon, n = 1.0, 64.0, 16
    trainer = _trainer(
        policy_tokenizer,
        kl_estimator=estimator,
        learning_rate=3e-3,
        adaptive_kl=True,
        kl_target=target,
        kl_horizon=horizon,
    )
    logs = trainer.train(text_task.prompts(), vowel_share, 15)
    betas = [log["beta"] for log in logs] + [trainer.kl.beta]
    assert betas[0] == 0.1
    for i, log in enumerate(logs):
        # Ziegler et al. (2019): e = clip(KL / target - 1, -0.2, 0.2); beta <- beta * (1 + e * n / horizon).
        e = min(max(log["kl"] / target - 1.0, -0.2), 0.2)
        assert betas[i + 1] == pytest.approx(betas[i] * (1.0 + e * n / horizon), rel=1e-12)
        assert (betas[i + 1] > betas[i]) == (log["kl"] > target)
    above = [log["kl"] > target for log in logs]
    print(estimator, "kl", [round(log["kl"], 2) for log in logs], "beta", [round(b, 4) for b in betas])
    # Seen: below target for the first 4 steps (beta shrinks), then above it for most of the rest (beta grows).
    assert not any(above[:2]) and sum(above[5:]) >= 6, above
    assert trainer.kl.beta > min(betas)
