"""Learning Pendulum-v1's reward weights from its named features: max-information vs volume removal vs uniform.

Pendulum-v1's true return over a segment is exactly ``w . phi`` for its three named features
(``rlhfkit.tasks.features.PENDULUM_FEATURES``: summed squared angle, squared speed, squared torque;
weights -1, -0.1, -0.001). The candidates are ``--segments`` 50-step segments of a uniformly random
policy (episodes seeded 0, 1, ...), their features standardised over the pool, so the true direction
is ``unit(w * std(phi))``. For each seed, a belief (``rlhfkit.feedback.belief.LinearBelief``, answer
model rationality ``--beta`` on the standardised features) starts from the uniform prior on the sphere;
each query draws 50 random candidate pairs and asks the one the acquisition chooses; a noise-free
person answers by the true return. The figure is the alignment (cosine) of the posterior mean with
the true direction after each answer, and the answers needed to reach ``--target`` alignment.

The last line is one JSON object ``{"alignment": {acquisition: [mean over seeds after 0..queries
answers]}, "answers_to_target": {acquisition: median}, "seeds": [...], "target": 0.99}``.

    .venv/bin/python bench/belief_queries.py [--seeds 0 1 ... 9] [--queries 30]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

import gymnasium as gym
import numpy as np

from rlhfkit.feedback.belief import ACQUISITIONS, run_active_learning, unit
from rlhfkit.tasks.features import PENDULUM_FEATURES
from rlhfkit.types import Segment


def random_segments(n: int, length: int = 50) -> list[Segment]:
    """``n`` segments of a uniformly random policy on Pendulum-v1, each from its own seeded episode."""
    env = gym.make("Pendulum-v1")
    out = []
    for i in range(n):
        obs, _ = env.reset(seed=i)
        env.action_space.seed(i)
        o, a, r = [], [], []
        for _ in range(length):
            act = env.action_space.sample()
            o.append(obs)
            a.append(act)
            obs, rew, *_ = env.step(act)
            r.append(rew)
        out.append(Segment(observations=np.array(o), actions=np.array(a), true_rewards=np.array(r, dtype=float)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--queries", type=int, default=30)
    p.add_argument("--segments", type=int, default=400)
    p.add_argument("--beta", type=float, default=5.0)
    p.add_argument("--target", type=float, default=0.99)
    args = p.parse_args()
    segments = random_segments(args.segments)
    phi = np.stack([PENDULUM_FEATURES.values(s) for s in segments])
    returns = np.array([s.true_rewards.sum() for s in segments])
    np.testing.assert_allclose(phi @ PENDULUM_FEATURES.weights, returns, rtol=1e-6)  # the reward is linear in phi
    std = phi.std(axis=0)
    features = (phi - phi.mean(axis=0)) / std
    w_true = unit(PENDULUM_FEATURES.weights * std)
    curves: dict[str, list[float]] = {}
    to_target: dict[str, float | None] = {}
    for acq in ACQUISITIONS:
        runs = [
            run_active_learning(features, w_true, acq, args.queries, beta=args.beta, teacher_beta=math.inf, seed=s)
            for s in args.seeds
        ]
        curves[acq] = [round(float(x), 4) for x in np.mean(runs, axis=0)]
        firsts = [next((i for i, x in enumerate(r) if x >= args.target), math.inf) for r in runs]
        m = statistics.median(firsts)
        to_target[acq] = None if math.isinf(m) else m
        print(json.dumps({"acquisition": acq, "answers_to_target": firsts, "final": [round(r[-1], 4) for r in runs]}))
    print(json.dumps({"alignment": curves, "answers_to_target": to_target, "seeds": args.seeds, "target": args.target}))


if __name__ == "__main__":
    main()
