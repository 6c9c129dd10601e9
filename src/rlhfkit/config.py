"""Run configuration: one documented dataclass per part, loaded from TOML.

One schema for every domain: ``task``, ``rounds`` and ``seed``; the shared
``[feedback]`` (step 1), ``[reward]`` (step 2) and ``[kl]`` (the penalty in step 3),
which mean the same in every domain; and the domain's own section, ``[control]``
(:class:`~rlhfkit.domains.control.ControlConfig`) or ``[text]``
(:class:`~rlhfkit.domains.text.TextConfig`). A task's defaults fill what a file
leaves out; a file in the layout from before the one loop is read with a note
of what moved (:mod:`rlhfkit.config_layout`).

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
from rlhfkit.config_layout import deep_merge, domain_defaults, domain_of, upgrade_layout
from rlhfkit.domains.control import BaseConfig, ControlConfig
from rlhfkit.domains.text import TEXT_STRATEGIES, TEXT_TASKS, TextBaseConfig, TextConfig
from rlhfkit.errors import ConfigError
from rlhfkit.feedback.effort import EffortConfig
from rlhfkit.feedback.mix import asked_kinds, check_kinds
from rlhfkit.feedback.schedule import Schedule
from rlhfkit.feedback.selection import ACTIVE_CANDIDATES, ACTIVE_KINDS, QuerySelection, Strategy
from rlhfkit.feedback.teacher import TeacherConfig
from rlhfkit.optimize.kl import KLConfig
from rlhfkit.reward.config import RewardConfig

__all__ = [
    "BaseConfig",
    "ConfigError",
    "ControlConfig",
    "FeedbackConfig",
    "KLConfig",
    "RunConfig",
    "TextBaseConfig",
    "TextConfig",
    "config_for_task",
    "config_to_toml",
    "describe",
    "from_dict",
    "load_config",
]


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
    query_strategy: Strategy = "uniform"
    """Which comparisons to ask from the candidate pairs (feedback/selection.py): 'uniform' (random pairs);
    by the reward ensemble's P_k(A>B) = sigmoid(R_k(A) - R_k(B)): 'disagreement' (variance over members),
    'entropy' (of the mean P), 'bald' (entropy of the mean minus the members' mean entropy); 'kcenter' (pairs
    spread out in the reward model's feature space); 'disagreement+kcenter', 'entropy+kcenter' (the best half by
    the score, then spread out; B-Pref). Rankings: k candidates of greatest summed pairwise score (k-center:
    spread out). Active strategies take comparisons and rankings only and start in round 2: round 1's reward
    model has seen no answers, so round 1 is uniform. A text run takes 'uniform' or 'entropy': each query asks
    the completions of its prompt, among candidates x as many, that the reward model is least sure of."""
    query_schedule: Schedule = "constant"
    """Queries per round after round 1: 'constant' (comparisons_per_round each) or 'decreasing' (the same total,
    comparisons_per_round * (rounds - 1), shared in proportion to 1 / (k - 1) in round k: with 5 rounds of 20,
    38, 19, 13 and 10)."""
    candidates: int = 0
    """Oversampling: candidate pairs drawn and scored per comparison asked (each round draws this many times the
    generations its queries need); 0 = 1 for query_strategy = 'uniform', 4 for the active strategies."""

    def __post_init__(self) -> None:
        check_kinds(self.kinds, "simulated")  # what people in the web app can answer depends on the domain
        other = [k for k in asked_kinds(self.kinds) if k not in ACTIVE_KINDS]
        if self.query_strategy != "uniform" and other:
            raise ValueError(
                f"query_strategy = {self.query_strategy!r} chooses comparisons and rankings only; kinds asks "
                f"{', '.join(other)} too (use query_strategy = 'uniform' with other kinds)"
            )
        require(
            self,
            {
                "initial_comparisons": (positive, ">= 1"),
                "comparisons_per_round": (non_negative, ">= 0"),
                "latency_s": (non_negative, ">= 0"),
                "web_min_answers": (positive, ">= 1"),
                "web_poll_s": (positive, "> 0"),
                "candidates": (non_negative, ">= 0 (0 = the strategy's default)"),
            },
        )

    @property
    def selection(self) -> QuerySelection:
        """The query strategy with its oversampling factor resolved (``candidates = 0``: the strategy's default)."""
        default = 1 if self.query_strategy == "uniform" else ACTIVE_CANDIDATES
        return QuerySelection(self.query_strategy, self.candidates or default)


@dataclass(frozen=True)
class RunConfig:
    """A whole RLHF run: the shared steps, and the domain's own section (only the task's domain's)."""

    task: str = "pendulum"
    """A control task (pendulum, cartpole, reacher, halfcheetah, or env:<gymnasium id>) or a text task
    (text:describe, the built-in toy task; text:chat, your own model, prompts and reward)."""
    rounds: int = 8
    """Rounds of collect feedback -> fit reward -> optimise policy."""
    seed: int = 0
    """Seed of every random generator in the run."""
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    """Step 1: collecting feedback."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Step 2: fitting the reward model."""
    kl: KLConfig = field(default_factory=KLConfig)
    """Step 3: the penalty beta * KL(pi || pi_base) per action (an env step, a token)."""
    control: ControlConfig | None = None
    """A control run's own settings (PPO, segments, evaluation, the base policy); only for control tasks."""
    text: TextConfig | None = None
    """A text run's own settings (the optimiser, completions, evaluation, the base model); only for text tasks."""

    def __post_init__(self) -> None:
        require(self, {"rounds": (positive, ">= 1")})
        domain = self.domain
        other = "text" if domain == "control" else "control"
        if getattr(self, other) is not None:
            raise ValueError(f"[{other}] is for {other} tasks; task {self.task!r} is a {domain} task")
        if getattr(self, domain) is None:
            object.__setattr__(self, domain, ControlConfig() if domain == "control" else TextConfig())
        strategy = self.feedback.query_strategy
        if domain == "text" and strategy not in TEXT_STRATEGIES:
            raise ValueError(
                f"feedback.query_strategy: a text run takes {' or '.join(map(repr, TEXT_STRATEGIES))}, got "
                f"{strategy!r}: a text round asks one query per prompt, chosen among that prompt's completions, so "
                "there are no pairs across the round to spread apart (kcenter) and its one reward model has no "
                "members to disagree (disagreement, bald)"
            )
        if strategy.split("+")[0] in ("disagreement", "bald") and self.reward.ensemble_size < 2:
            raise ValueError(
                f"feedback.query_strategy = {self.feedback.query_strategy!r} reads the disagreement of the reward "
                f"ensemble's members; set reward.ensemble_size >= 2, got {self.reward.ensemble_size}"
            )
        try:
            check_kinds(self.feedback.kinds, self.feedback.human, domain)
        except ValueError as e:
            raise ValueError(f"feedback.{e}") from None
        if domain == "text":
            if self.task not in TEXT_TASKS:
                raise ValueError(f"task: {self.task!r} is not a text task (built in: {', '.join(TEXT_TASKS)})")
            self._check_text_parts()
            if self.reward.ensemble_size != 1:
                raise ValueError(
                    f"reward.ensemble_size: a text run's reward model is one transformer; set 1, "
                    f"got {self.reward.ensemble_size}"
                )

    def _check_text_parts(self) -> None:
        """text:chat brings every part itself; a simulated human needs a true reward to judge by."""
        text = self.text
        assert text is not None
        if self.task == "text:chat":
            missing = [
                name
                for name, value in (("text.prompts", text.prompts), ("text.base.path", text.base.path))
                if not value
            ]
            if missing:
                raise ValueError(
                    f"{' and '.join(missing)}: text:chat runs on your own model and prompts; set "
                    f"{' and '.join(missing)} (or use task = 'text:describe', the built-in toy task)"
                )
            if self.feedback.human == "simulated" and text.objective.learns and not text.true_reward:
                raise ValueError(
                    "text.true_reward: text:chat has no true reward for the simulated human to judge by; set "
                    "text.true_reward = 'module:function', or feedback.human = 'web', or a fixed objective "
                    "(text.objective.refit = false, or learned = 0)"
                )

    @property
    def domain(self) -> str:
        """'control' or 'text', from the task."""
        return domain_of(self.task)


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
        tp = _section_type(hints[f.name])
        name = f"{prefix}{f.name}"
        if domain and f.name in ("control", "text") and f.name != domain:
            continue  # the other domain's section
        if defaults is not None:
            default = getattr(defaults, f.name)
        else:
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        if default is None and isinstance(tp, type) and dataclasses.is_dataclass(tp):
            default = tp()
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            lines.append(f"[{name}]{tag}  # {docs.get(f.name, '')}")
            lines.extend(describe(tp, name + ".", domain, default))
        else:
            lines.append(f"{name} = {default!r}  # {docs.get(f.name, '')}")
    return lines


def _section_type(tp: Any) -> Any:
    """``X | None`` -> ``X`` where X is a dataclass (a domain's optional section); any other type as it is."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and dataclasses.is_dataclass(args[0]):
            return args[0]
    return tp


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
    naming the new key, e.g. ``ppo.learning_rate: renamed to ppo.lr``; a new name with a dot
    is a whole path, e.g. ``text.ppo.kl_estimator: moved to kl.estimator``.
    """
    assert dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    renamed: dict[str, str] = getattr(cls, "RENAMED", {})
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names and key in renamed:
            new = renamed[key]
            raise ConfigError(
                f"{prefix}{key}: moved to {new}" if "." in new else f"{prefix}{key}: renamed to {prefix}{new}"
            )
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
        section = prefix.rstrip(".")
        raise ConfigError(f"{section}: {e}" if section else str(e)) from None


def _read_toml(p: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None


def config_for_task(data: dict[str, Any], notes: list[str] | None = None, where: str = "") -> RunConfig:
    """A run config from a TOML table: an older layout upgraded, the task's defaults under what ``data`` says.

    What an upgrade moved is appended to ``notes``; errors are :class:`ConfigError`
    naming the field (and ``where``, the file, when given).
    """
    from rlhfkit.tasks import UnknownTaskError, get_task

    try:
        data, moved = upgrade_layout(data)
        if moved and notes is not None:
            notes.append(
                f"{where or 'config'}: written for the layout before the one loop, read as: {'; '.join(moved)}"
            )
        task_name = _check_value(data.get("task", RunConfig.task), str, "task")
        task_defaults = get_task(task_name).defaults if domain_of(task_name) == "control" else {}
        data = deep_merge(domain_defaults(task_name, data, task_defaults), data)
        return from_dict(RunConfig, data)
    except (ConfigError, UnknownTaskError) as e:
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None, notes: list[str] | None = None) -> RunConfig:
    """Read and validate a run config of any domain; errors are :class:`ConfigError` naming file and field.

    ``overrides`` replace top-level keys; what an upgrade of an older layout moved is appended to ``notes``.
    """
    p = Path(path)
    data = _read_toml(p)
    data.update(overrides or {})
    return config_for_task(data, notes, str(p))


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
