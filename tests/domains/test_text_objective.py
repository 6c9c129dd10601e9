"""A text run's objective and the user's functions: the weighted sum, and one clear error per bad function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlhfkit.domains.text_objective import Judge, Objective, ObjectiveConfig, ScoreFunction, load_function
from rlhfkit.errors import ConfigError

USER_MODULE = """
def length(prompts, completions):
    return [len(c) for c in completions]

def too_few(prompts, completions):
    return [1.0]

def not_finite(prompts, completions):
    return [float("nan")] * len(completions)

def words(prompts, completions):
    return ["a lot"] * len(completions)

def judge(prompts, a, b):
    return [float(len(x) > len(y)) for x, y in zip(a, b)]

def bad_judge(prompts, a, b):
    return [2.0] * len(a)

broken = 3
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's module, rewards_mod.py, in the working folder (where a module name is looked up)."""
    (tmp_path / "rewards_mod.py").write_text(USER_MODULE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "rewards_mod.py"


def test_the_objective_is_the_weighted_sum_of_its_terms(module: Path) -> None:
    config = ObjectiveConfig(learned=0.5, functions={"rewards_mod:length": 2.0, f"{module}:length": -1.0})
    objective = Objective(config, lambda prompts, completions: np.array([10.0, 20.0]))
    terms = objective.terms(["p", "q"], ["ab", "abcd"])
    assert set(terms) == {"reward_model", "rewards_mod:length", f"{module}:length"}
    # 0.5 * rm + 2 * len - 1 * len
    np.testing.assert_allclose(objective(["p", "q"], ["ab", "abcd"]), [0.5 * 10 + 2 * 2 - 2, 0.5 * 20 + 2 * 4 - 4])
    without = Objective(ObjectiveConfig(learned=0.0, functions={"rewards_mod:length": 1.0}), None)
    assert list(without.terms(["p"], ["abc"])) == ["rewards_mod:length"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rewards_mod", "is not 'module:function'"),
        ("no_such_module_here:f", "cannot import no_such_module_here (ModuleNotFoundError"),
        ("rewards_mod:missing", "rewards_mod has no function missing"),
        ("rewards_mod:broken", "rewards_mod has no function broken"),
        ("nowhere/file.py:f", "no such file nowhere/file.py"),
    ],
)
def test_a_function_that_cannot_be_loaded_is_one_error_naming_the_option(module: Path, spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^text\.true_reward: .*" + message.replace("(", r"\(")):
        load_function(spec, "text.true_reward")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("too_few", "returned 1 scores for 2 completions"),
        ("not_finite", "returned a score that is NaN or infinite"),
        ("words", "returned something that is not numbers"),
    ],
)
def test_a_function_returning_bad_scores_is_named(module: Path, name: str, message: str) -> None:
    fn = ScoreFunction(f"rewards_mod:{name}", "text.objective.functions")
    with pytest.raises(ConfigError, match=rf"^text\.objective\.functions: rewards_mod:{name} {message}"):
        fn(["p", "q"], ["a", "b"])


def test_a_judge_gives_probabilities(module: Path) -> None:
    np.testing.assert_array_equal(Judge("rewards_mod:judge")(["p", "q"], ["aa", "a"], ["a", "aa"]), [1.0, 0.0])
    with pytest.raises(ConfigError, match=r"text\.judge: rewards_mod:bad_judge returned a value outside \[0, 1\]"):
        Judge("rewards_mod:bad_judge")(["p"], ["a"], ["b"])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"learned": 0.0}, "the policy would have no reward"),
        ({"refit": False}, "set reward_model to its folder"),
        ({"learned": -1.0}, "learned must be >= 0"),
        ({"functions": {"m:f": float("inf")}}, "the weight of 'm:f' must be a finite number"),
    ],
)
def test_an_objective_without_a_reward_is_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ObjectiveConfig(**fields)  # type: ignore[arg-type]
