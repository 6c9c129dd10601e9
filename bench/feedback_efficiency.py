"""Feedback efficiency: an RLHF run vs our PPO on the true reward at the same env steps.

For each seed, three policies are evaluated with the same protocol (deterministic
actions, ``--eval-episodes`` episodes on fixed seeds):

- the RLHF run of ``--config`` (e.g. Pendulum-v1 with <= 200 comparisons from a noise-free
  simulated human, or ``examples/halfcheetah.toml``: HalfCheetah-v5 with 600);
- our PPO on the *true* reward for the same number of env steps as the RLHF run
  used in total (segment collection included), with the same PPO settings;
- a uniformly random policy.

normalised return = (R_rlhf - R_random) / (R_true_ppo - R_random), median over seeds.
The last line printed is one JSON object with the summary.

    .venv/bin/python bench/feedback_efficiency.py [--seeds 0 1 2] [--config examples/pendulum.toml]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from rlhfkit.config import RunConfig, load_config
from rlhfkit.domains.control import eval_seed, evaluate_policy
from rlhfkit.loop import Run, seed_everything
from rlhfkit.models.control import ActorCritic, RolloutCollector, SpaceSpec, make_vector_env
from rlhfkit.optimize.ppo.env_trainer import PPOTrainer
from rlhfkit.tasks import get_task, pendulum_true

ROOT = Path(__file__).resolve().parents[1]


def random_return(cfg: RunConfig, episodes: int, seed: int) -> float:
    env = get_task(cfg.task).make_env()
    env.action_space.seed(seed)
    returns = []
    for ep in range(episodes):
        env.reset(seed=eval_seed(seed) + ep)  # the episodes the run is evaluated on
        done, ret = False, 0.0
        while not done:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            ret += float(r)
            done = term or trunc
        returns.append(ret)
    return float(np.mean(returns))


def true_reward_ppo(cfg: RunConfig, env_steps: int, episodes: int) -> float:
    """Our PPO, same settings, optimising the task's true (env) reward for ``env_steps``."""
    seed_everything(cfg.seed)
    task = get_task(cfg.task)
    assert cfg.control is not None
    ppo = cfg.control.ppo
    envs = make_vector_env(task.make_env, ppo.n_envs)
    spec = SpaceSpec.of(envs.single_observation_space, envs.single_action_space, task.env_id)
    policy = ActorCritic(spec, ppo.hidden, ppo.log_std_init, ppo.normalize_obs)
    trainer = PPOTrainer(policy, None, RolloutCollector(envs, cfg.seed), ppo, seed=cfg.seed)
    # The true reward: the task's own step function where it has one (the env then reports
    # it too); Pendulum-v1's reward recomputed from (obs, action), as every Pendulum figure in
    # docs/benchmarks.md was made; else the env's reward as each rollout recorded it (None).
    reward_fn = task.true_reward or (pendulum_true if cfg.task == "pendulum" else None)
    trainer.train(reward_fn, env_steps)
    return evaluate_policy(policy, task.make_env, episodes, seed=eval_seed(cfg.seed))["true_return"]


def one_seed(args: tuple[str, int, int]) -> dict[str, float]:
    config_path, seed, episodes = args
    torch.set_num_threads(1)
    cfg = load_config(config_path)
    assert cfg.control is not None
    cfg = dataclasses.replace(cfg, seed=seed, control=dataclasses.replace(cfg.control, eval_episodes=episodes))
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        run = Run.create(cfg, Path(d) / "run", progress=False)
        history = run.run()
        comparisons = run.store.count_feedback()
    rlhf_time = time.time() - t0
    env_steps = int(history[-1]["env_steps"])
    t1 = time.time()
    ppo = true_reward_ppo(cfg, env_steps, episodes)
    return {
        "seed": seed,
        "rlhf_return": history[-1]["true_return"],
        "true_reward_ppo_return": ppo,
        "random_return": random_return(cfg, episodes, seed),
        "comparisons": comparisons,
        "env_steps": env_steps,
        "rlhf_seconds": rlhf_time,
        "ppo_seconds": time.time() - t1,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "examples" / "pendulum.toml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    jobs = [(args.config, s, args.eval_episodes) for s in args.seeds]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = list(pool.map(one_seed, jobs))
    for r in rows:
        r["normalised_return"] = (r["rlhf_return"] - r["random_return"]) / (
            r["true_reward_ppo_return"] - r["random_return"]
        )
        print(json.dumps(r), file=sys.stderr)
    summary = {
        "normalised_return": statistics.median(r["normalised_return"] for r in rows),
        "comparisons": max(r["comparisons"] for r in rows),
        "env_steps": max(r["env_steps"] for r in rows),
        "seeds": args.seeds,
        "true_reward_ppo_return": statistics.median(r["true_reward_ppo_return"] for r in rows),
        "random_return": statistics.median(r["random_return"] for r in rows),
        "rlhf_return": statistics.median(r["rlhf_return"] for r in rows),
        "per_seed_normalised": [round(r["normalised_return"], 3) for r in rows],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
