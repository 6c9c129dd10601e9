"""The one reward fit: bootstrap members for every kind, held-out metrics for every mix, warm start, errors."""

from __future__ import annotations

import math

import pytest
import torch

from rlhfkit.experiments.kinds_eval import KindsSetup, ask, make_setup, true_return
from rlhfkit.feedback.answers import AnswerSet
from rlhfkit.feedback_records import NONE_OF_THESE, Answer, Comparison, Label
from rlhfkit.reward.config import RewardConfig
from rlhfkit.reward.feature_model import BagOfWords, TextFeatureRewardModel
from rlhfkit.reward.fit import NoUsableFeedbackError, fit_reward, make_reward_optimizer
from rlhfkit.tasks.features import DESCRIBE_VOCABULARY
from rlhfkit.types import Query


@pytest.fixture(scope="module")
def setup() -> KindsSetup:
    return make_setup("describe", seed=0, pool_size=200, test_size=40, test_pairs=100)


def _answers(setup: KindsSetup, kinds: dict[str, int], seed: int = 1) -> AnswerSet:
    queries, feedback = ask(setup, kinds, seed=seed)
    return AnswerSet(tuple(feedback), queries, setup.generations)


def _model(size: int, seed: int = 0) -> TextFeatureRewardModel:
    torch.manual_seed(seed)
    return TextFeatureRewardModel(BagOfWords(DESCRIBE_VOCABULARY), size=size, hidden=(16,))


def test_every_member_trains_on_its_own_resample_of_every_kind(setup: KindsSetup) -> None:
    """Two members that start equal see the same minibatches: only their bootstrap counts can tell them apart."""
    answers = _answers(setup, {"ranking": 40, "rating": 40, "label": 40})
    model = _model(2)
    model.members[1].load_state_dict(model.members[0].state_dict())
    config = RewardConfig(ensemble_size=2, hidden=(16,), epochs=5, batch_size=16)
    fit_reward(model, answers, None, config)
    with torch.no_grad():
        scores = model.returns(model.encode([g.content for g in setup.generations.values()]))
    assert not torch.allclose(scores[0], scores[1], atol=1e-4)  # each member fitted its own resample
    one = _model(1)
    fit_reward(one, answers, None, RewardConfig(ensemble_size=1, hidden=(16,), epochs=5, batch_size=16))
    again = _model(1)
    fit_reward(again, answers, None, RewardConfig(ensemble_size=1, hidden=(16,), epochs=5, batch_size=16))
    assert all(torch.equal(a, b) for a, b in zip(one.parameters(), again.parameters(), strict=True))  # seeded


def test_a_mix_of_kinds_is_measured_on_its_heldout_answers(setup: KindsSetup) -> None:
    """Accuracy (comparisons and ranked places), true-ordering accuracy and ECE for any mix, with what was skipped."""
    queries, feedback = ask(setup, {"comparison": 160, "ranking": 60, "rating": 60}, seed=2)
    g = list(setup.generations)
    queries = {**queries, "odd-c": Query("odd-c", (g[0], g[1]), 0), "odd-l": Query("odd-l", (g[2],), 0, kind="label")}
    feedback += [
        Comparison.make("odd-c", Answer.INCOMPARABLE, "ann"),
        Label.make("odd-l", NONE_OF_THESE, "ann"),
    ]
    train, held = AnswerSet(tuple(feedback), queries, setup.generations).split(0.25)
    config = RewardConfig(ensemble_size=2, hidden=(16,), epochs=30, batch_size=32, lr=3e-3, seed=1)
    m = fit_reward(_model(2), train, held, config, true_return=true_return)
    print(m)
    assert set(m.counts) == {"comparison", "ranking", "rating"}
    assert m.skipped == {"comparison": 1, "label": 1} and m.n_incomparable == 1
    assert m.n_train + m.n_heldout + sum(m.skipped.values()) == len(feedback)
    assert 40 <= m.n_heldout <= 90  # about a quarter of 282, every kind
    assert m.heldout_accuracy >= 0.65 and m.true_accuracy >= 0.8  # chance is 0.5; measured 0.75 and 0.935
    assert 0.0 <= m.ece <= 0.3
    assert set(m.losses) == {"comparison", "ranking", "rating"} and math.isfinite(m.loss)
    assert m.steps == 30 * -(-max(m.counts.values()) // 32)  # an epoch: the largest kind at 32 a step


def test_a_warm_start_continues_the_optimizer_and_the_fit_leaves_the_global_random_state(setup: KindsSetup) -> None:
    answers = _answers(setup, {"comparison": 40})
    model = _model(3)
    config = RewardConfig(hidden=(16,), epochs=2, batch_size=16)
    opt = make_reward_optimizer(model, config)
    state = torch.random.get_rng_state()
    first = fit_reward(model, answers, None, config, optimizer=opt)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = fit_reward(model, answers, None, config, optimizer=opt)
    steps = {int(s["step"]) for s in opt.state.values()}
    assert first.steps == second.steps == 6 and steps == {12}  # one AdamW across both fits


def test_nothing_usable_is_one_error_that_counts_what_was_stored(setup: KindsSetup) -> None:
    g = list(setup.generations)
    queries = [Query(f"q{i}", (g[i], g[i + 1]), 0) for i in range(3)]
    answers = AnswerSet.of(
        [Comparison.make(q.id, Answer.INCOMPARABLE, "ann") for q in queries], queries, setup.generations.values()
    )
    with pytest.raises(
        NoUsableFeedbackError, match=r"no usable answers to fit the reward on \(3 stored, 3 incomparable\)"
    ):
        fit_reward(_model(1), answers, None, RewardConfig(ensemble_size=1))


def test_the_model_has_the_configured_members(setup: KindsSetup) -> None:
    with pytest.raises(ValueError, match="2 members but ensemble_size is 3"):
        fit_reward(_model(2), _answers(setup, {"comparison": 5}), None, RewardConfig())


def test_the_stated_slip_rate_reaches_the_comparisons_likelihood(setup: KindsSetup) -> None:
    """The same answers and start: slip_rate = 0 is the plain fit, and a slip rate fits another reward."""
    answers = _answers(setup, {"comparison": 60})

    def fitted(**fields: float) -> list[torch.Tensor]:
        model = _model(1)
        fit_reward(model, answers, None, RewardConfig(ensemble_size=1, hidden=(16,), epochs=3, **fields))  # type: ignore[arg-type]
        return [p.detach().clone() for p in model.parameters()]

    plain, zero, slipped = fitted(), fitted(slip_rate=0.0), fitted(slip_rate=0.3)
    assert all(torch.equal(a, b) for a, b in zip(plain, zero, strict=True))
    assert not all(torch.allclose(a, b) for a, b in zip(plain, slipped, strict=True))
