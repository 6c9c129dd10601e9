"""The simulated human answers every kind from the same r_H; interpreters; effort costs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlhfkit.experiments.pools import describe_texts, pendulum_segments
from rlhfkit.feedback.edits import editor
from rlhfkit.feedback.effort import EffortCosts
from rlhfkit.feedback.language import EmbeddingInterpreter, KeywordInterpreter
from rlhfkit.feedback.teacher import SimulatedHuman, TeacherConfig
from rlhfkit.feedback_records import NONE_OF_THESE, Correction, Language, Ranking, Rating
from rlhfkit.tasks.features import feature_set
from rlhfkit.tasks.text import true_reward
from rlhfkit.types import Generation, Query, Segment, Text


def _human(cfg: TeacherConfig, task: str = "pendulum", seed: int = 0) -> SimulatedHuman:
    fn = (lambda x: x.true_rewards) if task == "pendulum" else (lambda x: np.array(true_reward(x.completion)))
    return SimulatedHuman(cfg, reward_fn=fn, seed=seed, features=feature_set(task), editor=editor(task))


def test_rating_follows_gain_offset_and_scale() -> None:
    h = _human(TeacherConfig(return_range=(-10.0, 10.0), rating_scale=(1, 7), rating_gain=0.5, rating_offset=0.4))
    # z = 0 -> mid 4 + 3 * (0 + 0.4) = 5.2 -> rounded 5; z = 1 -> 4 + 3 * 0.9 = 6.7 -> 7
    assert h.rate(0.0) == 5.0 and h.rate(10.0) == 7.0 and h.rate(-1e9) == 1.0
    noisy = _human(TeacherConfig(return_range=(-1.0, 1.0), rating_noise=0.2, rating_step=0.0), seed=3)
    ys = np.array([noisy.rate(0.0) for _ in range(4000)])
    assert ys.mean() == pytest.approx(4.0, abs=0.05) and ys.std() == pytest.approx(0.6, abs=0.05)


def test_labels_use_thresholds_and_none_of_these() -> None:
    h = _human(TeacherConfig(return_range=(-1.0, 1.0), label_thresholds=(-0.33, 0.33)))
    assert [h.label(r) for r in (-0.9, 0.0, 0.9)] == ["bad", "ok", "good"]
    h2 = _human(TeacherConfig(return_range=(-1.0, 1.0), label_none_prob=0.3), seed=1)
    share = np.mean([h2.label(0.0) == NONE_OF_THESE for _ in range(4000)])
    assert share == pytest.approx(0.3, abs=0.03)
    with pytest.raises(ValueError, match="return_range"):
        _human(TeacherConfig()).label(0.0)


def test_ranking_sorted_when_rational_and_plackett_luce_otherwise() -> None:
    h = _human(TeacherConfig())
    assert h.rank([1.0, 3.0, 2.0]) == [1, 2, 0]
    noisy = _human(TeacherConfig(beta=1.0), seed=2)
    firsts = np.bincount([noisy.rank([0.0, math.log(3.0)])[0] for _ in range(6000)], minlength=2) / 6000
    assert firsts[1] == pytest.approx(0.75, abs=0.02)  # exp(log 3) / (1 + 3)


def test_corrections_improve_r_h_and_keep_the_shape() -> None:
    for task, pool in (("pendulum", pendulum_segments(20, 5)), ("describe", describe_texts(20, 5))):
        h = _human(TeacherConfig(), task)
        gains = []
        for i, x in enumerate(pool):
            q = Query(f"q{i}", ("g",), 0, kind="correction")
            ans = h.answer(q, {"g": Generation("g", 0, "p", x)})
            assert isinstance(ans, Correction)
            gains.append(h.segment_return(ans.corrected) - h.segment_return(x))
            if isinstance(x, Segment):
                assert isinstance(ans.corrected, Segment) and ans.corrected.observations.shape == x.observations.shape
            else:
                assert isinstance(ans.corrected, Text) and ans.corrected.prompt == x.prompt
        # Most corrections improve r_H; an edit can be a no-op where torques are already at their bounds.
        assert np.mean(np.array(gains) > 0) >= 0.8 and np.mean(np.array(gains) >= 0) >= 0.9, (task, gains)


def test_language_names_the_feature_that_matters_most() -> None:
    h = _human(TeacherConfig(), "describe")
    a = Text("the cat is", " happy .")
    b = Text("the cat is", " happy, kind, calm, brave, warm and gentle .")  # verbosity costs 2.25
    ans = h.answer(
        Query("q", ("a", "b"), 0, kind="language"), {"a": Generation("a", 0, "p", a), "b": Generation("b", 0, "p", b)}
    )
    assert isinstance(ans, Language)
    assert any(p in ans.utterance for p in feature_set("describe")["verbosity"].say_less)
    meaning = KeywordInterpreter(feature_set("describe")).interpret(ans.utterance)
    assert meaning is not None and (meaning.feature, meaning.direction) == ("verbosity", -1)


def test_every_kind_is_answered() -> None:
    h = _human(TeacherConfig(return_range=(-400.0, -100.0)))
    segs = pendulum_segments(4, 0)
    gens = {f"g{i}": Generation(f"g{i}", 0, "p", s) for i, s in enumerate(segs)}
    for kind, ids in [
        ("comparison", ("g0", "g1")),
        ("ranking", ("g0", "g1", "g2", "g3")),
        ("rating", ("g0",)),
        ("label", ("g1",)),
        ("correction", ("g2",)),
        ("language", ("g0", "g3")),
    ]:
        ans = h.answer(Query("q", ids, 0, kind=kind), gens)
        assert ans.kind == kind
    r = h.answer(Query("q", ("g0", "g1", "g2", "g3"), 0, kind="ranking"), gens)
    assert isinstance(r, Ranking)
    rets = [segs[int(g[1:])].true_rewards.sum() for g in r.ranked]
    assert rets == sorted(rets, reverse=True)
    assert isinstance(h.answer(Query("q", ("g0",), 0, kind="rating"), gens), Rating)


def _template_accuracy(interp: object, task: str) -> tuple[float, float]:
    """(feature and direction right, feature right) over the teacher's phrases in its frames."""
    fs = feature_set(task)
    both = feat = n = 0
    for f in fs.features:
        for d, phrases in ((1, f.say_more), (-1, f.say_less)):
            for p in phrases:
                for frame in ("{}", "{}, please", "I'd like {}"):
                    m = interp.interpret(frame.format(p))  # type: ignore[attr-defined]
                    n += 1
                    feat += m is not None and m.feature == f.name
                    both += m is not None and (m.feature, m.direction) == (f.name, d)
    return both / n, feat / n


def test_keyword_interpreter_on_the_teachers_phrases() -> None:
    for task in ("pendulum", "describe"):
        both, feat = _template_accuracy(KeywordInterpreter(feature_set(task)), task)
        print(f"keyword interpreter, {task}: feature+direction {both:.2f}, feature {feat:.2f}")
        assert both >= 0.6 and feat >= 0.65  # measured: pendulum 0.88 / 0.94, describe 0.65 / 0.70


@pytest.mark.slow
def test_embedding_interpreter_on_the_teachers_phrases() -> None:
    """The sentence-embedding interpreter (all-MiniLM-L6-v2, offline) finds the feature far above chance (1/3, 1/4)."""
    for task in ("pendulum", "describe"):
        both, feat = _template_accuracy(EmbeddingInterpreter(feature_set(task)), task)
        print(f"embedding interpreter, {task}: feature+direction {both:.2f}, feature {feat:.2f}")
        assert feat >= 0.8 and both >= 0.55  # measured: pendulum 0.71 / 1.00, describe 0.64 / 0.90


def test_effort_costs() -> None:
    c = EffortCosts()
    assert c.seconds("comparison") == 5.0 and c.seconds("label") == 3.0 and c.seconds("correction") == 22.0
    assert c.seconds("ranking", 4) == 2 * 4 + 1.5 * 3
    assert c.minutes("rating", 60) == pytest.approx(4.0)
    assert EffortCosts(answer_seconds={"label": 4.0}).seconds("label") == 6.0
    with pytest.raises(ValueError, match="n_shown"):
        c.seconds("ranking")
    with pytest.raises(ValueError, match="unknown kinds"):
        EffortCosts(answer_seconds={"vibes": 1.0})
