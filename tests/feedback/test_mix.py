"""Several kinds in one run: shares, query split, what each kind needs, effort config, the pilot's plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlhfkit.experiments.kinds_eval import Pilot, plan_mix
from rlhfkit.feedback.effort import EffortConfig, EffortCosts
from rlhfkit.feedback.mix import (
    check_kinds,
    comparisons_only,
    kind_tools,
    select_queries,
    split_queries,
    teacher_for,
)
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.teacher import TeacherConfig
from rlhfkit.feedback.web import WebHuman
from rlhfkit.feedback_records import Comparison, Rating
from rlhfkit.types import Generation, Query, Text


def test_split_queries_adds_up_and_gives_remainders_to_the_largest_fractions() -> None:
    kinds = {"comparison": 0.5, "ranking": 0.25, "rating": 0.25}
    assert split_queries(10, kinds) == {"comparison": 5, "ranking": 3, "rating": 2}  # 2.5 and 2.5: first listed
    assert split_queries(18, {"comparison": 0.25, "label": 0.1, "language": 0.65}) == {
        "comparison": 4,  # 4.5 -> 4 (remainder .5 loses to language's .7)
        "label": 2,  # 1.8 -> 2
        "language": 12,  # 11.7 -> 12
    }
    assert sum(split_queries(7, {k: 1 / 6 for k in EffortConfig.__dataclass_fields__}).values()) == 7
    assert split_queries(3, {"comparison": 1.0, "rating": 0.0}) == {"comparison": 3}


def test_comparisons_only_ignores_zero_shares() -> None:
    assert comparisons_only({"comparison": 1.0})
    assert comparisons_only({"comparison": 1.0, "rating": 0.0})
    assert not comparisons_only({"comparison": 0.5, "rating": 0.5})


@pytest.mark.parametrize(
    ("kinds", "human", "domain", "message"),
    [
        ({"comparisn": 1.0}, "simulated", "control", "unknown feedback kind"),
        ({"comparison": 0.5, "rating": 0.25}, "simulated", "control", "add up to 1, got 0.75"),
        ({"comparison": 1.5, "rating": -0.5}, "simulated", "control", ">= 0"),
        ({"comparison": 0.5, "correction": 0.5}, "web", "control", "cannot take control correction"),
    ],
)
def test_bad_share_tables_are_named(kinds: dict[str, float], human: str, domain: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_kinds(kinds, human, domain)


def test_the_web_app_takes_text_corrections() -> None:
    check_kinds({"comparison": 0.5, "correction": 0.25, "rating": 0.25}, "web", "text")


def test_a_kind_the_task_cannot_support_is_named() -> None:
    with pytest.raises(ValueError, match="correction needs an editor, which task 'cartpole'"):
        kind_tools("cartpole", {"comparison": 0.5, "correction": 0.5})
    with pytest.raises(ValueError, match="language needs named reward features"):
        kind_tools("reacher", {"language": 1.0})
    tools = kind_tools("cartpole", {"comparison": 0.5, "rating": 0.5})  # ratings need only a return range
    assert tools.return_range is None
    with pytest.raises(ValueError, match=r"teacher\.return_range"):
        teacher_for(TeacherConfig(), tools, {"comparison": 0.5, "rating": 0.5})
    own = TeacherConfig(return_range=(0.0, 25.0))
    assert teacher_for(own, tools, {"rating": 1.0}) is own


def test_pendulum_tools_scale_the_return_range_with_the_segment_length() -> None:
    tools = kind_tools("pendulum", {"label": 0.5, "correction": 0.25, "language": 0.25}, return_scale=0.5)
    assert tools.return_range == (-200.0, -50.0)  # the built-in (-400, -100) is for 50-step clips
    assert tools.editor is not None and tools.features is not None and tools.interpreter is not None
    teacher = teacher_for(TeacherConfig(), tools, {"label": 1.0})
    assert teacher.return_range == (-200.0, -50.0)
    only_comparisons = kind_tools("pendulum", {"comparison": 1.0})
    assert only_comparisons.editor is None and only_comparisons.return_range is None


def test_select_queries_draws_each_kind_with_its_size() -> None:
    gens = [Generation(f"g{i}", 3, "pool", Text("p", f"c{i}")) for i in range(10)]
    qs = select_queries(gens, {"comparison": 2, "ranking": 1, "rating": 3}, np.random.default_rng(0))
    assert [q.kind for q in qs] == ["comparison"] * 2 + ["ranking"] + ["rating"] * 3
    assert [len(q.generation_ids) for q in qs] == [2, 2, 4, 1, 1, 1]
    assert all(q.round == 3 and len(set(q.generation_ids)) == len(q.generation_ids) for q in qs)


def test_effort_config_defaults_are_effort_costs_defaults() -> None:
    costs, cfg = EffortCosts(), EffortConfig()
    for kind in ("comparison", "rating", "label", "correction", "language"):
        assert cfg.seconds(kind) == costs.seconds(kind)
    assert cfg.seconds("ranking") == costs.seconds("ranking", 4)
    fb = [Rating.make("q1", 3, "a"), Comparison.make("q2", "A", "a"), Comparison.make("q3", "incomparable", "a")]
    assert cfg.total_minutes(fb) == pytest.approx((4 + 5 + 5) / 60)  # an incomparable answer took time too
    with pytest.raises(ValueError, match="finite"):
        EffortConfig(rating=float("inf"))


def test_web_human_counts_usable_answers_of_every_kind(tmp_path: Path) -> None:
    store = FeedbackStore.in_dir(tmp_path)
    store.add_generations([Generation(f"g{i}", 1, "pool", Text("p", f"c{i}")) for i in range(2)])
    store.add_queries([Query("q0", ("g0", "g1"), 1), Query("q1", ("g0",), 1, kind="rating")])
    store.record(Comparison.make("q0", "incomparable", "ann"))
    store.record(Rating.make("q1", 6, "ann"))
    assert WebHuman(store).usable_answers() == 1


def test_plan_mix_by_hand() -> None:
    pilot = Pilot(
        per_kind=10,
        agreement={"comparison": 0.8, "ranking": 0.9, "rating": 0.52},
        queries={},
        feedback=[],
    )
    seconds = {"comparison": 6.0, "ranking": 12.0, "rating": 3.0}
    # value = (agreement - 0.5) / minutes per answer: 0.3 / 0.1 = 3, 0.4 / 0.2 = 2, 0.02 / 0.05 = 0.4
    # rating: 0.4 < 0.15 * 3 -> dropped. Pilot: 10 * (6 + 12 + 3) s = 3.5 min; 10 min left, 3:2 ->
    # 6 min of comparisons (60 answers), 4 min of rankings (20 answers).
    plan = plan_mix(pilot, seconds, budget_minutes=13.5, drop_below=0.15)
    assert plan.value == pytest.approx({"comparison": 3.0, "ranking": 2.0, "rating": 0.4})
    assert plan.answers == {"comparison": 70, "ranking": 30, "rating": 10}
