"""Tests for rlhfkit.config: loading TOML run configs, error messages, defaults and round trips."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from rlhfkit.config import (
    BaseConfig,
    ConfigError,
    ControlConfig,
    FeedbackConfig,
    KLConfig,
    RunConfig,
    TextConfig,
    config_to_toml,
    describe,
    load_config,
)
from rlhfkit.feedback.teacher import TeacherConfig
from rlhfkit.optimize.group.trainer import GroupPGConfig
from rlhfkit.optimize.ppo.lm_trainer import TextPPOConfig
from rlhfkit.optimize.ppo.loss import PPOConfig
from rlhfkit.reward.config import RewardConfig
from rlhfkit.tasks import get_task

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


VALID = """
task = "cartpole"
rounds = 3
seed = 42

[feedback]
initial_comparisons = 10
comparisons_per_round = 5

[feedback.teacher]
beta = 2.5
mistake_prob = 0.1
equal_threshold = 1
gamma = 0.99

[reward]
ensemble_size = 2
hidden = [16, 8]

[control.ppo]
n_steps = 128
target_kl = 0.02

[kl]
beta = 0.1
estimator = "k3"
adaptive = true

[control.base]
kind = "proxy"
proxy_steps = 5000
"""


def test_valid_file(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, VALID))
    assert (cfg.task, cfg.rounds, cfg.seed) == ("cartpole", 3, 42)
    assert cfg.control is not None and cfg.text is None
    assert cfg.control.env_steps_per_round == ControlConfig().env_steps_per_round  # not given: default
    assert cfg.feedback == FeedbackConfig(
        initial_comparisons=10,
        comparisons_per_round=5,
        teacher=TeacherConfig(beta=2.5, mistake_prob=0.1, equal_threshold=1.0, gamma=0.99),
    )
    assert isinstance(cfg.feedback.teacher.equal_threshold, float)  # an integer in TOML becomes a float
    assert cfg.reward == RewardConfig(ensemble_size=2, hidden=(16, 8))
    assert cfg.kl == KLConfig(beta=0.1, estimator="k3", adaptive=True)
    assert cfg.control.base == BaseConfig(kind="proxy", proxy_steps=5000)
    assert cfg.control.ppo.n_steps == 128
    assert cfg.control.ppo.target_kl == 0.02


def test_empty_file_gives_defaults_with_the_tasks_settings(tmp_path: Path) -> None:
    defaults = get_task("pendulum").defaults
    control = ControlConfig(ppo=PPOConfig(**defaults["control"]["ppo"]))
    expected = RunConfig(control=control, reward=RewardConfig(**defaults["reward"]))
    assert load_config(_write(tmp_path, "")) == expected


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    p = _write(tmp_path, "[feedback]\ncomparisons_per_rond = 5\n", name="my-run.toml")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "feedback.comparisons_per_rond" in msg
    assert "did you mean comparisons_per_round" in msg
    assert "my-run.toml" in msg


def test_a_renamed_key_gets_one_message_naming_its_new_name(tmp_path: Path) -> None:
    """An older config file (or an older run folder's config.toml) that still says learning_rate."""
    p = _write(tmp_path, "[control.ppo]\nlearning_rate = 1e-3\n", name="old-run.toml")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}: control.ppo.learning_rate: renamed to control.ppo.lr"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_config_loads_in_todays_layout(path: Path) -> None:
    notes: list[str] = []
    config = load_config(path, notes=notes)
    assert config.task and config.rounds >= 1 and getattr(config, config.domain) is not None
    assert notes == []  # nothing to upgrade


def test_a_control_config_of_the_older_layout_reads_as_the_same_run_with_a_note(tmp_path: Path) -> None:
    old = _write(
        tmp_path,
        "rounds = 2\nenv_steps_per_round = 4096\neval_episodes = 3\n[feedback]\nsegment_length = 30\n"
        "[ppo]\nn_steps = 128\n[base]\nkind = 'proxy'\n",
        "old.toml",
    )
    new = _write(
        tmp_path,
        "rounds = 2\n[control]\nenv_steps_per_round = 4096\neval_episodes = 3\nsegment_length = 30\n"
        "[control.ppo]\nn_steps = 128\n[control.base]\nkind = 'proxy'\n",
        "new.toml",
    )
    notes: list[str] = []
    assert load_config(old, notes=notes) == load_config(new)
    assert notes == [
        f"{old}: written for the layout before the one loop, read as: env_steps_per_round -> "
        "control.env_steps_per_round; eval_episodes -> control.eval_episodes; ppo -> control.ppo; base -> "
        "control.base; feedback.segment_length -> control.segment_length"
    ]
    # Half in each layout is one error saying where the old keys go.
    both = _write(tmp_path, "env_steps_per_round = 4096\n[control]\neval_episodes = 3\n", "both.toml")
    with pytest.raises(ConfigError, match=r"env_steps_per_round: belong in \[control\] now"):
        load_config(both)
    # A domain's section on a task of the other domain is named.
    with pytest.raises(ConfigError, match=r"\[text\] is for text tasks; task 'pendulum' is a control task"):
        load_config(_write(tmp_path, "[text]\nsteps_per_round = 3\n", "wrong.toml"))


def test_unknown_key_without_close_match_lists_known(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"kl\.zzzzzz: unknown field \(known: beta, estimator"):
        load_config(_write(tmp_path, "[kl]\nzzzzzz = 1\n"))


def test_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"rewrad: unknown field.*did you mean reward"):
        load_config(_write(tmp_path, "[rewrad]\nepochs = 3\n"))


def test_unknown_ppo_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"control\.ppo\.n_stesp: unknown field.*did you mean n_steps"):
        load_config(_write(tmp_path, "[control.ppo]\nn_stesp = 3\n"))


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ('rounds = "x"', r"rounds: expected an integer, got 'x'"),
        ("rounds = 2.0", r"rounds: expected an integer"),
        ("rounds = true", r"rounds: expected an integer"),
        ('[feedback]\nlatency_s = "slow"', r"feedback\.latency_s: expected a number"),
        ("[kl]\nadaptive = 1", r"kl\.adaptive: expected true or false"),
        ("[reward]\nhidden = 64", r"reward\.hidden: expected a list"),
        ('[reward]\nhidden = [64, "x"]', r"reward\.hidden\[1\]: expected an integer"),
        ("[feedback.teacher]\nbeta = nan", r"feedback\.teacher\.beta: nan is not a valid value"),
        ("feedback = 3", r"feedback: expected a table"),
        ("control = 3", r"control: expected a table"),
        ("task = 3", r"task: expected a string"),
        ('[control.ppo]\ntarget_kl = "x"', r"control\.ppo\.target_kl: expected a number"),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as e:
        load_config(_write(tmp_path, text + "\n"))
    assert "run.toml" in str(e.value)


def test_bad_literal(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"kl\.estimator: 'k9' is not one of 'k1', 'k2', 'k3'"):
        load_config(_write(tmp_path, '[kl]\nestimator = "k9"\n'))


def test_teacher_value_rejected_names_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, "[feedback.teacher]\nmistake_prob = 2\n"))
    msg = str(e.value)
    assert "feedback.teacher" in msg
    assert "mistake_prob" in msg
    assert "run.toml" in msg


def test_run_level_value_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rounds must be >= 1"):
        load_config(_write(tmp_path, "rounds = 0\n"))


def test_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "rounds = = 3\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_unknown_task_suggests_close_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, 'task = "pendulm"\n'))
    msg = str(e.value)
    assert "unknown task 'pendulm'" in msg
    assert "did you mean pendulum" in msg
    assert "run.toml" in msg


def test_unknown_env_id_suggests_close_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, 'task = "env:Pendulm-v1"\n'))
    msg = str(e.value)
    assert "Pendulm-v1" in msg
    assert "did you mean" in msg and "Pendulum-v1" in msg


def test_env_task_is_accepted(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, 'task = "env:Pendulum-v1"\n')).task == "env:Pendulum-v1"


def test_task_ppo_defaults_apply_and_are_overridden(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, 'task = "cartpole"\n[control.ppo]\nn_steps = 64\nclip_coef = 0.1\n')).control
    assert cfg is not None
    # given fields win
    assert cfg.ppo.n_steps == 64
    assert cfg.ppo.clip_coef == 0.1
    # the task's defaults fill the rest of what it knows (cartpole: gamma 0.99, lr 3e-4, n_envs 4)
    assert cfg.ppo.gamma == 0.99
    assert cfg.ppo.lr == 3e-4
    assert cfg.ppo.n_envs == 4
    # and PPOConfig's own defaults everything else
    assert cfg.ppo.update_epochs == PPOConfig().update_epochs
    assert cfg.ppo.gae_lambda == PPOConfig().gae_lambda


def test_task_ppo_defaults_without_ppo_table(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, 'task = "halfcheetah"\n')).control
    assert cfg is not None
    assert cfg.ppo == PPOConfig(n_envs=4, n_steps=512, gamma=0.99, lr=3e-4)
    assert cfg.ppo != PPOConfig()  # differs from the bare defaults (gamma 0.9, lr 1e-3)


@pytest.mark.parametrize(("task", "use_action"), [("pendulum", False), ("halfcheetah", False), ("reacher", True)])
def test_task_reward_input_defaults(tmp_path: Path, task: str, use_action: bool) -> None:
    """The state-only r(s) is a task's default where it was measured to learn better (docs/benchmarks.md)."""
    assert load_config(_write(tmp_path, f'task = "{task}"\n')).reward.use_action is use_action
    path = _write(tmp_path, f'task = "{task}"\n\n[reward]\nuse_action = {str(not use_action).lower()}\n')
    assert load_config(path).reward.use_action is (not use_action)  # the file's own setting wins


def test_overrides(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "rounds = 3\nseed = 1\n"), overrides={"rounds": 5})
    assert (cfg.rounds, cfg.seed) == (5, 1)
    with pytest.raises(ConfigError, match="rounds: expected an integer"):
        load_config(_write(tmp_path, "rounds = 3\n"), overrides={"rounds": "many"})


@pytest.mark.parametrize(
    "cfg",
    [
        RunConfig(),  # beta = inf, skip_threshold = -inf, target_kl = None
        RunConfig(
            task="cartpole",
            rounds=2,
            seed=7,
            feedback=FeedbackConfig(
                initial_comparisons=12,
                teacher=TeacherConfig(beta=math.inf, mistake_prob=0.1, skip_threshold=-3.5, gamma=0.95),
                latency_s=0.25,
            ),
            reward=RewardConfig(ensemble_size=1, hidden=(32,), lr=3e-4),
            kl=KLConfig(beta=0.2, estimator="k2", adaptive=True, target=0.1),
            control=ControlConfig(
                segment_length=30,
                ppo=PPOConfig(n_steps=64, target_kl=0.015, hidden=(8, 8), anneal_lr=True),
                base=BaseConfig(kind="checkpoint", path="runs/x/policy.pt"),
            ),
        ),
        RunConfig(feedback=FeedbackConfig(teacher=TeacherConfig(beta=0.5, graded=True, equal_threshold=0.2))),
        RunConfig(
            task="text:describe",
            reward=RewardConfig(ensemble_size=1, epochs=2),
            kl=KLConfig(beta=0.1, estimator="k1"),
            text=TextConfig(
                optimizer="ppo",
                max_new_tokens=16,
                group=GroupPGConfig(max_new_tokens=16, n_per_prompt=3),
                ppo=TextPPOConfig(max_new_tokens=16, lr=1e-4),
            ),
        ),
    ],
    ids=["defaults", "control", "graded", "text"],
)
def test_round_trip(tmp_path: Path, cfg: RunConfig) -> None:
    text = config_to_toml(cfg)
    back = load_config(_write(tmp_path, text))
    assert back == cfg
    assert config_to_toml(back) == text


def test_round_trip_keeps_infinite_beta(tmp_path: Path) -> None:
    cfg = RunConfig()
    assert math.isinf(cfg.feedback.teacher.beta)
    text = config_to_toml(cfg)
    assert "beta = inf" in text
    back = load_config(_write(tmp_path, text))
    assert back.feedback.teacher.beta == math.inf
    assert back.feedback.teacher.skip_threshold == -math.inf


def test_describe_lists_teacher_beta_with_doc() -> None:
    lines = describe()
    beta = [line for line in lines if line.startswith("feedback.teacher.beta ")]
    assert len(beta) == 1
    assert "feedback.teacher.beta = inf" in beta[0]
    assert "Boltzmann rationality" in beta[0]
    assert "[feedback.teacher]" in "\n".join(lines)


def test_describe_covers_every_field_with_a_doc() -> None:
    lines = describe()

    def leaves(cls: type, prefix: str = "") -> list[str]:
        out: list[str] = []
        sections = {"control": ControlConfig(), "text": TextConfig()}  # a domain's section: None unless its task's
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
            default = sections.get(f.name, default) if cls is RunConfig else default
            if dataclasses.is_dataclass(default):
                out += leaves(type(default), f"{prefix}{f.name}.")
            else:
                out.append(prefix + f.name)
        return out

    names = [line.split(" = ", 1)[0] for line in lines if not line.startswith("[")]
    assert names == leaves(RunConfig)
    for line in lines:
        doc = line.split("  # ", 1)[1]
        assert doc.strip(), f"no help text: {line}"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("[kl]\nadaptive = true\nbeta = 0.1\ntarget = 0", "kl.target", id="kl.target"),
        pytest.param("[kl]\nadaptive = true", "kl.beta", id="kl.adaptive-beta-0"),
        pytest.param("[kl]\nbeta = -1", "kl.beta", id="kl.beta"),
        pytest.param("[kl]\nhorizon = 0", "kl.horizon", id="kl.horizon"),
        pytest.param("[control.ppo]\nminibatch_size = 0", "ppo.minibatch_size", id="ppo.minibatch_size"),
        pytest.param("[reward]\nholdout_frac = 1.5", "reward.holdout_frac", id="reward.holdout_frac"),
        pytest.param(
            "[feedback]\ninitial_comparisons = -3", "feedback.initial_comparisons", id="feedback.initial_comparisons"
        ),
    ],
)
def test_out_of_range_values_are_rejected_at_load(tmp_path: Path, text: str, field: str) -> None:
    section, leaf = field.split(".")[-2:]
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text + "\n"))
    assert section in str(e.value)
    assert leaf in str(e.value)


def test_config_help_lists_the_fields_of_control_and_text_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from rlhfkit.cli import main

    assert main(["config-help"]) == 0
    out = capsys.readouterr().out
    control, text = out.split("# Text runs ([text]): task = 'text:describe' or 'text:chat'\n")
    assert "# Control runs ([control]):" in control and "[text" not in control and "[control" not in text
    assert "[feedback]  (control runs)  # Step 1" in control and "\ncontrol.env_steps_per_round = 20000 " in control
    assert "[feedback]  (text runs)  # Step 1" in text and "[text.group]  (text runs)" in text
    assert "\ntext.steps_per_round = 30 " in text and "text.optimizer = 'grpo'" in text and "algorithm" not in out
    # A section's defaults are the ones its task gives it, not those of the bare section class.
    assert "\ntext.group.max_new_tokens = 24 " in text and "\nfeedback.teacher.beta = 4.0 " in text
    assert "\nreward.epochs = 3 " in text and "\nkl.estimator = 'k3' " in text and "\nkl.beta = 0.05 " in text
    assert "\ncontrol.ppo.gamma = 0.9 " in control and "\nkl.beta = 0.0 " in control  # pendulum's
