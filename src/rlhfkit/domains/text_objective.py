"""What a text run's policy maximises, and the user's functions that score or judge its completions.

The policy's reward (``[text.objective]``) is a weighted sum of

- the **loop's reward model**, weight ``learned``: a sequence classifier of the base's architecture,
  or one loaded from ``reward_model`` (a folder written by ``rlhfkit fit-reward`` or any
  ``save_pretrained`` sequence classifier with its tokenizer); fitted on the stored answers each
  round (``refit = true``) or kept as loaded (``refit = false``: the loop then asks no queries);
- **reward functions**, ``functions = {"module:function" = weight}``: Python functions
  ``f(prompts, completions) -> scores``, one float per completion (a rule, a classifier, a judge).

Three more places take a Python function named ``module:function`` (or ``path/to/file.py:function``):
``[text] true_reward`` (a known reward: the simulated human judges by it and the evaluation reports
it as ``true_return``), and ``[text] judge``, ``judge(prompts, completions_a, completions_b) ->
P(a is better)`` per row, which gives the evaluation's ``win_rate_vs_base``.

A module name is imported with the working folder first on ``sys.path`` (``rlhfkit`` is a console
script, whose ``sys.path`` would not hold it otherwise); a ``.py`` path is loaded from that file.
A function that cannot be loaded, or that returns the wrong number of scores or a non-finite one,
is one :class:`~rlhfkit.errors.ConfigError` naming the option and the function.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlhfkit.checks import non_negative, require
from rlhfkit.errors import ConfigError
from rlhfkit.models.text_batch import Prompt

ScoreFn = Callable[[Sequence[Prompt], Sequence[str]], np.ndarray]
"""``(prompts, completions) -> (N,)`` scores, one per completion."""


@dataclass(frozen=True)
class ObjectiveConfig:
    """What the text policy maximises: a weighted sum of the loop's reward model and your reward functions."""

    learned: float = 1.0
    """Weight of the loop's reward model (fitted on the answers, or loaded from reward_model); 0 = leave it out
    (no queries are asked then)."""
    reward_model: str = ""
    """A folder holding a sequence classifier and its tokenizer (from `rlhfkit fit-reward`, or any saved with
    save_pretrained) to start the loop's reward model from; empty = a new one of the base's architecture."""
    refit: bool = True
    """Fit the reward model on every stored answer each round (warm start); false = keep reward_model as loaded
    (frozen): the loop then asks no queries."""
    functions: dict[str, float] = field(default_factory=dict)
    """Reward functions and their weights, {"module:function" = weight} (or "path/to/file.py:function"); each
    takes (prompts, completions) and returns one float per completion."""

    def __post_init__(self) -> None:
        require(self, {"learned": (non_negative, ">= 0")})
        for spec, weight in self.functions.items():
            parse_spec(spec, "text.objective.functions")
            if not (isinstance(weight, int | float) and np.isfinite(weight)):
                raise ValueError(f"functions: the weight of {spec!r} must be a finite number, got {weight!r}")
        if self.learned == 0 and not self.functions:
            raise ValueError("learned is 0 and there are no functions: the policy would have no reward")
        if not self.refit and self.learned > 0 and not self.reward_model:
            raise ValueError("refit = false keeps the reward model as loaded: set reward_model to its folder")

    @property
    def learns(self) -> bool:
        """Whether the loop fits its reward model on answers (and so asks queries)."""
        return self.learned > 0 and self.refit


def parse_spec(spec: str, option: str) -> tuple[str, str]:
    """``"module:function"`` -> ``(module, function)``; ConfigError naming ``option`` when malformed."""
    module, sep, name = spec.rpartition(":")
    if not sep or not module or not name.isidentifier():
        raise ConfigError(f"{option}: {spec!r} is not 'module:function' or 'path/to/file.py:function'")
    return module, name


def load_function(spec: str, option: str) -> Callable[..., Any]:
    """The function ``spec`` names (see the module docstring); ConfigError naming ``option`` if it cannot be."""
    module_name, name = parse_spec(spec, option)
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ConfigError(f"{option}: {spec!r}: no such file {path}")
            loader_spec = importlib.util.spec_from_file_location(f"rlhfkit_user_{path.stem}", path)
            assert loader_spec is not None and loader_spec.loader is not None
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            cwd = str(Path.cwd())
            added = cwd not in sys.path
            if added:
                sys.path.insert(0, cwd)
            try:
                module = importlib.import_module(module_name)
            finally:
                if added:
                    sys.path.remove(cwd)
    except ConfigError:
        raise
    except Exception as e:  # the user's module: any error on import is theirs to see, in one line
        raise ConfigError(f"{option}: {spec!r}: cannot import {module_name} ({type(e).__name__}: {e})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"{option}: {spec!r}: {module_name} has no function {name}")
    return fn


def checked_scores(values: Any, n: int, option: str, spec: str) -> np.ndarray:
    """``values`` as ``(n,)`` floats; ConfigError naming the function if the count or a value is wrong."""
    try:
        out = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{option}: {spec} returned something that is not numbers ({e})") from None
    if out.shape != (n,):
        raise ConfigError(f"{option}: {spec} returned {out.size} scores for {n} completions; one per completion")
    if not np.all(np.isfinite(out)):
        raise ConfigError(f"{option}: {spec} returned a score that is NaN or infinite")
    return out


class ScoreFunction:
    """A user's ``f(prompts, completions)`` whose every answer is checked (:func:`checked_scores`)."""

    def __init__(self, spec: str, option: str) -> None:
        self.spec = spec
        self.option = option
        self.fn = load_function(spec, option)

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> np.ndarray:
        return checked_scores(self.fn(list(prompts), list(completions)), len(completions), self.option, self.spec)


class Judge:
    """A user's ``judge(prompts, a, b) -> P(a better)`` per row, checked to lie in [0, 1]."""

    def __init__(self, spec: str, option: str = "text.judge") -> None:
        self.spec = spec
        self.option = option
        self.fn = load_function(spec, option)

    def __call__(self, prompts: Sequence[Prompt], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        out = checked_scores(self.fn(list(prompts), list(a), list(b)), len(a), self.option, self.spec)
        if np.any((out < 0) | (out > 1)):
            raise ConfigError(f"{self.option}: {self.spec} returned a value outside [0, 1]; it is P(a is better)")
        return out


class Objective:
    """The policy's reward: ``learned * reward_model + sum(weight * function)`` (see :class:`ObjectiveConfig`).

    ``reward_model`` is the loop's reward model as a score function (None when ``learned`` is 0).
    """

    def __init__(self, config: ObjectiveConfig, reward_model: ScoreFn | None) -> None:
        self.config = config
        self.reward_model = reward_model
        self.functions: list[tuple[ScoreFunction, float]] = [
            (ScoreFunction(spec, "text.objective.functions"), float(w)) for spec, w in config.functions.items()
        ]

    def terms(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> Mapping[str, np.ndarray]:
        """Each term's unweighted scores, by name (``"reward_model"`` and each function's spec)."""
        out: dict[str, np.ndarray] = {}
        if self.config.learned > 0 and self.reward_model is not None:
            out["reward_model"] = np.asarray(self.reward_model(prompts, completions), dtype=np.float64)
        for fn, _ in self.functions:
            out[fn.spec] = fn(prompts, completions)
        return out

    def combine(self, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        """The weighted sum of :meth:`terms`' scores."""
        total = np.zeros(len(next(iter(terms.values()))), dtype=np.float64)
        if "reward_model" in terms:
            total += self.config.learned * terms["reward_model"]
        for fn, weight in self.functions:
            total += weight * terms[fn.spec]
        return total

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> np.ndarray:
        return self.combine(self.terms(prompts, completions))
