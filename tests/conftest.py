"""Shared fixtures: tiny run configs that finish in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Under CI (RLHFKIT_CI=1, set by .ci/run) a skipped test fails the session: see skip_guard.py.
pytest_plugins = ["skip_guard"]

# The models in the tests are tiny: one thread is as fast as two, and it keeps the
# suite's time steady when another process holds the machine's other core
# (oversubscribed torch threads slowed single steps a hundredfold here).
torch.set_num_threads(1)

TINY = """
task = "pendulum"
rounds = 2
seed = 0

[feedback]
initial_comparisons = 12
comparisons_per_round = 6

[reward]
ensemble_size = 2
epochs = 10

[control]
env_steps_per_round = 2048
eval_episodes = 2
segment_length = 25

[control.ppo]
n_envs = 2
n_steps = 256
"""


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A 2-round Pendulum run config with 18 comparisons in all."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path
