"""Several kinds of feedback in one run: the share of each kind, the queries, and what each kind needs.

A run's ``[feedback] kinds`` table gives the share of each round's queries per
kind, e.g. ``{comparison = 0.5, ranking = 0.25, rating = 0.25}``.
:func:`split_queries` turns a round's ``n`` queries into whole numbers per kind
(largest remainders, so they add up to ``n``); :func:`select_queries` draws them
uniformly (``feedback/queries.py``) from the round's generations.

Some kinds need more than the task's reward to be answered and learned from
(:func:`kind_tools`): ratings and labels a range of returns that the simulated
human maps onto its scale, corrections an editor (the moves a person makes, and
the nearby alternatives a correction is chosen over), language the task's named
reward features and an interpreter. The built-in ``pendulum`` and ``describe``
tasks have all of them (``tasks/features.py``); for another task, asking for a
kind it cannot support is a config error that names the kind.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rlhfkit.feedback.edits import Editor
from rlhfkit.feedback.language import EmbeddingInterpreter, Interpreter, KeywordInterpreter
from rlhfkit.feedback.queries import UniformPairs, UniformQueries
from rlhfkit.feedback.teacher import TeacherConfig
from rlhfkit.feedback_records import Comparison
from rlhfkit.tasks.features import FeatureSet
from rlhfkit.types import QUERY_SIZES, Generation, Query

RANKING_SIZE = 4
"""Generations a ranking query shows in a run (the effort defaults are for 4)."""

WEB_KINDS: dict[str, tuple[str, ...]] = {
    "control": ("comparison", "ranking", "rating", "label", "language"),
    "text": ("comparison", "ranking", "rating", "label", "correction", "language"),
}
"""Kinds people can answer in the web app (``rlhfkit serve``), by domain: it has a form for every kind,
but a control segment's correction would need edited states, which its correction form cannot send."""

FEATURE_TASKS = {"pendulum": "pendulum", "text:describe": "describe"}
"""Run task name -> the name under which ``tasks/features.py`` knows its features, editor and return range."""


def check_kinds(kinds: Mapping[str, float], human: str, domain: str = "control") -> None:
    """Raise ``ValueError`` naming the problem if ``kinds`` is not a valid share table for ``human``.

    ``domain``: ``"control"`` or ``"text"`` (what the web app can take differs).
    """
    unknown = sorted(set(kinds) - set(QUERY_SIZES))
    if unknown:
        raise ValueError(f"kinds: unknown feedback kind(s) {unknown}; expected some of {', '.join(QUERY_SIZES)}")
    bad = {k: v for k, v in kinds.items() if not (0 <= v < math.inf)}
    if bad:
        raise ValueError(f"kinds: shares must be >= 0 and finite, got {bad}")
    total = sum(kinds.values())
    if abs(total - 1.0) > 1e-3:
        raise ValueError(f"kinds: shares must add up to 1, got {total:g} from {dict(kinds)}")
    if human == "web":
        missing = [k for k, v in kinds.items() if v > 0 and k not in WEB_KINDS[domain]]
        if missing:
            raise ValueError(
                f"kinds: with human = 'web' people answer in the web app, which cannot take {domain} "
                f"{', '.join(missing)} answers (it takes {', '.join(WEB_KINDS[domain])}); leave them out, "
                "or use human = 'simulated'"
            )


def asked_kinds(kinds: Mapping[str, float]) -> list[str]:
    """The kinds with a share above 0, in the order of :data:`rlhfkit.types.QUERY_SIZES`."""
    return [k for k in QUERY_SIZES if kinds.get(k, 0.0) > 0]


def comparisons_only(kinds: Mapping[str, float]) -> bool:
    """Whether a run asks comparisons only (and so keeps the comparison-only reward fit)."""
    return asked_kinds(kinds) == [Comparison.kind]


def split_queries(n: int, kinds: Mapping[str, float]) -> dict[str, int]:
    """``n`` queries split by share (largest remainders; ties go to the kind listed first in QUERY_SIZES)."""
    names = asked_kinds(kinds)
    total = sum(kinds[k] for k in names)
    exact = {k: n * kinds[k] / total for k in names}
    counts = {k: math.floor(v) for k, v in exact.items()}
    for k in sorted(names, key=lambda k: -(exact[k] - counts[k]))[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def query_size(kind: str) -> int:
    """Generations one query of ``kind`` shows in a run."""
    low, high = QUERY_SIZES[kind]
    return low if low == high else RANKING_SIZE


def select_queries(
    generations: Sequence[Generation], counts: Mapping[str, int], rng: np.random.Generator
) -> list[Query]:
    """``counts[kind]`` uniformly drawn queries of each kind about ``generations``.

    Comparisons alone are disjoint pairs (:class:`~rlhfkit.feedback.queries.UniformPairs`, each
    generation shown once); with other kinds, every kind's queries are drawn independently and may
    share generations.
    """
    if [k for k, c in counts.items() if c > 0] == [Comparison.kind]:
        return UniformPairs().select(generations, counts[Comparison.kind], rng)
    out: list[Query] = []
    for kind in QUERY_SIZES:
        if counts.get(kind, 0) > 0:
            out += UniformQueries(kind, RANKING_SIZE).select(generations, counts[kind], rng)
    return out


@dataclass(frozen=True)
class KindTools:
    """What the asked kinds need beyond the task's reward (None where no asked kind needs it)."""

    features: FeatureSet | None = None
    """The task's named reward features (language)."""
    editor: Editor | None = None
    """The task's editor (corrections)."""
    interpreter: Interpreter | None = None
    """Turns utterances into (feature, direction) (language)."""
    return_range: tuple[float, float] | None = None
    """Returns mapped onto the ends of the simulated human's rating scale (ratings, labels)."""


def kind_tools(
    task: str, kinds: Mapping[str, float], interpreter: str = "keyword", return_scale: float = 1.0
) -> KindTools:
    """The features, editor, interpreter and return range that the asked ``kinds`` need on ``task``.

    ``return_scale`` multiplies the task's return range (a control run's segments
    may be longer or shorter than the 50 steps the built-in range is for).
    Raises ``ValueError`` naming the kind when the task lacks what it needs.
    """
    from rlhfkit.feedback.edits import editor
    from rlhfkit.tasks.features import feature_set, return_range

    asked = asked_kinds(kinds)
    name = FEATURE_TASKS.get(task)
    needs = {"correction": "an editor", "language": "named reward features"}
    for kind in asked:
        if kind in needs and name is None:
            raise ValueError(
                f"kinds: {kind} needs {needs[kind]}, which task {task!r} does not have "
                f"(built in for: {', '.join(FEATURE_TASKS)})"
            )
    tools = KindTools()
    if name is None:
        return tools
    if "language" in asked:
        fs = feature_set(name)
        interp: Interpreter = EmbeddingInterpreter(fs) if interpreter == "embedding" else KeywordInterpreter(fs)
        tools = dataclasses.replace(tools, features=fs, interpreter=interp)
    if "correction" in asked:
        tools = dataclasses.replace(tools, editor=editor(name))
    if "rating" in asked or "label" in asked:
        lo, hi = return_range(name)
        tools = dataclasses.replace(tools, return_range=(lo * return_scale, hi * return_scale))
    return tools


def teacher_for(teacher: TeacherConfig, tools: KindTools, kinds: Mapping[str, float]) -> TeacherConfig:
    """The simulated human's config, with the task's return range when ratings or labels need one it lacks."""
    if teacher.return_range is not None or not ({"rating", "label"} & set(asked_kinds(kinds))):
        return teacher
    if tools.return_range is None:
        raise ValueError(
            "kinds: rating and label answers from the simulated human need feedback.teacher.return_range = "
            "[low, high], the returns it maps onto the ends of its scale (this task has no built-in range)"
        )
    return dataclasses.replace(teacher, return_range=tools.return_range)


def run_kind_setup(
    task: str,
    kinds: Mapping[str, float],
    interpreter: str,
    teacher: TeacherConfig,
    simulated: bool,
    return_scale: float = 1.0,
) -> tuple[KindTools, TeacherConfig]:
    """A run's :class:`KindTools` and its simulated human's config (``ValueError`` naming a kind it cannot do)."""
    tools = kind_tools(task, kinds, interpreter, return_scale)
    return tools, teacher_for(teacher, tools, kinds) if simulated else teacher
