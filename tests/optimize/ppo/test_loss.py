"""Tests for rlhfkit.optimize.ppo.loss: GAE worked by hand, the clipped-surrogate update on a tiny policy, and
for a language model the token rewards, the masked GAE and the masked update."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Categorical

from rlhfkit.optimize.ppo.loss import PPOConfig, compute_gae, ppo_update, token_gae, token_rewards

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


# -- token level (a language model: one completion = one episode) ----------------------------


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
