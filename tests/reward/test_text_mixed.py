"""The transformer reward model in the one fit with several kinds: same scores as the scorer, held-out pairs,
learning."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from rlhfkit.experiments.kinds_eval import ask, make_setup
from rlhfkit.experiments.pools import describe_texts
from rlhfkit.feedback.answers import AnswerSet
from rlhfkit.feedback_records import Comparison, Ranking
from rlhfkit.models.text_builders import train_tiny_tokenizer
from rlhfkit.reward.config import RewardConfig
from rlhfkit.reward.fit import agreement, fit_reward, heldout_pairs
from rlhfkit.reward.transformer import RewardModelScorer, SequenceRewardModel
from rlhfkit.types import Query, Text


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    texts = [t.prompt + str(t.completion) for t in describe_texts(300, 5)]
    return train_tiny_tokenizer(texts, vocab_size=300)


def _model(tokenizer: Any, seed: int = 0) -> GPT2ForSequenceClassification:
    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=4,
        vocab_size=len(tokenizer),
        n_positions=128,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return GPT2ForSequenceClassification(cfg).eval()


def test_sequence_reward_model_scores_like_the_loops_scorer(tokenizer: Any) -> None:
    texts = describe_texts(9, 3)
    model = _model(tokenizer)
    wrapped = SequenceRewardModel(model, tokenizer)
    enc = wrapped.encode(texts)
    with torch.no_grad():
        all_ = wrapped.returns(enc)
        some = wrapped.returns(enc, torch.tensor([7, 2, 2, 0]))
    expected = RewardModelScorer(model, tokenizer)([t.prompt for t in texts], [str(t.completion) for t in texts])
    assert all_.shape == (1, 9)
    np.testing.assert_allclose(all_[0].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(some[0].numpy(), expected[[7, 2, 2, 0]], atol=1e-5)
    with pytest.raises(TypeError, match="texts"):
        wrapped.encode([Text("p", [{"role": "assistant", "content": "x"}])])


def test_heldout_pairs_come_from_decisive_comparisons_and_adjacent_ranked_items() -> None:
    queries = {
        "c1": Query("c1", ("a", "b"), 1),
        "c2": Query("c2", ("a", "b"), 1),
        "c3": Query("c3", ("c", "d"), 1),
        "r1": Query("r1", ("a", "b", "c"), 1, kind="ranking"),
    }
    fb = [
        Comparison.make("c1", "B", "x"),
        Comparison.make("c2", "equal", "x"),  # not decisive
        Comparison.make("c3", "graded", "x", mu_a=0.7),
        Ranking.make("r1", ["c", "a", "b"], "x"),
    ]
    assert heldout_pairs(fb, queries) == [("b", "a"), ("c", "d"), ("c", "a"), ("a", "b")]


def test_rankings_and_ratings_alone_teach_the_transformer_reward(tokenizer: Any) -> None:
    """No comparisons: 60 rankings of 4 and 120 ratings from two annotators, fitted into the transformer.

    Held out: 20% of the answers (by query id), and 500 pairs from a disjoint pool of texts scored
    against the true reward. Fixed seeds; measured with the one reward fit (issue 11: steps of whole
    prompt pieces of each kind, dropout off) 0.833 held-out pair accuracy against the annotators' noisy
    answers (0.879 against the true reward) and 0.846 agreement on the disjoint pool, 0.459 before the
    fit (with the earlier mixed-kind fit: 0.861, 0.909 and 0.853). The test asks for 0.7 (chance 0.5)
    and for a gain of 0.2 over the untrained model; other seeds of the network and the fit (2 and 1,
    3 and 2) gained 0.255 (0.552 -> 0.807) and 0.420 (0.402 -> 0.822), earlier 0.279 and 0.433.
    """
    setup = make_setup("describe", seed=0, pool_size=300, test_size=150, test_pairs=500)
    queries, feedback = ask(setup, {"ranking": 60, "rating": 120}, seed=1)
    model = SequenceRewardModel(_model(tokenizer, seed=1), tokenizer)
    before = agreement(model, setup.test_a, setup.test_b, setup.test_diff)
    answers = AnswerSet(tuple(feedback), queries, setup.generations)
    held = answers.select(lambda f: int(f.query_id[:8], 16) % 5 == 0)
    metrics = fit_reward(
        model,
        answers.select(lambda f: int(f.query_id[:8], 16) % 5 != 0),
        held,
        RewardConfig(ensemble_size=1, epochs=8, batch_size=32, lr=1e-3, seed=0),
        true_return=lambda x: float(np.asarray(setup.humans[0].reward_fn(x))),
    )
    after = agreement(model, setup.test_a, setup.test_b, setup.test_diff)
    print(f"held-out {metrics.heldout_accuracy:.3f} ({metrics.true_accuracy:.3f} true); {before:.3f} -> {after:.3f}")
    assert set(metrics.counts) == {"ranking", "rating"}
    assert 0 < metrics.n_heldout < 60 and sum(metrics.counts.values()) + metrics.n_heldout == 180
    assert metrics.heldout_accuracy >= 0.7 and after >= 0.7
    assert after - before >= 0.2, (before, after)
