"""Which kind of feedback is worth a person's minute? Held-out agreement per kind, per answer and per minute.

For each feedback kind and each number of answers (50, 200, 1,000), two simulated
annotators (the noise model of ``rlhfkit.experiments.kinds_eval.default_teacher``)
answer uniformly drawn queries about a pool of 600 generations of ``--task``; one
reward is fitted on the answers (``reward/fit.py``; about ``--steps`` AdamW steps, the
learning rate decaying to 0 on a cosine) and scored by **held-out
agreement**: the fraction of 3,000 pairs from a disjoint pool of 400 generations
that it orders like the true reward. Human time uses ``feedback/effort.py``'s
default costs (a comparison 5 s, a ranking of 4 12.5 s, a rating 4 s, a label 3 s,
a correction 22 s, an utterance 12 s). Every cell is run for each of ``--seeds``
(a seed draws the pools, the annotators' noise, the queries and the fit) and
reported as mean ± standard deviation over seeds.

**The budget** is the human-minutes of the best single kind's 1,000-answer row
(best by mean agreement). Three things spend it, each compared with that row:

- **every single kind alone** at those minutes (``round(budget / seconds per answer)``
  answers of it): the honest single-kind baseline at equal effort;
- **the equal split** (the first mix tried): the minutes split equally between all six kinds;
- **the planned mix**, the rule a practitioner can follow without the test pool:

  1. *Pilot*: 50 answers of every kind about the first 80% of the training pool
     (480 generations); one reward per kind fitted on its 50 answers alone, scored
     on 2,000 random pairs of the other 20% of the training pool (120 generations;
     never the evaluation pool) against the true reward. (With people, held-out
     comparisons on those generations play the true reward's part.)
  2. *Value* of a kind = (pilot agreement - 0.5) / minutes per answer: how far above
     chance one human-minute of it lifts a reward.
  3. *Drop* the kinds worth less than a tenth of the best value (no better than
     chance per minute); give the minutes left after the pilot to the others in
     proportion to their value. The pilot's answers are kept and its minutes count
     against the budget.
  4. *Fit* one reward on the pilot's and the new answers together; each kind's loss
     is weighted by its share of the answers, i.e. the fit maximises the joint
     likelihood of every answer (``reward/fit.py``).

The last line printed is one JSON object: ``{"agreement": {kind: {answers: mean}},
"minutes": {kind: {answers: value}}, "mix": {"minutes": m, "agreement": a}, ...}``
where ``mix`` is the planned mix at the budget, plus ``"sd"`` (the same table's
standard deviations), ``"per_seed"``, ``"equal_minutes"``, ``"equal_split"``,
``"plan"`` (pilot values and answers per seed) and ``"margin"`` (the planned mix
minus the best single kind at 1,000 answers, per seed and on average).

    .venv/bin/python bench/feedback_kinds.py [--task pendulum|describe] [--seeds 0 1 2] [--steps 400]
        [--absolute-noise 0.171]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch

from rlhfkit.experiments.kinds_eval import (
    KindsSetup,
    default_teacher,
    evaluate_kinds,
    fit_config,
    make_setup,
    plan_mix,
    run_pilot,
    run_plan,
)
from rlhfkit.feedback.effort import EffortConfig
from rlhfkit.reward.config import RewardConfig

KINDS = ("comparison", "ranking", "rating", "label", "correction", "language")
SIZES = (50, 200, 1000)
PILOT = 50


def _ms(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _cell(values: list[float]) -> str:
    m, s = _ms(values)
    return f"{m:.3f}±{s:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="pendulum", choices=["pendulum", "describe"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=400, help="gradient steps per fit")
    p.add_argument("--interpreter", default="keyword", choices=["keyword", "embedding"])
    p.add_argument(
        "--absolute-noise",
        type=float,
        default=None,
        help="rating and label noise (half-scale units) instead of the default teacher's 0.1; "
        "'perceptual' levels: 0.171 pendulum, 0.190 describe (see docs/benchmarks.md)",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    effort = EffortConfig()
    seconds = {k: effort.seconds(k) for k in KINDS}
    teacher = default_teacher(args.task)
    if args.absolute_noise is not None:
        teacher = dataclasses.replace(teacher, rating_noise=args.absolute_noise, label_noise=args.absolute_noise)
    setups: dict[int, KindsSetup] = {
        s: make_setup(args.task, seed=s, interpreter=args.interpreter, teacher=teacher) for s in args.seeds
    }

    def config(seed: int) -> RewardConfig:
        return fit_config(seed)

    def per_seed(fn: Callable[[int], float]) -> list[float]:
        return [fn(s) for s in args.seeds]

    def score(answers: dict[str, int]) -> list[float]:
        return per_seed(lambda s: evaluate_kinds(setups[s], answers, config(s), seed=s, steps=args.steps).agreement)

    t0 = time.time()
    runs: dict[str, dict[int, list[float]]] = {}
    minutes: dict[str, dict[int, float]] = {}
    print(
        f"task {args.task}, seeds {args.seeds}, {args.steps} steps per fit, interpreter {args.interpreter}, "
        f"rating/label noise {teacher.rating_noise}/{teacher.label_noise}"
    )
    print("held-out agreement, mean ± sd over seeds")
    print(f"{'kind':<11} {'s/answer':>8} | " + " | ".join(f"{n:>4} ans: agree        min  agree/min" for n in SIZES))
    for kind in KINDS:
        runs[kind], minutes[kind] = {}, {}
        cells = []
        for n in SIZES:
            vals = score({kind: n})
            m = n * seconds[kind] / 60
            runs[kind][n], minutes[kind][n] = vals, m
            cells.append(f"{'':>9}{_cell(vals)} {m:6.1f} {statistics.mean(vals) / m:8.4f}")
        print(f"{kind:<11} {seconds[kind]:8.1f} | " + " | ".join(cells), flush=True)
    best = max(KINDS, key=lambda k: statistics.mean(runs[k][1000]))
    budget = minutes[best][1000]
    best_vals = runs[best][1000]
    print(f"\nbudget: the best single kind at 1000 answers, {best}: {_cell(best_vals)} in {budget:.1f} human-minutes")

    print("every single kind alone at the budget:")
    equal_minutes: dict[str, dict[str, float | int]] = {}
    for kind in KINDS:
        n = round(budget * 60 / seconds[kind])
        vals = runs[kind][n] if n in runs[kind] else score({kind: n})
        equal_minutes[kind] = {"answers": n, "agreement": round(statistics.mean(vals), 4), "sd": round(_ms(vals)[1], 4)}
        print(f"  {kind:<11} {n:5d} answers: {_cell(vals)}", flush=True)
    top_equal = max(KINDS, key=lambda k: float(equal_minutes[k]["agreement"]))

    split = {k: max(1, round(budget / len(KINDS) * 60 / seconds[k])) for k in KINDS}
    split_minutes = sum(n * seconds[k] for k, n in split.items()) / 60
    split_vals = score(split)
    print(f"equal split {split}: {_cell(split_vals)} in {split_minutes:.1f} human-minutes")

    plans: dict[int, dict[str, object]] = {}
    mix_vals: list[float] = []
    mix_minutes: list[float] = []
    for s in args.seeds:
        pilot = run_pilot(setups[s], KINDS, PILOT, config(s), seed=s, steps=args.steps)
        plan = plan_mix(pilot, seconds, budget)
        result = run_plan(setups[s], pilot, plan, config(s), seed=s, steps=args.steps)
        m = sum(n * seconds[k] for k, n in plan.answers.items()) / 60
        mix_vals.append(result.agreement)
        mix_minutes.append(m)
        plans[s] = {
            "pilot_agreement": {k: round(v, 4) for k, v in pilot.agreement.items()},
            "value_per_minute": {k: round(v, 3) for k, v in plan.value.items()},
            "answers": plan.answers,
            "minutes": round(m, 2),
            "agreement": round(result.agreement, 4),
        }
        print(
            f"planned mix, seed {s}: pilot {plans[s]['pilot_agreement']}, value/min {plans[s]['value_per_minute']}, "
            f"answers {plan.answers}: {result.agreement:.3f} in {m:.1f} human-minutes",
            flush=True,
        )
    margins = [a - b for a, b in zip(mix_vals, best_vals, strict=True)]
    print(f"planned mix: {_cell(mix_vals)} in {statistics.mean(mix_minutes):.1f} human-minutes")
    print(
        f"margin, planned mix - {best} at 1000 answers: {_cell(margins)} "
        f"(per seed {', '.join(f'{m:+.3f}' for m in margins)})"
    )
    print(
        f"best single kind at the budget: {top_equal} {equal_minutes[top_equal]['agreement']:.3f}; "
        f"planned mix - it: {statistics.mean(mix_vals) - float(equal_minutes[top_equal]['agreement']):+.3f}"
    )
    print(f"total {time.time() - t0:.0f} s", file=sys.stderr)

    def table(stat: Callable[[list[float]], float]) -> dict[str, dict[str, float]]:
        return {k: {str(n): round(stat(v), 4) for n, v in d.items() if n in SIZES} for k, d in runs.items()}

    print(
        json.dumps(
            {
                "task": args.task,
                "seeds": args.seeds,
                "rating_noise": teacher.rating_noise,
                "label_noise": teacher.label_noise,
                "agreement": table(statistics.mean),
                "sd": table(lambda v: _ms(v)[1]),
                "minutes": {k: {str(n): round(v, 2) for n, v in d.items()} for k, d in minutes.items()},
                "mix": {"minutes": round(statistics.mean(mix_minutes), 2), "agreement": round(_ms(mix_vals)[0], 4)},
                "mix_sd": round(_ms(mix_vals)[1], 4),
                "best": {"kind": best, "minutes": round(budget, 2), "per_seed": [round(v, 4) for v in best_vals]},
                "per_seed": {"mix": [round(v, 4) for v in mix_vals], "equal_split": [round(v, 4) for v in split_vals]},
                "margin": {
                    "mean": round(_ms(margins)[0], 4),
                    "sd": round(_ms(margins)[1], 4),
                    "per_seed": [round(m, 4) for m in margins],
                },
                "equal_minutes": equal_minutes,
                "equal_split": {
                    "answers": split,
                    "minutes": round(split_minutes, 2),
                    "agreement": round(_ms(split_vals)[0], 4),
                },
                "plan": {str(s): v for s, v in plans.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
