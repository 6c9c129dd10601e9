"""Run configuration: one documented dataclass per part, loaded from TOML.

Every field's docstring (the string literal under it) is its help text:
``rlhfkit config-help`` prints them all. Loading checks names and types and
reports the first problem with its dotted path, e.g.
``config.toml: feedback.comparisons_per_rond: unknown field (did you mean comparisons_per_round?)``.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import itertools
import math
import textwrap
import tomllib
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import tomli_w

from rlhfkit.checks import non_negative, positive, require
from rlhfkit.errors import ConfigError
from rlhfkit.feedback.effort import EffortConfig
from rlhfkit.feedback.mix import check_kinds
from rlhfkit.feedback.teacher import TeacherConfig
from rlhfkit.optimize.ppo.loss import PPOConfig
from rlhfkit.reward.config import RewardConfig


@dataclass(frozen=True)
class FeedbackConfig:
    """Step 1: who answers, and how many comparisons per round."""

    human: Literal["simulated", "web"] = "simulated"
    """Who answers: 'simulated' (a teacher with the noise model below), or 'web': people in
    `rlhfkit serve RUN_DIR`; the loop posts queries, keeps optimising, and fits on the answers that have arrived."""
    web_min_answers: int = 10
    """With human = 'web': usable answers that must be stored before the reward is fitted (the loop waits for them)."""
    web_poll_s: float = 2.0
    """With human = 'web': seconds between looks at the store while waiting for answers or while paused."""
    store_url: str = ""
    """Feedback store URL shared with `rlhfkit serve` (e.g. postgresql://user:pw@host/db);
    empty = RUN_DIR/feedback.sqlite."""
    instructions: str = ""
    """What people in the web app are asked to look for (what "better" means), shown on every query; empty =
    the task's default. The rating scale and label choices they answer on are teacher.rating_scale and
    teacher.label_choices, the simulated human's too."""
    initial_comparisons: int = 40
    """Comparisons asked in round 1, about segments of the base policy (queries of every kind in `kinds`)."""
    comparisons_per_round: int = 20
    """Comparisons asked in each later round (queries of every kind in `kinds`)."""
    segment_length: int = 0
    """Steps per compared segment; 0 = the task's default."""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    """The simulated human's noise model."""
    latency_s: float = 0.0
    """Seconds the simulated human takes per answer (to mimic a person's pace)."""
    kinds: dict[str, float] = field(default_factory=lambda: {"comparison": 1.0})
    """Share of each round's queries per feedback kind, summing to 1, e.g. {comparison = 0.5, ranking = 0.25,
    rating = 0.25}. Kinds: comparison, ranking (of 4), rating, label, correction, language. With any kind
    besides comparison, initial_comparisons and comparisons_per_round count queries of every kind and one
    reward is fitted on all stored answers of every kind (reward/fit.py)."""
    interpreter: Literal["keyword", "embedding"] = "keyword"
    """How language answers become training signal: 'keyword' (word lists) or 'embedding'
    (all-MiniLM-L6-v2 sentence embeddings, offline)."""
    effort: EffortConfig = field(default_factory=EffortConfig)
    """Human-seconds per answer of each kind; metrics.jsonl's human_minutes adds them up over stored answers."""

    def __post_init__(self) -> None:
        check_kinds(self.kinds, self.human)
        require(
            self,
            {
                "initial_comparisons": (positive, ">= 1"),
                "comparisons_per_round": (non_negative, ">= 0"),
                "segment_length": (non_negative, ">= 0 (0 = the task's default)"),
                "latency_s": (non_negative, ">= 0"),
                "web_min_answers": (positive, ">= 1"),
                "web_poll_s": (positive, "> 0"),
            },
        )


@dataclass(frozen=True)
class KLConfig:
    """The penalty beta * KL(pi_new || pi_base), added per step to the optimised reward."""

    beta: float = 0.0
    """Initial (or fixed) penalty weight beta."""
    estimator: Literal["k1", "k2", "k3"] = "k1"
    """Per-sample KL estimator: k1 = log pi - log pi_base, k3 = (r - 1) - log r with r = pi_base / pi."""
    adaptive: bool = False
    """Adapt beta towards `target` with the Ziegler et al. (2019) controller."""
    target: float = 0.05
    """Target per-step KL for the adaptive controller (nats)."""
    horizon: float = 10000.0
    """Controller horizon: beta moves by at most 20% per `horizon` env steps."""

    def __post_init__(self) -> None:
        require(
            self,
            {
                "beta": (lambda b: 0 <= b < float("inf"), ">= 0 and finite"),
                "target": (positive, "> 0"),
                "horizon": (positive, "> 0"),
            },
        )


@dataclass(frozen=True)
class BaseConfig:
    """The base policy pi_phi that the KL term keeps the new policy close to."""

    kind: Literal["fresh", "checkpoint", "proxy"] = "fresh"
    """'fresh': newly initialised; 'checkpoint': loaded from `path`; 'proxy': pre-trained on the task's proxy reward."""
    path: str = ""
    """A policy file (`rlhfkit` checkpoint or base_policy.pt) for kind = 'checkpoint'."""
    proxy_steps: int = 100000
    """Env steps of PPO on the proxy reward for kind = 'proxy'."""

    def __post_init__(self) -> None:
        require(self, {"proxy_steps": (positive, ">= 1")})
        if self.kind == "checkpoint" and not self.path:
            raise ValueError("kind = 'checkpoint' needs path = the policy file to start from")


@dataclass(frozen=True)
class RunConfig:
    """A whole RLHF run on a control task."""

    task: str = "pendulum"
    """Built-in task name (pendulum, cartpole, reacher, halfcheetah) or env:<gymnasium id>."""
    rounds: int = 8
    """Rounds of collect feedback -> fit reward -> optimise policy."""
    seed: int = 0
    """Seed of every random generator in the run."""
    env_steps_per_round: int = 20000
    """PPO env steps per round on the learned reward."""
    eval_episodes: int = 10
    """Episodes (deterministic policy, fixed seeds) for each round's evaluation."""
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    """Step 1: collecting feedback."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Step 2: fitting the reward model."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """Step 3: PPO; fields left out take the task's defaults."""
    kl: KLConfig = field(default_factory=KLConfig)
    """Step 3: the KL penalty to the base policy."""
    base: BaseConfig = field(default_factory=BaseConfig)
    """The base policy."""

    def __post_init__(self) -> None:
        for name in ("rounds", "env_steps_per_round", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


# -- field documentation -----------------------------------------------------------


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass, read from its source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for stmt, nxt in itertools.pairwise(body):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def describe(cls: type = RunConfig, prefix: str = "", domain: str = "", defaults: Any = None) -> list[str]:
    """One help line per field: ``dotted.name = default  # doc``, nested sections expanded.

    With ``domain`` (e.g. ``"text"``) each section's line says which kind of run it belongs
    to, ``[feedback]  (text runs)  # ...``, since control and text configs share section names.
    A section's defaults are those its run gives it (the text run's ``optim.max_new_tokens``
    is 24, not the 32 of a bare ``GroupPGConfig``); ``defaults`` carries them down.
    """
    lines: list[str] = []
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    tag = f"  ({domain} runs)" if domain else ""
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        name = f"{prefix}{f.name}"
        if defaults is not None:
            default = getattr(defaults, f.name)
        else:
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            lines.append(f"[{name}]{tag}  # {docs.get(f.name, '')}")
            lines.extend(describe(tp, name + ".", domain, default))
        else:
            lines.append(f"{name} = {default!r}  # {docs.get(f.name, '')}")
    return lines


# -- loading and validation ---------------------------------------------------------

T = TypeVar("T")


def _check_value(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            allowed = ", ".join(repr(a) for a in typing.get_args(tp))
            raise ConfigError(f"{where}: {value!r} is not one of {allowed}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (elem, _ellipsis) = typing.get_args(tp)
        return tuple(_check_value(v, elem, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, e.g. {{name = value}}, got {type(value).__name__} {value!r}")
        key_tp, value_tp = typing.get_args(tp)
        return {_check_value(k, key_tp, where): _check_value(v, value_tp, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table [{where}], got {type(value).__name__}")
        return from_dict(tp, value, where + ".")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if math.isnan(float(value)):
            raise ConfigError(f"{where}: nan is not a valid value")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {tp}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "", defaults: dict[str, Any] | None = None) -> T:
    """Build ``cls`` from a TOML table, checking every key and type.

    ``defaults`` are used for fields the table leaves out (e.g. a task's PPO settings).
    A key that ``cls.RENAMED`` (old name -> new name, a class attribute) lists is an error
    naming the new key, e.g. ``ppo.learning_rate: renamed to ppo.lr``.
    """
    assert dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    renamed: dict[str, str] = getattr(cls, "RENAMED", {})
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names and key in renamed:
            raise ConfigError(f"{prefix}{key}: renamed to {prefix}{renamed[key]}")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(names)})"
            raise ConfigError(f"{prefix}{key}: unknown field{hint}")
        kwargs[key] = _check_value(value, hints[key], f"{prefix}{key}")
    for key, value in (defaults or {}).items():
        if key not in kwargs:
            kwargs[key] = _check_value(value, hints[key], f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except ValueError as e:
        section = prefix.rstrip(".") or cls.__name__
        raise ConfigError(f"{section}: {e}") from None


def _read_toml(p: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None


def is_text_config(path: str | Path) -> bool:
    """Whether a config file names a text task (``task = "text:..."``)."""
    task = _read_toml(Path(path)).get("task", "")
    return isinstance(task, str) and task.startswith("text:")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read and validate a control run config; errors are :class:`ConfigError` naming file and field."""
    from rlhfkit.tasks import UnknownTaskError, get_task

    p = Path(path)
    data = _read_toml(p)
    data.update(overrides or {})
    try:
        task_name = _check_value(data.get("task", RunConfig.task), str, "task")
        task = get_task(task_name)
        # Sections where the task supplies defaults for the fields the file leaves out.
        sections: dict[str, type] = {"ppo": PPOConfig, "reward": RewardConfig}
        tables = {name: data.pop(name, {}) for name in sections}
        for name, table in tables.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{name}: expected a table [{name}]")
        cfg = from_dict(RunConfig, data)
        built: dict[str, Any] = {
            name: from_dict(cls, tables[name], f"{name}.", defaults=task.defaults.get(name))
            for name, cls in sections.items()
        }
        return dataclasses.replace(cfg, **built)
    except (ConfigError, UnknownTaskError) as e:
        raise ConfigError(f"{p}: {e}") from None


def _to_toml_value(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _to_toml_value(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, tuple):
        return list(v)
    return v


def config_to_toml(cfg: Any) -> str:
    """The full, resolved config as TOML (every field written, defaults included)."""
    table = _to_toml_value(cfg)

    def drop_none(d: dict[str, Any]) -> dict[str, Any]:
        return {k: drop_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}

    return tomli_w.dumps(drop_none(table))
