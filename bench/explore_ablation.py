"""Does PEBBLE's unsupervised exploration before feedback save comparisons? Ours only, on Pendulum-v1.

Runs ``examples/pendulum-front-loaded.toml`` (as ``bench/vs_imitation.py`` runs our side: the same
``run_config`` and ``ours``) with ``[control] explore_steps`` set, at each budget and seed, and prints
one JSON row per run: final true return, comparisons, env steps (the exploration's included) and
seconds. Our side is deterministic per (seed, budget, explore steps), so the rows compare, seed by
seed, with the runs without exploration that ``bench/vs_imitation.py`` printed; ``--with-plain``
adds those runs here. docs/benchmarks.md normalises both by the same true-reward PPO and random
returns per seed.

    .venv/bin/python bench/explore_ablation.py [--seeds 0 1 2] [--budgets 25 50] [--explore-steps 32768]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_imitation

from rlhfkit.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def one_run(args: tuple[str, int, int, int]) -> dict[str, Any]:
    config, seed, budget, explore = args
    torch.set_num_threads(1)
    base = load_config(config)
    assert base.control is not None
    base = dataclasses.replace(base, control=dataclasses.replace(base.control, explore_steps=explore))
    row = vs_imitation.ours(vs_imitation.run_config(base, seed, budget))
    row.update(seed=seed, budget=budget, explore_steps=explore)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "examples" / "pendulum-front-loaded.toml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budgets", type=int, nargs="+", default=[25, 50])
    p.add_argument("--explore-steps", type=int, default=32768)
    p.add_argument("--with-plain", action="store_true", help="also run each (seed, budget) without exploration")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    arms = [args.explore_steps, 0] if args.with_plain else [args.explore_steps]
    jobs = [(args.config, s, b, x) for x in arms for b in args.budgets for s in args.seeds]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(one_run, jobs))


if __name__ == "__main__":
    main()
