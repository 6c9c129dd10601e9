"""imitation's side of ``bench/vs_imitation.py``: one ``PreferenceComparisons`` run on Pendulum-v1.

Runs in ``bench/.venv-imitation`` (imitation 1.0.1, gymnasium 0.29, stable-baselines3 2.2), never in the
project's venv, and imports nothing from rlhfkit. It takes one JSON object as its only argument::

    {"seed": 0, "budget": 25, "env_steps": 154656, "segment_length": 50, "eval_seed": 10000,
     "eval_episodes": 20, "iterations": 5, "ppo": "tutorial"}

and prints one JSON line on stdout: the mean true return of the policy trained inside the loop over
``eval_episodes`` deterministic episodes reset with seeds ``eval_seed + ep``, the comparisons gathered,
the PPO steps the agent trained, all env steps taken (fragment sampling included) and the wall seconds.

The set-up is imitation's Pendulum tutorial (``docs/tutorials/5_train_preference_comparisons.ipynb``),
whose hyper-parameters its authors describe as approximately tuned: ``BasicRewardNet`` with a running-norm
input layer, ``PreferenceModel``, ``CrossEntropyRewardLoss``, ``BasicRewardTrainer`` (3 epochs),
``RandomFragmenter``, SB3 PPO on 8 envs (``FeedForward32Policy`` with normalised features, rollouts of
2,048 steps, minibatches of 64, lr 2e-3, entropy bonus 0.01, clip 0.1, GAE lambda 0.95, gamma 0.97,
10 epochs) trained by ``AgentTrainer`` with 5% exploratory steps, and ``PreferenceComparisons`` with
5 iterations, 10% of the comparisons asked before the first, the hyperbolic query schedule and 4 times
the reward epochs on the first batch. (An earlier draft of this script used SB3's default PPO settings,
lr 3e-4 without the entropy bonus: seed 0 at 200 comparisons reached -847 there, -158 with the
tutorial's.) Changed from the tutorial, to match the other side of the benchmark:

- the teacher is ``SyntheticGatherer(temperature=0, discount_factor=1)``: it always prefers the fragment
  with the higher true return, as ours with ``beta = inf`` does;
- fragments are ``segment_length`` steps long (ours: 50 on Pendulum), not 100;
- the agent's training steps (see :func:`iteration_steps`).

``"ppo": "matched"`` swaps the tutorial's PPO for SB3 PPO with our PPO's settings where SB3 has them
(4 envs x 1,024 steps, minibatches of 256, lr 1e-3, gamma 0.9, 64x64 actor and critic), to check that a
gap is not just the two PPO set-ups: SB3 cannot anneal the learning rate over the several ``learn`` calls
imitation makes, and the reward is not normalised.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from imitation.algorithms import preference_comparisons as pc
from imitation.policies.base import FeedForward32Policy, NormalizeFeaturesExtractor
from imitation.rewards.reward_nets import BasicRewardNet
from imitation.util import logger as imit_logger
from imitation.util.networks import RunningNorm
from imitation.util.util import make_vec_env
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

ENV_ID = "Pendulum-v1"
EXPLORATION_FRAC = 0.05
"""The tutorial's share of fragment steps taken with random actions."""
INITIAL_EPOCH_MULTIPLIER = 4
"""The tutorial's extra reward-model epochs on the first batch of comparisons (the library default is 200)."""


class StepCounter(VecEnvWrapper):
    """Counts every env step taken through it: PPO's rollouts and imitation's fragment sampling alike."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.steps = 0

    def reset(self) -> Any:
        return self.venv.reset()

    def step_wait(self) -> Any:
        self.steps += self.num_envs
        return self.venv.step_wait()


def ppo_settings(kind: str) -> tuple[int, dict[str, Any]]:
    """(number of envs, SB3 PPO keyword arguments) for the tutorial's PPO or the one matched to ours."""
    features = {
        "features_extractor_class": NormalizeFeaturesExtractor,
        "features_extractor_kwargs": {"normalize_class": RunningNorm},
    }
    if kind == "tutorial":
        n_envs = 8
        return n_envs, {
            "policy": FeedForward32Policy,
            "policy_kwargs": features,
            "n_steps": 2048 // n_envs,
            "batch_size": 64,
            "ent_coef": 0.01,
            "learning_rate": 2e-3,
            "clip_range": 0.1,
            "gae_lambda": 0.95,
            "gamma": 0.97,
            "n_epochs": 10,
        }
    if kind == "matched":
        return 4, {
            "policy": "MlpPolicy",
            "policy_kwargs": {**features, "net_arch": {"pi": [64, 64], "vf": [64, 64]}},
            "n_steps": 1024,
            "batch_size": 256,
            "n_epochs": 10,
            "learning_rate": 1e-3,
            "gamma": 0.9,
            "gae_lambda": 0.95,
            "clip_range": 0.2,
            "ent_coef": 0.0,
            "vf_coef": 0.5,
            "max_grad_norm": 0.5,
        }
    raise SystemExit(f"unknown ppo set-up {kind!r} (tutorial, matched)")


def iteration_steps(env_steps: int, iterations: int, rollout: int) -> int:
    """PPO steps per agent-training phase, so that the agent trains about ``env_steps`` steps in all.

    ``PreferenceComparisons.train(total_timesteps=T)`` trains the agent ``T // iterations`` steps after each
    of its ``iterations + 1`` query batches (the initial one included), and SB3 rounds every ``learn`` call
    up to whole rollouts: passing ``T = env_steps`` would train up to ``(iterations + 1) / iterations`` times
    as long plus a rollout a phase. So each phase gets the fewest whole rollouts with
    ``(iterations + 1) * phase >= env_steps``: never fewer PPO steps than ``env_steps`` (which counts ours'
    segment collection too), at most a rollout a phase more; fragment sampling adds its own steps on top.
    """
    per_phase = -(-env_steps // (iterations + 1))  # ceil
    return -(-per_phase // rollout) * rollout


def evaluate(agent: PPO, eval_seed: int, episodes: int) -> float:
    """Mean true return over ``episodes`` deterministic episodes reset with seeds ``eval_seed + ep``."""
    env = gym.make(ENV_ID)
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=eval_seed + ep)
        done, ret = False, 0.0
        while not done:
            action, _ = agent.predict(obs, deterministic=True)
            obs, r, terminated, truncated, _ = env.step(action)
            ret += float(r)
            done = bool(terminated or truncated)
        returns.append(ret)
    env.close()
    return float(np.mean(returns))


def run(spec: dict[str, Any]) -> dict[str, Any]:
    seed, budget, iterations = spec["seed"], spec["budget"], spec["iterations"]
    torch.manual_seed(seed)  # the reward net's and the policy's initial weights
    rng = np.random.default_rng(seed)
    n_envs, ppo_kwargs = ppo_settings(spec["ppo"])
    venv = StepCounter(make_vec_env(ENV_ID, rng=rng, n_envs=n_envs))
    phase = iteration_steps(spec["env_steps"], iterations, n_envs * ppo_kwargs["n_steps"])
    t0 = time.time()
    with tempfile.TemporaryDirectory() as log_dir:
        logger = imit_logger.configure(log_dir, format_strs=[])  # no console or files: one JSON line out
        reward_net = BasicRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm)
        reward_trainer = pc.BasicRewardTrainer(
            preference_model=pc.PreferenceModel(reward_net),
            loss=pc.CrossEntropyRewardLoss(),
            epochs=3,
            rng=rng,
        )
        agent = PPO(env=venv, seed=seed, device="cpu", verbose=0, **ppo_kwargs)
        trainer = pc.AgentTrainer(
            algorithm=agent, reward_fn=reward_net, venv=venv, exploration_frac=EXPLORATION_FRAC, rng=rng
        )
        comparisons = pc.PreferenceComparisons(
            trainer,
            reward_net,
            num_iterations=iterations,
            fragmenter=pc.RandomFragmenter(warning_threshold=0, rng=rng),
            preference_gatherer=pc.SyntheticGatherer(temperature=0, discount_factor=1, rng=rng),
            reward_trainer=reward_trainer,
            fragment_length=spec["segment_length"],
            transition_oversampling=1,
            initial_comparison_frac=0.1,
            initial_epoch_multiplier=INITIAL_EPOCH_MULTIPLIER,
            query_schedule="hyperbolic",
            custom_logger=logger,
        )
        with contextlib.redirect_stdout(sys.stderr):  # PreferenceComparisons prints its query schedule
            comparisons.train(total_timesteps=iterations * phase, total_comparisons=budget)
    seconds = time.time() - t0
    return {
        "true_return": evaluate(agent, spec["eval_seed"], spec["eval_episodes"]),
        "comparisons": len(comparisons.dataset),
        "timesteps_trained": int(agent.num_timesteps),
        "env_steps": venv.steps,
        "seconds": seconds,
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec.get("threads", 1))
    print(json.dumps(run(spec)))


if __name__ == "__main__":
    main()
