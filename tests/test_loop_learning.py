"""The whole loop learns: a short run raises the task's true return over its base policy, by a margin.

Each test runs collect -> fit -> optimise for a few rounds with a fixed seed and compares the
true return of the last round's evaluation with round 0's (the base policy, evaluated the same
way before any feedback). The simulated human sees only the true reward; the policy sees only
the learned one, so a broken step anywhere in the loop (answers, fit, optimiser, the reward
handed to the optimiser) leaves the true return where it started.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhfkit.config import load_config
from rlhfkit.loop import Run

PENDULUM = """
task = "pendulum"
rounds = 4
seed = 0

[feedback]
initial_comparisons = 60
comparisons_per_round = 30

[feedback.teacher]
beta = inf
mistake_prob = 0.0

[reward]
ensemble_size = 3
epochs = 30

[control]
env_steps_per_round = 12288
eval_episodes = 10

[control.ppo]
n_envs = 4
n_steps = 512
"""

PENDULUM_MARGIN = 500.0
"""Least rise in Pendulum's true episode return (200 steps; a random policy scores about -1,100 to -1,200,
a swing-up about -150)."""


def _true_returns(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [float(r["true_return"]) for r in rows]


@pytest.mark.slow
def test_the_control_loop_raises_the_true_return_over_the_base(tmp_path: Path) -> None:
    """Pendulum from a fresh policy: 150 comparisons from a noise-free simulated human, 4 x 12,288 PPO steps.

    Measured with the one reward fit (issue 11): seed 0 -1056.6 -> -158.5 (+898), and with the same
    config seeds 1, 2 and 3 -1172.7 -> -209.2 (+964), -1114.5 -> -243.6 (+871) and -1163.0 -> -297.8
    (+865); before it +888, +913, +867 and +924; about 30 s of one core. Three rounds
    instead of four gained only +305 to +554: the policy finds the swing-up late.
    """
    path = tmp_path / "pendulum.toml"
    path.write_text(PENDULUM, encoding="utf-8")
    Run.create(load_config(path), tmp_path / "run", progress=False).run()
    returns = _true_returns(tmp_path / "run")
    print(f"pendulum true return by round: {[round(r, 1) for r in returns]}")
    assert len(returns) == 5
    assert returns[-1] - returns[0] >= PENDULUM_MARGIN, returns


DESCRIBE = """
task = "text:describe"
rounds = 2
seed = 0

[text]
steps_per_round = 20
eval_per_prompt = 16
max_new_tokens = 16
optimizer = "grpo"

[text.group]
n_per_prompt = 4
prompts_per_step = 8
lr = 2e-4

[text.base]
pretrain_steps = 300

[feedback]
initial_comparisons = 40
comparisons_per_round = 20

[feedback.teacher]
beta = 4.0

[reward]
epochs = 3
lr = 1e-3

[kl]
beta = 0.3
"""

DESCRIBE_MARGIN = 0.15
"""Least rise in the text task's mean true reward per completion (160 completions, fixed sampling seeds;
a completion scores from about -4 to 3)."""


@pytest.mark.slow
def test_the_text_loop_raises_the_true_reward_over_the_base(tmp_path: Path) -> None:
    """The built-in text task: a tiny GPT-2 pre-trained for 300 steps, 60 comparisons, 2 x 20 GRPO steps.

    Measured with the one reward fit (issue 11): seed 0 -0.139 -> 0.247 (+0.386), and with the same
    config seeds 1 and 2 -1.002 -> 0.042 (+1.044) and -0.416 -> 0.188 (+0.603); before it +0.358 (on
    this machine on the day of the change: +0.473), +0.936 and +0.633; about 15 s of one core.
    """
    path = tmp_path / "describe.toml"
    path.write_text(DESCRIBE, encoding="utf-8")
    Run.create(load_config(path), tmp_path / "run", progress=False).run()
    returns = _true_returns(tmp_path / "run")
    print(f"describe true reward by round: {[round(r, 3) for r in returns]}")
    assert len(returns) == 3
    assert returns[-1] - returns[0] >= DESCRIBE_MARGIN, returns
