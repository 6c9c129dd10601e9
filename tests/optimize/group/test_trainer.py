"""RLOO and GRPO raise a learned reward on a tiny random GPT-2 while the KL to the reference stays small."""

from __future__ import annotations

import pytest
from optimize_helpers import LearnedReward, tiny_policy, vowel_share
from transformers import PreTrainedTokenizerFast

from rlhfkit.optimize.group.trainer import GroupPGConfig, GroupPGTrainer
from rlhfkit.optimize.kl import KLConfig
from rlhfkit.tasks import text as text_task


@pytest.mark.parametrize(("algorithm", "lr"), [("rloo", 1.5e-3), ("grpo", 1.5e-3)])
def test_group_methods_raise_the_learned_reward_with_bounded_kl(
    algorithm: str, lr: float, policy_tokenizer: PreTrainedTokenizerFast, learned_vowel_reward: LearnedReward
) -> None:
    policy = tiny_policy(policy_tokenizer, value_head=False)
    ref = policy.frozen_copy()
    cfg = GroupPGConfig(
        n_per_prompt=4,
        prompts_per_step=4,
        max_new_tokens=8,
        lr=lr,
    )
    kl = KLConfig(beta=0.1, estimator="k3")
    trainer = GroupPGTrainer(policy, ref, cfg, seed=0, algorithm=algorithm, kl=kl)  # type: ignore[arg-type]  # two names
    prompts = text_task.prompts()
    scorer = learned_vowel_reward.scorer
    before = policy.generate(prompts, max_new_tokens=8, n_per_prompt=8, seed=5)
    logs = trainer.train(prompts, scorer, 40)
    after = policy.generate(prompts, max_new_tokens=8, n_per_prompt=8, seed=5)
    owners = [prompts[int(j)] for j in before.prompt_index]
    learned = [float(scorer(owners, b.completions).mean()) for b in (before, after)]
    true = [float(vowel_share(owners, b.completions).mean()) for b in (before, after)]
    max_kl = max(log["kl"] for log in logs)
    print(
        f"{algorithm}: learned reward {learned[0]:.3f} -> {learned[1]:.3f}, true {true[0]:.3f} -> {true[1]:.3f}, "
        f"max kl {max_kl:.3f}"
    )
    # Seen (1 thread): rloo learned 0.48 -> 2.04, true 0.284 -> 0.435, max KL 0.24;
    #                 grpo learned 0.48 -> 1.92, true 0.284 -> 0.446, max KL 0.24.
    kl_target = 0.5  # nats per token
    assert learned[1] >= learned[0] + 1.0, learned
    assert true[1] >= true[0] + 0.05, true  # the learned reward carried the human's preference
    assert max_kl < kl_target
    assert all(log["beta"] == 0.1 for log in logs)  # a fixed beta stays


def test_an_adaptive_beta_follows_the_kl_per_token(policy_tokenizer: PreTrainedTokenizerFast) -> None:
    """The run's shared [kl] with adaptive = true drives the group methods' beta as it drives PPO's."""
    policy = tiny_policy(policy_tokenizer, value_head=False)
    cfg = GroupPGConfig(n_per_prompt=4, prompts_per_step=4, max_new_tokens=8, lr=3e-3)
    target, horizon = 0.05, 200.0
    kl = KLConfig(beta=0.1, estimator="k3", adaptive=True, target=target, horizon=horizon)
    trainer = GroupPGTrainer(policy, policy.frozen_copy(), cfg, seed=0, algorithm="grpo", kl=kl)
    logs = trainer.train(text_task.prompts(), vowel_share, 8)
    betas = [log["beta"] for log in logs] + [trainer.kl.beta]
    assert betas[0] == 0.1
    for i, log in enumerate(logs):
        tokens = 16 * log["length"]  # real tokens of the step's 16 completions
        e = min(max(log["kl"] / target - 1.0, -0.2), 0.2)
        assert betas[i + 1] == pytest.approx(betas[i] * (1.0 + e * tokens / horizon), rel=1e-6)
    assert len(set(betas)) > 1, betas  # it moved
