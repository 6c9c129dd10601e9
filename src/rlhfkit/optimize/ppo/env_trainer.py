"""KL-regularised PPO for control policies, reading top to bottom.

Each iteration:

1. roll out the current policy for ``n_envs * n_steps`` transitions;
2. score each step with the reward being optimised ``r(s, a)`` (learned, true
   or proxy) and the KL estimate ``k(s, a)`` against the frozen base policy;
3. shape the reward ``r'_t = r(s_t, a_t) - beta * k_t`` and scale it;
4. GAE, then the PPO update;
5. let the KL controller adapt ``beta`` from the measured mean KL.

This maximises ``E[sum_t r(s_t, a_t)] - beta * KL(pi_new || pi_base)`` per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from rlhfkit.models.control import ActorCritic, RolloutCollector, RunningMeanStd
from rlhfkit.optimize.kl import FixedKL, KLController, KLEstimator, kl_estimate
from rlhfkit.optimize.ppo.loss import PPOConfig, PPOStats, compute_gae, ppo_update

StepRewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``r(obs, env_actions) -> rewards``: obs ``(..., obs_dim)`` to rewards ``obs.shape[:-1]``."""


class RewardScaler:
    """Divides rewards by a running std of the discounted return, per env (as SB3's VecNormalize)."""

    def __init__(self, n_envs: int, gamma: float) -> None:
        self.gamma = gamma
        self.ret = np.zeros(n_envs)
        self.rms = RunningMeanStd(())

    def __call__(self, rewards: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """``rewards``, ``ended``: ``(T, N)``; returns scaled rewards."""
        for t in range(rewards.shape[0]):
            self.ret = self.ret * self.gamma + rewards[t]
            self.rms.update(torch.as_tensor(self.ret))
            self.ret[ended[t]] = 0.0
        return rewards / float(np.sqrt(float(self.rms.var) + 1e-8))


@dataclass
class PPOTrainer:
    """Keeps a policy's optimiser, env state and scalers across training calls (and rounds)."""

    policy: ActorCritic
    base: ActorCritic | None
    collector: RolloutCollector
    config: PPOConfig
    kl: KLController = field(default_factory=lambda: FixedKL(0.0))
    kl_estimator: KLEstimator = "k1"
    seed: int = 0

    lr_budget: int | None = None
    """PPO env steps over which the learning rate anneals to 0 (default: each train call's steps)."""

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.config.lr, eps=1e-5)
        self.scaler = RewardScaler(self.collector.envs.num_envs, self.config.gamma)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.env_steps = 0
        """All env steps taken for this policy, including any the caller adds (e.g. for queries)."""
        self.ppo_steps = 0
        """Env steps of PPO rollouts only; drives the learning-rate schedule."""

    def train(
        self,
        reward_fn: StepRewardFn | None,
        total_steps: int,
        on_iteration: Callable[[dict[str, float]], None] | None = None,
    ) -> list[dict[str, float]]:
        """Run PPO iterations until ``total_steps`` more env steps are used; one log dict per iteration.

        ``reward_fn`` is the reward optimised; None = the env's own reward, as each rollout recorded it.
        """
        cfg = self.config
        batch = cfg.n_envs * cfg.n_steps
        n_iters = max(1, total_steps // batch)
        logs = []
        budget, start = (self.lr_budget, 0) if self.lr_budget else (n_iters * batch, self.ppo_steps)
        for _ in range(n_iters):
            if cfg.anneal_lr:
                frac = max(0.0, 1.0 - (self.ppo_steps - start) / budget)
                for g in self.optimizer.param_groups:
                    g["lr"] = cfg.lr * frac
            ro = self.collector.collect(self.policy, cfg.n_steps)
            self.env_steps += ro.n_steps
            self.ppo_steps += ro.n_steps

            # 2. the reward being optimised and the per-step KL to the base policy
            if reward_fn is None:  # the env's own reward, as the rollout recorded it
                r = np.asarray(ro.true_rewards, dtype=np.float64)
            else:
                r = np.asarray(reward_fn(ro.obs.numpy(), ro.env_actions), dtype=np.float64)
            if not np.all(np.isfinite(r)):
                raise FloatingPointError("the reward being optimised returned NaN or inf during PPO")
            if self.base is not None:
                with torch.no_grad():
                    logp_base, _ = self.base.log_prob(ro.obs, ro.actions)
                kl_t = kl_estimate(ro.logp, logp_base, self.kl_estimator).double().numpy()
            else:
                kl_t = np.zeros_like(r)

            # 3. shaped, scaled reward
            shaped = r - self.kl.beta * kl_t
            if cfg.normalize_reward:
                shaped = self.scaler(shaped, ro.ended)

            # 4. GAE and update
            adv, ret = compute_gae(
                torch.as_tensor(shaped, dtype=torch.float32),
                ro.values,
                ro.next_values,
                torch.as_tensor(ro.terminated),
                torch.as_tensor(ro.ended),
                cfg.gamma,
                cfg.gae_lambda,
            )
            stats: PPOStats = ppo_update(
                self.policy,
                self.optimizer,
                ro.obs.flatten(0, 1),
                ro.actions.flatten(0, 1),
                ro.logp.flatten(0, 1),
                adv.flatten(0, 1),
                ret.flatten(0, 1),
                cfg,
                self.generator,
            )

            # 5. adapt beta
            mean_kl = float(kl_t.mean())
            self.kl.update(mean_kl, ro.n_steps)
            log = {
                "env_steps": float(self.env_steps),
                "reward": float(r.mean()),
                "kl": mean_kl,
                "beta": float(self.kl.beta),
                "episode_return": float(np.mean(ro.episode_returns)) if ro.episode_returns else float("nan"),
                "entropy": stats.entropy,
                "approx_kl": stats.approx_kl,
                "value_loss": stats.value_loss,
            }
            logs.append(log)
            if on_iteration is not None:
                on_iteration(log)
        return logs
