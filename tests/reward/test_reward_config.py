"""The one reward config: the same fields in control and text runs, the text run's defaults, renamed keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlhfkit.config import ConfigError, load_config
from rlhfkit.reward.config import RewardConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("task", ["pendulum", "text:describe"])
def test_an_old_key_names_the_field_that_replaced_it(tmp_path: Path, task: str) -> None:
    path = _write(tmp_path, f'task = "{task}"\n\n[reward]\nmax_pairs = 16\n')
    with pytest.raises(ConfigError) as e:
        load_config(path)
    message = str(e.value)
    assert "reward.max_pairs: renamed" in message and "reward.batch_size" in message, message
    assert str(path) in message


def test_a_partial_text_reward_section_keeps_the_text_runs_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, 'task = "text:describe"\n\n[reward]\nepochs = 2\nholdout_frac = 0.3\n'))
    assert cfg.reward == RewardConfig(ensemble_size=1, epochs=2, lr=1e-3, weight_decay=0.0, holdout_frac=0.3)
    assert load_config(_write(tmp_path, 'task = "text:describe"\n')).reward == RewardConfig(
        ensemble_size=1, epochs=3, lr=1e-3, weight_decay=0.0
    )


def test_a_text_run_has_one_reward_member(tmp_path: Path) -> None:
    path = _write(tmp_path, 'task = "text:describe"\n\n[reward]\nensemble_size = 3\n')
    with pytest.raises(ConfigError, match=r"reward\.ensemble_size: a text run's reward model is one transformer"):
        load_config(path)


def test_control_and_text_runs_fill_in_the_same_config() -> None:
    control = load_config(EXAMPLES / "pendulum-kinds.toml").reward
    text = load_config(EXAMPLES / "text-task.toml").reward
    assert type(control) is type(text) is RewardConfig
    assert (control.ensemble_size, control.use_action, text.ensemble_size, text.epochs) == (3, False, 1, 3)


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_config_loads(example: Path) -> None:
    cfg = load_config(example)
    assert isinstance(cfg.reward, RewardConfig)
