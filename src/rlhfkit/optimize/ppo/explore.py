"""Unsupervised exploration before the first feedback: PPO on a state-entropy reward (PEBBLE's pre-training).

A fresh policy's first segments all come from one corner of the state space (a
pendulum hanging still), so the first queries compare near-identical behaviour.
PEBBLE (Lee et al. 2021, "PEBBLE: Feedback-Efficient Interactive Reinforcement
Learning via Relabeling Experience and Unsupervised Pre-training") first trains
the policy to maximise the entropy of the states it visits, with a particle
estimate of that entropy: a state's intrinsic reward grows with the distance to
its k-th nearest neighbour among the visited states,

    r_int(s) = log(1 + ||s - s_kNN(s)||).

PEBBLE computes the neighbours in its replay buffer; PPO has no buffer, so here
they are found among the states of the same PPO rollout (``n_envs * n_steps``
states), excluding the state itself. The PPO trainer standardises the reward by
its running scale as for any reward. The exploration trains the run's policy with
its own optimiser and learning-rate schedule, so the rounds' PPO schedule is the
same as without it; its env steps count in the run's ``env_steps``. The base
policy of the KL term stays the configured one.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhfkit.models.control import ActorCritic, EnvFactory, RolloutCollector, make_vector_env
from rlhfkit.optimize.ppo.env_trainer import PPOTrainer
from rlhfkit.optimize.ppo.loss import PPOConfig

KNN = 5
"""The neighbour whose distance is a state's novelty (PEBBLE uses k = 5)."""


def knn_distances(states: np.ndarray, k: int = KNN) -> np.ndarray:
    """``(n,)``: each row's Euclidean distance to its ``k``-th nearest other row of ``states`` ``(n, d)``."""
    x = torch.as_tensor(np.asarray(states, dtype=np.float64).reshape(len(states), -1))
    n = len(x)
    if not 1 <= k < n:
        raise ValueError(f"the {k}-th nearest neighbour needs more than {k} states, got {n}")
    d = torch.cdist(x, x)
    d.fill_diagonal_(torch.inf)  # a state is not its own neighbour
    return torch.kthvalue(d, k, dim=1).values.numpy()


def state_entropy_reward(obs: np.ndarray, actions: np.ndarray, k: int = KNN) -> np.ndarray:
    """PPO's reward function (shape ``obs.shape[:-1]``): ``log(1 + kNN distance)`` among the rollout's states."""
    flat = obs.reshape(-1, obs.shape[-1])
    return np.log1p(knn_distances(flat, k)).reshape(obs.shape[:-1])


def explore(policy: ActorCritic, make_env: EnvFactory, ppo: PPOConfig, steps: int, seed: int) -> int:
    """Train ``policy`` in place with PPO on :func:`state_entropy_reward` for ``steps`` env steps; the steps taken."""
    envs = make_vector_env(make_env, ppo.n_envs)
    try:
        trainer = PPOTrainer(policy, None, RolloutCollector(envs, seed), ppo, seed=seed)
        trainer.train(state_entropy_reward, steps)
    finally:
        envs.close()
    return trainer.env_steps
