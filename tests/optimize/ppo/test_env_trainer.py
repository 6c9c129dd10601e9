"""Learning tests for the KL-regularised PPO trainer (Gaussian and categorical policies)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlhfkit.domains.control import evaluate_policy
from rlhfkit.models.control import ActorCritic, RolloutCollector, SpaceSpec, make_vector_env
from rlhfkit.optimize.kl import AdaptiveKL, FixedKL, KLController
from rlhfkit.optimize.ppo.env_trainer import PPOTrainer
from rlhfkit.optimize.ppo.loss import PPOConfig
from rlhfkit.tasks import get_task, pendulum_true


def _trainer(task_name: str, cfg: PPOConfig, base: bool = False, kl: KLController | None = None) -> PPOTrainer:
    torch.manual_seed(0)
    task = get_task(task_name)
    envs = make_vector_env(task.make_env, cfg.n_envs)
    spec = SpaceSpec.of(envs.single_observation_space, envs.single_action_space)
    policy = ActorCritic(spec, cfg.hidden, cfg.log_std_init)
    return PPOTrainer(
        policy,
        policy.frozen_copy() if base else None,
        RolloutCollector(envs, 0),
        cfg,
        kl or FixedKL(0.0),
        "k1",
        seed=0,
    )


def test_categorical_ppo_learns_cartpole() -> None:
    cfg = PPOConfig(n_envs=4, n_steps=128, gamma=0.99, lr=1e-3, minibatch_size=128, update_epochs=4)
    tr = _trainer("env:CartPole-v1", cfg)
    before = evaluate_policy(tr.policy, get_task("env:CartPole-v1").make_env, 5, 0)["true_return"]
    tr.train(lambda o, a: np.ones(o.shape[:-1]), 40_000)
    after = evaluate_policy(tr.policy, get_task("env:CartPole-v1").make_env, 5, 0)["true_return"]
    assert after >= 200 and after >= before + 100, (before, after)


def test_gaussian_ppo_learns_pendulum_swing_up() -> None:
    cfg = PPOConfig(n_envs=4, n_steps=1024, gamma=0.9, lr=1e-3)
    tr = _trainer("pendulum", cfg)
    make_env = get_task("pendulum").make_env
    before = evaluate_policy(tr.policy, make_env, 10, 0)["true_return"]
    tr.train(pendulum_true, 90_000)
    after = evaluate_policy(tr.policy, make_env, 10, 0)["true_return"]
    assert after >= -500 and after - before >= 400, (before, after)


def test_kl_penalty_keeps_the_policy_near_the_base() -> None:
    cfg = PPOConfig(n_envs=4, n_steps=512, gamma=0.9, lr=1e-3)
    make_env = get_task("pendulum").make_env
    kls = {}
    for beta in (0.0, 2.0):
        tr = _trainer("pendulum", cfg, base=True, kl=FixedKL(beta))
        tr.train(pendulum_true, 16_384)
        assert tr.base is not None
        kls[beta] = evaluate_policy(tr.policy, make_env, 3, 0, base=tr.base)["kl_to_base"]
    assert kls[2.0] < 0.5 * kls[0.0], kls


def test_adaptive_beta_moves_towards_the_target() -> None:
    cfg = PPOConfig(n_envs=4, n_steps=512, gamma=0.9, lr=1e-3)
    ctrl = AdaptiveKL(beta=0.01, target=0.001, horizon=2048)
    tr = _trainer("pendulum", cfg, base=True, kl=ctrl)
    logs = tr.train(pendulum_true, 16_384)
    # The policy drifts past a tiny target, so beta grows; each step follows the controller's formula.
    assert ctrl.beta > 0.01
    beta = 0.01
    for log in logs:
        beta *= 1 + min(max(log["kl"] / 0.001 - 1, -0.2), 0.2) * 2048 / 2048
        assert log["beta"] == pytest.approx(beta)


def test_no_reward_fn_optimises_the_envs_own_reward() -> None:
    # Pendulum-v1's env reward is pendulum_true: both trainers see the same rewards and
    # take the same steps, up to the float32 rounding of the observation.
    cfg = PPOConfig(n_envs=2, n_steps=64, gamma=0.9, lr=1e-3, update_epochs=2, minibatch_size=64)
    own = _trainer("pendulum", cfg)  # each trainer seeds torch's global generator: train it before the next
    logs_own = own.train(None, 256)
    fn = _trainer("pendulum", cfg)
    logs_fn = fn.train(pendulum_true, 256)
    assert [g["reward"] for g in logs_own] == pytest.approx([g["reward"] for g in logs_fn], rel=1e-4)
    assert logs_own[0]["reward"] < -1.0  # a real reward, not a zero filler
    for p, q in zip(own.policy.parameters(), fn.policy.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)
