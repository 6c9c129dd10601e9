"""Ours vs imitation's ``PreferenceComparisons`` on Pendulum-v1, side by side at 25 to 200 comparisons.

What is compared: for each seed and comparison budget, two RLHF runs from a fresh policy, scored by the
true return of the policy each ends with:

- ours: ``--config`` (default ``examples/pendulum-front-loaded.toml``: 9 rounds of 16,384 PPO steps, every
  answer trains the reward), its comparisons split as that config splits them: about twice as many before
  round 1 as a later round gets on average, ``per_round = budget // (rounds + 1)``,
  ``initial = budget - per_round * (rounds - 1)`` (with 9 rounds: 25 = 9 + 16, 50 = 10 + 40, 100 = 20 + 80,
  200 = 40 + 160), the later ones shared by the config's ``feedback.query_schedule`` (``decreasing``: most in
  round 2; ``constant``: the same each round, as ``examples/pendulum-50.toml`` does);
- imitation 1.0.1 (gymnasium 0.29, stable-baselines3 2.2.1), in its own venv ``bench/.venv-imitation``
  (``bench/_peer_env.py``), run by ``bench/_imitation_peer.py`` as a child process: the set-up of its
  Pendulum tutorial (``BasicRewardNet``, ``PreferenceModel``, ``CrossEntropyRewardLoss``,
  ``BasicRewardTrainer``, ``RandomFragmenter``, SB3 PPO with the tutorial's settings, ``AgentTrainer``,
  ``PreferenceComparisons`` with 5 iterations and 10% of the comparisons first); the peer script's
  docstring lists what differs from the tutorial and why. ``--imitation-ppo matched`` gives its SB3 PPO
  our PPO's settings instead, to check that a gap is not just the two PPO set-ups.

The protocol, the same on both sides:

- env: Pendulum-v1 (its dynamics and reward are the same in gymnasium 0.29 and 1.x);
- teacher: noise-free, always prefers the segment with the higher true (env) return, undiscounted: ours
  ``beta = inf``, imitation ``SyntheticGatherer(temperature=0, discount_factor=1)``;
- segments of the config's segment length (50 steps on Pendulum) on both sides;
- comparisons: exactly ``budget`` answers on each side (checked: a run that got another count fails);
- env steps: ours runs first; its total env steps (PPO plus segment collection) set imitation's: its agent
  trains the fewest whole SB3 rollouts per phase that bring its PPO steps to at least that total, at most
  one rollout (2,048 steps) a phase more (``iteration_steps`` in the peer script says why the tutorial's
  ``total_timesteps`` cannot just be passed on), and its fragment sampling comes on top. So imitation never
  has fewer env steps than ours (about 3% more at the full size); both sides' counts are in the JSON line;
- threads: one torch thread per run on each side (``--workers`` runs at once);
- the policy evaluated is the one trained inside the loop, on both sides. The tutorial trains a fresh PPO
  on the learned reward after the loop; that would give imitation more env steps than ours, so it is
  not done;
- evaluation: the run's evaluation episodes, ``env.reset(seed=eval_seed(seed) + ep)`` for ``ep`` in
  ``range(--eval-episodes)`` (default: the config's), deterministic actions (SB3 ``predict(...,
  deterministic=True)``), summing the env's own reward.

normalised return = (R - R_random) / (R_true_ppo - R_random), with one denominator per seed: R_random a
uniformly random policy's return and R_true_ppo our PPO's on the true reward for as many env steps as our
run at the largest budget used, both on the same evaluation episodes.

One JSON row per (seed, budget) pair of runs, and one per seed's denominators, goes to stderr as it
finishes; the last line on stdout is one JSON object::

    {"budgets": [25, 50, 100, 200], "ours": {"25": median normalised return, ...}, "imitation": {...},
     "per_seed": {"ours": {"25": [per seed], ...}, "imitation": {...}}, "seeds": [0, 1, 2],
     "env_steps": {"ours": {...}, "imitation": {...}, "imitation_trained": {...}}, "seconds": {...},
     "returns": {...}, "denominators": {seed: {...}}, "imitation_setup": {"ppo": "tutorial", "iterations": 5}}

``env_steps.imitation`` counts all of imitation's env steps, ``imitation_trained`` its agent's PPO steps.

    .venv/bin/python bench/vs_imitation.py [--budgets 25 50 100 200] [--seeds 0 1 2] [--workers 2]

``--smoke`` runs one seed at one budget end to end in about a minute. The first run creates the peer venv
(a few minutes); later runs reuse it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from rlhfkit.config import RunConfig, load_config
from rlhfkit.domains.control import eval_seed
from rlhfkit.loop import Run
from rlhfkit.tasks import get_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer_env import ensure_peer_venv
from feedback_efficiency import random_return, true_reward_ppo

ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPT = Path(__file__).resolve().parent / "_imitation_peer.py"
PEER_REQUIREMENTS = ["torch==2.13.0", "imitation==1.0.1"]
"""imitation 1.0.1 pins gymnasium~=0.29 and stable-baselines3~=2.2.1 itself; torch first keeps the CPU build."""
DEFAULTS = {"seeds": [0, 1, 2], "budgets": [25, 50, 100, 200], "imitation_iterations": 5}
SMOKE = {
    "seeds": [0],
    "budgets": [25],
    "rounds": 2,
    "env_steps_per_round": 2048,
    "eval_episodes": 3,
    "imitation_iterations": 1,
}
"""What ``--smoke`` sets where not given: one seed, one budget, 2 rounds of 2,048 steps (imitation: 2
phases), 3 evaluation episodes."""


def schedule(budget: int, rounds: int) -> tuple[int, int]:
    """(initial, per_round) comparisons summing to ``budget`` over ``rounds`` rounds, about 2:1 as the config."""
    per_round = budget // (rounds + 1)
    return budget - per_round * (rounds - 1), per_round


def run_config(base: RunConfig, seed: int, budget: int) -> RunConfig:
    """``base`` with the seed and ``budget`` comparisons, answered by the noise-free teacher."""
    initial, per_round = schedule(budget, base.rounds)
    fb = base.feedback
    fb = dataclasses.replace(
        fb,
        teacher=dataclasses.replace(fb.teacher, beta=float("inf"), mistake_prob=0.0),
        initial_comparisons=initial,
        comparisons_per_round=per_round,
    )
    return dataclasses.replace(base, feedback=fb, seed=seed)


def ours(cfg: RunConfig) -> dict[str, Any]:
    """Our loop's final true return, answers, env steps and wall seconds."""
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        history = Run.create(cfg, Path(d) / "run", progress=False).run()
    return {
        "true_return": history[-1]["true_return"],
        "comparisons": int(history[-1]["n_feedback"]),
        "env_steps": int(history[-1]["env_steps"]),
        "seconds": time.time() - t0,
    }


def imitation(peer_python: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One ``bench/_imitation_peer.py`` run in the peer venv, on one thread; its JSON line."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1")
    done = subprocess.run(
        [peer_python, str(PEER_SCRIPT), json.dumps({**spec, "threads": 1})], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"imitation run {spec} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def one_pair(args: tuple[RunConfig, int, str, int, str]) -> dict[str, Any]:
    """Ours, then imitation with our env steps, at one (seed, budget)."""
    cfg, budget, peer_python, iterations, ppo = args
    torch.set_num_threads(1)
    assert cfg.control is not None
    task = get_task(cfg.task)
    mine = ours(cfg)
    spec = {
        "seed": cfg.seed,
        "budget": budget,
        "env_steps": mine["env_steps"],
        "segment_length": cfg.control.segment_length or task.segment_length,
        "eval_seed": eval_seed(cfg.seed),
        "eval_episodes": cfg.control.eval_episodes,
        "iterations": iterations,
        "ppo": ppo,
    }
    theirs = imitation(peer_python, spec)
    for side, got in (("ours", mine["comparisons"]), ("imitation", theirs["comparisons"])):
        if got != budget:
            raise RuntimeError(f"seed {cfg.seed}, budget {budget}: {side} got {got} comparisons, not {budget}")
    return {"seed": cfg.seed, "budget": budget, "ours": mine, "imitation": theirs}


def denominators(args: tuple[RunConfig, int]) -> dict[str, Any]:
    """A seed's random-policy return and our true-reward PPO's at ``env_steps``, on the evaluation episodes."""
    cfg, env_steps = args
    torch.set_num_threads(1)
    assert cfg.control is not None
    episodes = cfg.control.eval_episodes
    return {
        "seed": cfg.seed,
        "env_steps": env_steps,
        "random_return": random_return(cfg, episodes, cfg.seed),
        "true_reward_ppo_return": true_reward_ppo(cfg, env_steps, episodes),
    }


def base_config(args: argparse.Namespace) -> RunConfig:
    """The config with the command line's rounds, env steps a round and evaluation episodes."""
    base = load_config(args.config)
    assert base.control is not None
    if get_task(base.task).env_id != "Pendulum-v1":
        raise SystemExit(f"{args.config}: imitation's side runs Pendulum-v1 only, not task {base.task!r}")
    control = dataclasses.replace(
        base.control,
        env_steps_per_round=args.env_steps_per_round or base.control.env_steps_per_round,
        eval_episodes=args.eval_episodes or base.control.eval_episodes,
    )
    return dataclasses.replace(base, control=control, rounds=args.rounds or base.rounds)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "examples" / "pendulum-front-loaded.toml"))
    p.add_argument("--budgets", type=int, nargs="+", help="comparison budgets (default 25 50 100 200)")
    p.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--eval-episodes", type=int, help="default: the config's")
    p.add_argument("--rounds", type=int, help="default: the config's")
    p.add_argument("--env-steps-per-round", type=int, help="default: the config's")
    p.add_argument("--imitation-iterations", type=int, help="PreferenceComparisons' num_iterations (default 5)")
    p.add_argument(
        "--imitation-ppo",
        choices=["tutorial", "matched"],
        default="tutorial",
        help="imitation's PPO: its tutorial's settings, or ours where SB3 has them (bench/_imitation_peer.py)",
    )
    p.add_argument("--smoke", action="store_true", help=f"a quick end-to-end check: {SMOKE} unless given")
    args = p.parse_args()
    for name, value in (SMOKE if args.smoke else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main() -> None:
    args = parse_args()
    base = base_config(args)
    peer_python = str(ensure_peer_venv("imitation", PEER_REQUIREMENTS))
    budgets, top = sorted(args.budgets), max(args.budgets)
    # the largest budget first for every seed: its env steps set the seed's denominator
    jobs = [
        (run_config(base, seed, b), b, peer_python, args.imitation_iterations, args.imitation_ppo)
        for b in reversed(budgets)
        for seed in args.seeds
    ]
    rows: list[dict[str, Any]] = []
    dens: dict[int, dict[str, Any]] = {}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        pending: set[Future[dict[str, Any]]] = {pool.submit(one_pair, job) for job in jobs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                row = future.result()
                print(json.dumps(row), file=sys.stderr, flush=True)
                if "random_return" in row:  # a seed's denominators
                    dens[row["seed"]] = row
                    continue
                rows.append(row)
                if row["budget"] == top:
                    den_cfg = dataclasses.replace(base, seed=row["seed"])
                    pending.add(pool.submit(denominators, (den_cfg, row["ours"]["env_steps"])))
    print(json.dumps(summarise(rows, dens, budgets, args)))


def summarise(
    rows: list[dict[str, Any]], dens: dict[int, dict[str, Any]], budgets: list[int], args: argparse.Namespace
) -> dict[str, Any]:
    """The JSON line: medians over seeds of the normalised returns per side and budget, and the per-seed data."""
    sides = ("ours", "imitation")
    seeds = args.seeds
    by = {(r["seed"], r["budget"]): r for r in rows}

    def per_seed(side: str, key: str) -> dict[str, list[Any]]:
        return {str(b): [by[s, b][side][key] for s in seeds] for b in budgets}

    def normalised(side: str) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for b in budgets:
            values = []
            for s in seeds:
                lo, hi = dens[s]["random_return"], dens[s]["true_reward_ppo_return"]
                values.append(round((by[s, b][side]["true_return"] - lo) / (hi - lo), 4))
            out[str(b)] = values
        return out

    norm = {side: normalised(side) for side in sides}
    median = {side: {b: statistics.median(v) for b, v in norm[side].items()} for side in sides}
    return {
        "budgets": budgets,
        "ours": median["ours"],
        "imitation": median["imitation"],
        "per_seed": norm,
        "seeds": seeds,
        "env_steps": {
            "ours": per_seed("ours", "env_steps"),
            "imitation": per_seed("imitation", "env_steps"),
            "imitation_trained": per_seed("imitation", "timesteps_trained"),
        },
        "seconds": {side: per_seed(side, "seconds") for side in sides},
        "returns": {side: per_seed(side, "true_return") for side in sides},
        "denominators": {str(s): dens[s] for s in seeds},
        "imitation_setup": {"ppo": args.imitation_ppo, "iterations": args.imitation_iterations},
    }


if __name__ == "__main__":
    main()
