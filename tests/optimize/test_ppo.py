"""Tests for rlhfkit.optimize.ppo: GAE worked by hand, and the clipped-surrogate update on a tiny policy."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Categorical

from rlhfkit.optimize.ppo import PPOConfig, compute_gae, ppo_update

GAMMA = 0.9
LAM = 0.8  # gamma * lambda = 0.72


def _col(*xs: float) -> torch.Tensor:
    """A (T, 1) column: T steps of one env."""
    return torch.tensor(xs, dtype=torch.float64)[:, None]


def _flags(*xs: bool) -> torch.Tensor:
    return torch.tensor(xs)[:, None]


def test_gae_without_episode_ends() -> None:
    rewards = _col(1.0, 0.0, 2.0)
    values = _col(0.5, 1.0, 1.5)
    next_values = _col(1.0, 1.5, 2.0)  # V(s_1), V(s_2) and the bootstrap V(s_3)
    no = _flags(False, False, False)
    adv, ret = compute_gae(rewards, values, next_values, no, no, GAMMA, LAM)
    # delta_t = r_t + gamma V(s_{t+1}) - V(s_t)
    d2 = 2.0 + 0.9 * 2.0 - 1.5  # 2.3
    d1 = 0.0 + 0.9 * 1.5 - 1.0  # 0.35
    d0 = 1.0 + 0.9 * 1.0 - 0.5  # 1.4
    # A_t = delta_t + gamma lambda A_{t+1}
    a2 = d2  # 2.3
    a1 = d1 + 0.72 * a2  # 0.35 + 1.656 = 2.006
    a0 = d0 + 0.72 * a1  # 1.4 + 1.44432 = 2.84432
    assert [a0, a1, a2] == pytest.approx([2.84432, 2.006, 2.3], abs=1e-12)
    assert adv.shape == (3, 1)
    assert adv[:, 0].tolist() == pytest.approx([a0, a1, a2], abs=1e-12)
    assert ret[:, 0].tolist() == pytest.approx([a0 + 0.5, a1 + 1.0, a2 + 1.5], abs=1e-12)


def test_gae_with_truncation_and_termination() -> None:
    rewards = _col(1.0, 0.0, 2.0)
    values = _col(0.5, 1.0, 1.5)
    # Step 1 is truncated: its successor is the final observation of the episode, V = 3.0 (not values[2],
    # which belongs to the next episode's first state). Step 2 terminates: its next value 7.0 is ignored.
    next_values = _col(1.0, 3.0, 7.0)
    terminated = _flags(False, False, True)
    ended = _flags(False, True, True)
    adv, ret = compute_gae(rewards, values, next_values, terminated, ended, GAMMA, LAM)
    d2 = 2.0 + 0.0 - 1.5  # terminal: no bootstrap -> 0.5
    d1 = 0.0 + 0.9 * 3.0 - 1.0  # truncated: bootstraps from V(final obs) -> 1.7
    d0 = 1.0 + 0.9 * 1.0 - 0.5  # 1.4
    a2 = d2  # 0.5
    a1 = d1  # the trace stops at an episode end: 1.7 (not 1.7 + 0.72 * 0.5)
    a0 = d0 + 0.72 * a1  # 1.4 + 1.224 = 2.624
    assert [a0, a1, a2] == pytest.approx([2.624, 1.7, 0.5], abs=1e-12)
    assert adv[:, 0].tolist() == pytest.approx([a0, a1, a2], abs=1e-12)
    assert ret[:, 0].tolist() == pytest.approx([a0 + 0.5, a1 + 1.0, a2 + 1.5], abs=1e-12)


def test_gae_termination_in_the_middle() -> None:
    rewards = _col(1.0, 0.0, 2.0)
    values = _col(0.5, 1.0, 1.5)
    next_values = _col(9.0, 1.5, 2.0)  # 9.0 must be ignored: step 0 terminates
    terminated = _flags(True, False, False)
    adv, _ = compute_gae(rewards, values, next_values, terminated, terminated, GAMMA, LAM)
    a2 = 2.0 + 0.9 * 2.0 - 1.5  # 2.3
    a1 = (0.0 + 0.9 * 1.5 - 1.0) + 0.72 * a2  # 2.006
    a0 = 1.0 - 0.5  # 0.5: no bootstrap, no trace
    assert adv[:, 0].tolist() == pytest.approx([a0, a1, a2], abs=1e-12)


def test_gae_envs_are_independent() -> None:
    rewards = torch.tensor([[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.5], [1.0, 1.0], [1.5, 1.5]], dtype=torch.float64)
    next_values = torch.tensor([[1.0, 1.0], [1.5, 3.0], [2.0, 7.0]], dtype=torch.float64)
    terminated = torch.tensor([[False, False], [False, False], [False, True]])
    ended = torch.tensor([[False, False], [False, True], [False, True]])
    adv, _ = compute_gae(rewards, values, next_values, terminated, ended, GAMMA, LAM)
    assert adv[:, 0].tolist() == pytest.approx([2.84432, 2.006, 2.3], abs=1e-12)
    assert adv[:, 1].tolist() == pytest.approx([2.624, 1.7, 0.5], abs=1e-12)


def test_gae_lambda_one_gives_discounted_return_minus_value() -> None:
    rewards = _col(1.0, 2.0, 3.0)
    values = _col(0.3, -0.2, 0.7)
    next_values = _col(-0.2, 0.7, 4.0)
    no = _flags(False, False, False)
    _, ret = compute_gae(rewards, values, next_values, no, no, 0.5, 1.0)
    # lambda = 1: returns are the bootstrapped discounted sums
    assert ret[:, 0].tolist() == pytest.approx(
        [1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4.0, 2 + 0.5 * 3 + 0.25 * 4.0, 3 + 0.5 * 4.0], abs=1e-12
    )


# -- PPO update -------------------------------------------------------------------


class TinyCategorical(nn.Module):
    """A state-independent categorical policy with a scalar value: enough for the update's protocol."""

    def __init__(self, n_actions: int = 3) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_actions))
        self.v = nn.Parameter(torch.zeros(()))

    def dist(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits.expand(obs.shape[0], -1))

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.dist(obs)
        return d.log_prob(actions), d.entropy()

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v.expand(obs.shape[0])


def _batch(policy: TinyCategorical, good: int = 0) -> tuple[torch.Tensor, ...]:
    actions = torch.arange(3).repeat(30)  # 90 samples, 30 of each action
    obs = torch.zeros(actions.shape[0], 1)
    with torch.no_grad():
        old_logp, _ = policy.log_prob(obs, actions)
    advantages = torch.where(actions == good, 1.0, -1.0)
    returns = torch.full((actions.shape[0],), 2.0)
    return obs, actions, old_logp, advantages, returns


def _probs(policy: TinyCategorical) -> list[float]:
    return torch.softmax(policy.logits.detach(), -1).tolist()


@pytest.mark.parametrize("good", [0, 2])
def test_ppo_raises_probability_of_positive_advantage_action(good: int) -> None:
    torch.manual_seed(0)
    policy = TinyCategorical()
    opt = torch.optim.Adam(policy.parameters(), lr=0.05)
    before = _probs(policy)
    cfg = PPOConfig(update_epochs=4, minibatch_size=32, ent_coef=0.0)
    stats = ppo_update(policy, opt, *_batch(policy, good), cfg, generator=torch.Generator().manual_seed(0))
    after = _probs(policy)
    assert after[good] > before[good] + 0.05
    for other in {0, 1, 2} - {good}:
        assert after[other] < before[other]
    # the value head moves towards the returns (2.0)
    assert 0.0 < policy.v.item() < 2.0
    # 90 samples in minibatches of 32 -> 3 steps per epoch
    assert stats.n_gradient_steps == 4 * 3
    assert stats.approx_kl >= 0.0
    assert 0.0 <= stats.clip_frac <= 1.0


def test_ppo_clipping_bounds_progress_of_one_epoch() -> None:
    # With a huge learning rate, the first minibatch step moves far; after that every further step on
    # the good action is clipped (zero gradient from the surrogate), so clip_frac becomes positive.
    torch.manual_seed(0)
    policy = TinyCategorical()
    opt = torch.optim.SGD(policy.parameters(), lr=50.0)
    cfg = PPOConfig(update_epochs=3, minibatch_size=90, clip_coef=0.2, max_grad_norm=1e9, vf_coef=0.0)
    stats = ppo_update(policy, opt, *_batch(policy), cfg)
    assert stats.clip_frac > 0.0
    assert stats.n_gradient_steps == 3


def test_ppo_target_kl_stops_early() -> None:
    policy = TinyCategorical()
    opt = torch.optim.Adam(policy.parameters(), lr=0.1)
    cfg = PPOConfig(update_epochs=10, minibatch_size=90, target_kl=1e-9)
    stats = ppo_update(policy, opt, *_batch(policy), cfg, generator=torch.Generator().manual_seed(0))
    # Epoch 1's only minibatch sees the rollout policy itself (ratio 1, KL 0): no stop. Epoch 2 sees a
    # moved policy (KL > 1e-9) and stops after its step.
    assert stats.n_gradient_steps == 2


def test_ppo_zero_advantage_leaves_policy_unchanged() -> None:
    policy = TinyCategorical()
    opt = torch.optim.SGD(policy.parameters(), lr=0.5)
    obs, actions, old_logp, _, returns = _batch(policy)
    cfg = PPOConfig(update_epochs=2, minibatch_size=45, vf_coef=0.0, ent_coef=0.0)
    ppo_update(policy, opt, obs, actions, old_logp, torch.zeros(90), returns, cfg)
    assert _probs(policy) == pytest.approx([1 / 3] * 3, abs=1e-7)
