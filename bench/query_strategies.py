"""Comparisons needed to reach 0.9 normalised return on Pendulum-v1, per query strategy and simulated teacher.

Each (teacher, strategy, seed) is one RLHF run from a fresh policy: ``--initial`` comparisons before
round 1, then ``--per-round`` a round for ``--rounds`` rounds (defaults 20 + 20 x 9 = 200 comparisons,
16,384 PPO steps a round, the rest of ``--config``), the queries chosen by ``[feedback] query_strategy``
(round 1 is always uniform: its reward model has seen no answers) and answered by the teacher. After
every round the policy is evaluated on the run's fixed evaluation episodes (deterministic actions).

normalised return = (R - R_random) / (R_true_ppo - R_random), where R_true_ppo is our PPO on the true
reward for as many env steps as the seed's first-listed strategy used in all (segment collection
included; ``uniform`` first by default), on the same episodes, and R_random a uniformly random policy's.
The one denominator per seed is the true-reward PPO at the end of the run, so an early round must match
the fully trained PPO, not PPO at the same point.

A seed's *comparisons to 0.9* is the number of answers the teacher had given (skipped and "about equal"
ones included: they cost the person the same minute) when the policy first reached 0.9; null if it never
did. The figure per (teacher, strategy) is the median over seeds, counting a seed that never got there as
infinite (null when at least half never did).

The teachers are B-Pref's simulated teachers (Lee et al. 2021, "B-Pref"), calibrated on 50-step segments of
a uniformly random policy on Pendulum-v1 (800 segments; their returns run from -448 at the 5th percentile
to -217 at the 90th):

- ``oracle``: always prefers the higher true return;
- ``mistake``: the oracle's choice flipped with probability 0.1;
- ``noisy``: Boltzmann-rational, P(A>B) = sigmoid(0.05 (R_A - R_B)): 9% of random pairs flipped;
- ``equal``: "about equal" (soft label 0.5/0.5) when |R_A - R_B| < 14, the 10th percentile of |R_A - R_B|;
- ``myopic``: step t of 50 weighted 0.9^(49 - t);
- ``skip``: "incomparable" (stored, never fitted) when both returns are below -365, about 10% of random pairs;
- ``slips+myopia``: ``mistake`` and ``myopic`` together.

The last line is one JSON object:
``{"teachers": {teacher: {strategy: comparisons_to_0.9}}, "final": {teacher: {strategy: median normalised
return after the last round}}, "per_seed": {...}, "seeds": [...], "budget": 200}``; one JSON row per run
goes to stderr as it finishes.

    .venv/bin/python bench/query_strategies.py [--teachers mistake] [--strategies uniform disagreement]
        [--seeds 0 1 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from rlhfkit.config import RunConfig, load_config
from rlhfkit.feedback.selection import STRATEGIES
from rlhfkit.loop import Run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feedback_efficiency import random_return, true_reward_ppo

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.9

TEACHERS: dict[str, dict[str, float]] = {
    "oracle": {},
    "mistake": {"mistake_prob": 0.1},
    "noisy": {"beta": 0.05},
    "equal": {"equal_threshold": 14.0},
    "myopic": {"gamma": 0.9},
    "skip": {"skip_threshold": -365.0},
    "slips+myopia": {"mistake_prob": 0.1, "gamma": 0.9},
}
"""B-Pref's teachers as [feedback.teacher] settings on top of the noise-free one (see the module docstring)."""


def run_config(base: RunConfig, teacher: str, strategy: str, seed: int, schedule: tuple[int, int, int]) -> RunConfig:
    """``base`` with the teacher's noise, the strategy, the seed and the comparison schedule."""
    initial, per_round, rounds = schedule
    fb = base.feedback
    noise = {"beta": math.inf, "mistake_prob": 0.0, **TEACHERS[teacher]}
    fb = dataclasses.replace(
        fb,
        teacher=dataclasses.replace(fb.teacher, **noise),
        query_strategy=strategy,
        initial_comparisons=initial,
        comparisons_per_round=per_round,
    )
    return dataclasses.replace(base, feedback=fb, seed=seed, rounds=rounds)


def one_run(args: tuple[RunConfig, str, str]) -> dict[str, Any]:
    cfg, teacher, strategy = args
    torch.set_num_threads(1)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        history = Run.create(cfg, Path(d) / "run", progress=False).run()
    return {
        "teacher": teacher,
        "strategy": strategy,
        "seed": cfg.seed,
        "returns": [h["true_return"] for h in history[1:]],
        "answers": [int(h["n_feedback"]) for h in history[1:]],
        "env_steps": int(history[-1]["env_steps"]),
        "seconds": time.time() - t0,
    }


def denominators(args: tuple[RunConfig, int, int]) -> dict[str, Any]:
    cfg, env_steps, episodes = args
    torch.set_num_threads(1)
    return {
        "seed": cfg.seed,
        "true_reward_ppo_return": true_reward_ppo(cfg, env_steps, episodes),
        "random_return": random_return(cfg, episodes, cfg.seed),
    }


def to_target(normalised: list[float], answers: list[int]) -> int | None:
    """Answers given when ``normalised`` first reached :data:`TARGET` (None: never)."""
    return next((a for x, a in zip(normalised, answers, strict=True) if x >= TARGET), None)


def median_or_none(values: list[int | None]) -> float | None:
    """Median with None as infinity; None if the median is infinite."""
    m = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(m) else m


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "examples" / "pendulum-50.toml"))
    p.add_argument("--teachers", nargs="+", default=list(TEACHERS), choices=list(TEACHERS))
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--initial", type=int, default=20, help="comparisons before round 1")
    p.add_argument("--per-round", type=int, default=20, help="comparisons in each later round")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    base = load_config(args.config)
    assert base.control is not None
    schedule = (args.initial, args.per_round, args.rounds)
    budget = args.initial + args.per_round * (args.rounds - 1)
    jobs = [
        (run_config(base, t, s, seed, schedule), t, s)
        for seed in args.seeds
        for t in args.teachers
        for s in args.strategies
    ]
    runs: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for row in pool.map(one_run, jobs):
            runs.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        # the denominator's env steps: the seed's run of the first strategy under the first teacher
        first = {r["seed"]: r["env_steps"] for r in runs if (r["teacher"], r["strategy"]) == jobs[0][1:]}
        episodes = base.control.eval_episodes
        dens = list(
            pool.map(denominators, [(dataclasses.replace(base, seed=s), first[s], episodes) for s in args.seeds])
        )
    den = {d["seed"]: d for d in dens}
    for d in dens:
        print(json.dumps({**d, "env_steps": first[d["seed"]]}), file=sys.stderr)
    per_seed: dict[str, dict[str, dict[str, Any]]] = {}
    for r in runs:
        d = den[r["seed"]]
        lo, hi = d["random_return"], d["true_reward_ppo_return"]
        norm = [(x - lo) / (hi - lo) for x in r["returns"]]
        cell = per_seed.setdefault(r["teacher"], {}).setdefault(r["strategy"], {"to_target": [], "final": []})
        cell["to_target"].append(to_target(norm, r["answers"]))
        cell["final"].append(round(norm[-1], 3))
    summary = {
        "teachers": {t: {s: median_or_none(c["to_target"]) for s, c in row.items()} for t, row in per_seed.items()},
        "final": {t: {s: statistics.median(c["final"]) for s, c in row.items()} for t, row in per_seed.items()},
        "per_seed": per_seed,
        "seeds": args.seeds,
        "budget": budget,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
