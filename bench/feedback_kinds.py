"""Which kind of feedback is worth a person's minute? Held-out agreement per kind, per answer and per minute.

For each feedback kind and each number of answers (50, 200, 1,000), two simulated
annotators (the noise model of ``rlhfkit.reward.kinds_eval.default_teacher``)
answer uniformly drawn queries about a pool of 600 generations of ``--task``; one
reward is fitted on the answers (``reward/mixed.py``) and scored by **held-out
agreement**: the fraction of 3,000 pairs from a disjoint pool of 400 generations
that it orders like the true reward. Human time uses ``feedback/effort.py``'s
default costs (a comparison 5 s, a ranking of 4 12.5 s, a rating 4 s, a label 3 s,
a correction 22 s, an utterance 12 s).

The **mix** spends the same human minutes as the best single kind's 1,000-answer
row, split equally between all six kinds. The last line printed is one JSON object:
``{"agreement": {kind: {answers: value}}, "minutes": {kind: {answers: value}},
"mix": {"minutes": m, "agreement": a}}``.

    .venv/bin/python bench/feedback_kinds.py [--task pendulum|describe] [--seeds 0] [--steps 400]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from rlhfkit.feedback.effort import EffortCosts
from rlhfkit.reward.kinds_eval import evaluate_kinds, make_setup
from rlhfkit.reward.mixed import MixedFitConfig

KINDS = ("comparison", "ranking", "rating", "label", "correction", "language")
SIZES = (50, 200, 1000)
RANKING_K = 4


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="pendulum", choices=["pendulum", "describe"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=400, help="gradient steps per fit")
    p.add_argument("--interpreter", default="keyword", choices=["keyword", "embedding"])
    args = p.parse_args()
    torch.set_num_threads(1)
    costs = EffortCosts()
    seconds = {k: costs.seconds(k, RANKING_K if k == "ranking" else None) for k in KINDS}
    config = MixedFitConfig(steps=args.steps)
    setups = {s: make_setup(args.task, seed=s, interpreter=args.interpreter) for s in args.seeds}

    def score(answers: dict[str, int]) -> float:
        vals = [
            evaluate_kinds(setups[s], answers, MixedFitConfig(steps=args.steps, seed=s), seed=s).agreement
            for s in args.seeds
        ]
        return statistics.mean(vals)

    t0 = time.time()
    agreement: dict[str, dict[int, float]] = {}
    minutes: dict[str, dict[int, float]] = {}
    print(f"task {args.task}, seeds {args.seeds}, {config.steps} steps per fit, interpreter {args.interpreter}")
    print(f"{'kind':<11} {'s/answer':>8} | " + " | ".join(f"{n:>4} ans: agree  min  agree/min" for n in SIZES))
    for kind in KINDS:
        agreement[kind], minutes[kind] = {}, {}
        cells = []
        for n in SIZES:
            a = score({kind: n})
            m = n * seconds[kind] / 60
            agreement[kind][n], minutes[kind][n] = a, m
            cells.append(f"{'':>9}{a:.3f} {m:6.1f} {a / m:8.4f}")
        print(f"{kind:<11} {seconds[kind]:8.1f} | " + " | ".join(cells), flush=True)
    best = max(KINDS, key=lambda k: agreement[k][1000])
    budget = minutes[best][1000]
    mix_answers = {k: max(1, round(budget / len(KINDS) * 60 / seconds[k])) for k in KINDS}
    mix_minutes = sum(n * seconds[k] for k, n in mix_answers.items()) / 60
    mix_agreement = score(mix_answers)
    print(f"best single kind at 1000 answers: {best} ({agreement[best][1000]:.3f} in {budget:.1f} human-minutes)")
    print(f"mix of all kinds, equal minutes each {mix_answers}: {mix_agreement:.3f} in {mix_minutes:.1f} human-minutes")
    print(f"total {time.time() - t0:.0f} s", file=sys.stderr)
    print(
        json.dumps(
            {
                "agreement": {k: {str(n): round(v, 4) for n, v in d.items()} for k, d in agreement.items()},
                "minutes": {k: {str(n): round(v, 2) for n, v in d.items()} for k, d in minutes.items()},
                "mix": {"minutes": round(mix_minutes, 2), "agreement": round(mix_agreement, 4)},
            }
        )
    )


if __name__ == "__main__":
    main()
