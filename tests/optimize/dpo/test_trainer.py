"""DPO / IPO training of a tiny GPT-2: the one-pass pair scoring, skipping, ties, and learning a toy preference."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import pytest
import torch
from optimize_helpers import LearnedReward, tiny_policy, vowel_share
from transformers import PreTrainedTokenizerFast

from rlhfkit.feedback.formats import PreferenceRecord
from rlhfkit.models.text import TextPolicy
from rlhfkit.models.text_builders import tiny_gpt2, train_tiny_tokenizer
from rlhfkit.optimize.dpo.trainer import (
    DPOConfig,
    logratio_margins,
    pair_logprobs,
    sequence_logprobs,
    tokenize_records,
    train_dpo,
)
from rlhfkit.tasks import text as text_task

Loss = Literal["dpo", "ipo"]

MARKER = "brave"
"""The word the toy labeller likes: chosen completions contain it, rejected ones have a negative word instead."""


def toy_preferences(n: int, seed: int, subjects: tuple[str, ...]) -> list[PreferenceRecord]:
    """Pairs that differ in one word: chosen has MARKER where rejected has a random negative adjective."""
    rng = np.random.default_rng(seed)
    others = [w for w in text_task.POSITIVE + text_task.NEGATIVE if w != MARKER]

    def sentence(words: list[str]) -> str:
        return " " + (words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]) + " ."

    records = []
    for _ in range(n):
        words = [str(rng.choice(others)) for _ in range(int(rng.integers(1, 4)))]
        at = int(rng.integers(0, len(words) + 1))
        chosen = [*words[:at], MARKER, *words[at:]]
        rejected = [*words[:at], str(rng.choice(text_task.NEGATIVE)), *words[at:]]
        records.append(PreferenceRecord(f"the {rng.choice(subjects)} is", sentence(chosen), sentence(rejected)))
    return records


def with_labels(records: list[PreferenceRecord], mu: tuple[float, float] | None) -> list[PreferenceRecord]:
    return [dataclasses.replace(r, mu=mu) for r in records]


def shuffled_labels(records: list[PreferenceRecord], seed: int) -> list[PreferenceRecord]:
    """The control: each pair's sides swapped at random, so the labels say nothing about MARKER."""
    rng = np.random.default_rng(seed)
    return [dataclasses.replace(r, chosen=r.rejected, rejected=r.chosen) if rng.random() < 0.5 else r for r in records]


TRAIN = toy_preferences(64, seed=0, subjects=text_task.SUBJECTS[:7])
HELD_OUT = toy_preferences(64, seed=1, subjects=text_task.SUBJECTS[7:])  # unseen subjects and sentences


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """A model this small gains nothing from intra-op threads, and on a busy machine they cost 10-100x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return train_tiny_tokenizer(text_task.corpus(300), vocab_size=300)


def fresh_policy(tokenizer: PreTrainedTokenizerFast) -> TextPolicy:
    return TextPolicy(tiny_gpt2(tokenizer, n_layer=1, n_embd=64, n_head=2, seed=0), tokenizer, value_head=False)


# -- tier 1: exact scoring --------------------------------------------------------------


def test_one_pass_pair_logprobs_equal_scoring_each_completion_alone(tokenizer: PreTrainedTokenizerFast) -> None:
    policy = fresh_policy(tokenizer)
    user = {"role": "user", "content": "describe the owl"}
    records = [
        *TRAIN[:3],
        PreferenceRecord("the very old and quiet bear is", " calm .", " rude, cold and grim ."),
        PreferenceRecord("", " kind .", " sad ."),  # empty prompt: starts from bos
        PreferenceRecord(
            (user,), ({"role": "assistant", "content": "wise ."},), ({"role": "assistant", "content": "dull ."},)
        ),
    ]
    pairs, skipped = tokenize_records(policy, records)
    assert skipped == 0 and len(pairs) == len(records)
    eos = policy.eos_token_id
    assert all(p.chosen_ids[-1] == eos and p.rejected_ids[-1] == eos for p in pairs)
    assert pairs[4].prompt_ids == (tokenizer.bos_token_id,)
    header = tokenizer("<|assistant|>\n", add_special_tokens=False)["input_ids"]
    assert list(pairs[5].prompt_ids[-len(header) :]) == header  # the chat prompt ends with the assistant header
    assert pairs[5].chosen_ids == (*tokenizer("wise .", add_special_tokens=False)["input_ids"], eos)

    chosen, rejected = pair_logprobs(policy, pairs)  # 2n rows, mixed prompt and completion lengths, one pass
    with torch.no_grad():
        for i, p in enumerate(pairs):
            alone_c = sequence_logprobs(policy, [p.prompt_ids], [p.chosen_ids])  # no padding at all
            alone_r = sequence_logprobs(policy, [p.prompt_ids], [p.rejected_ids])
            assert torch.allclose(chosen[i], alone_c[0], atol=1e-5), (i, chosen[i], alone_c)
            assert torch.allclose(rejected[i], alone_r[0], atol=1e-5), (i, rejected[i], alone_r)
    assert chosen.requires_grad  # the trained side keeps its graph


def test_max_length_cuts_completions(tokenizer: PreTrainedTokenizerFast) -> None:
    policy = fresh_policy(tokenizer)
    record = PreferenceRecord("the cat is", " happy, kind, calm and warm .", " sad .")
    (full,), _ = tokenize_records(policy, [record])
    (cut,), _ = tokenize_records(policy, [record], max_length=3)
    assert cut.chosen_ids == full.chosen_ids[:3] and cut.chosen_ids[-1] != policy.eos_token_id
    assert cut.rejected_ids == full.rejected_ids[:3]


def test_chat_completion_must_be_one_assistant_message(tokenizer: PreTrainedTokenizerFast) -> None:
    policy = fresh_policy(tokenizer)
    user = {"role": "user", "content": "hi"}
    record = PreferenceRecord(
        (user,), ({"role": "assistant", "content": "a"}, user), ({"role": "assistant", "content": "b"},)
    )
    with pytest.raises(ValueError, match=r"record 0: chosen must be .* one assistant message"):
        tokenize_records(policy, [record])


# -- tier 2: fast runs --------------------------------------------------------------------


def test_incomparable_records_are_skipped_and_counted(tokenizer: PreTrainedTokenizerFast) -> None:
    records = [
        *TRAIN[:6],
        *with_labels(TRAIN[6:9], None),  # None marks incomparable
        *with_labels(TRAIN[9:11], (0.5, 0.5)),
        *with_labels(TRAIN[11:12], (0.8, 0.2)),
    ]
    eval_records = [*HELD_OUT[:4], *with_labels(HELD_OUT[4:6], None), *with_labels(HELD_OUT[6:7], (0.5, 0.5))]
    cfg = DPOConfig(lr=1e-3, batch_size=4)
    m = train_dpo(fresh_policy(tokenizer), None, records, cfg, eval_records)
    assert (m.n_train, m.n_skipped, m.n_eval) == (9, 3, 5)  # ties and graded labels are kept
    assert len(m.losses) == len(m.margins) == 3  # 9 pairs, at most 4 a step
    assert m.pairs_per_second > 0

    again = train_dpo(fresh_policy(tokenizer), None, records, cfg, eval_records)
    assert again.losses == m.losses  # seeded runs reproduce

    with pytest.raises(ValueError, match="no usable training pairs"):
        train_dpo(fresh_policy(tokenizer), None, with_labels(TRAIN[:3], None), cfg)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("loss", "kto"),
        ("beta", 0.0),
        ("epochs", 0),
        ("lr", -1e-3),
        ("weight_decay", -0.1),
        ("batch_size", 0),
        ("max_tokens", 2.5),
        ("max_length", 0),
        ("max_grad_norm", 0.0),
        ("seed", -1),
    ],
)
def test_config_errors_name_the_field(field: str, value: object) -> None:
    kwargs: dict[str, Any] = {field: value}  # deliberately invalid values
    with pytest.raises(ValueError, match=f"^{field} must be"):
        DPOConfig(**kwargs)


@pytest.mark.parametrize("loss", ["dpo", "ipo"])
def test_ties_pull_neither_side(loss: Loss, tokenizer: PreTrainedTokenizerFast) -> None:
    """Ties leave the chosen-vs-rejected log-ratio margin where it is (0 against ref); hard labels move it."""
    pairs, _ = tokenize_records(fresh_policy(tokenizer), TRAIN)
    cfg = DPOConfig(loss=loss, lr=1e-3, epochs=2)

    hard = fresh_policy(tokenizer)
    ref = hard.frozen_copy()
    train_dpo(hard, ref, TRAIN, cfg)
    hard_shift = float(logratio_margins(hard, ref, pairs).mean())

    tied = fresh_policy(tokenizer)
    train_dpo(tied, ref, with_labels(TRAIN, (0.5, 0.5)), cfg)
    tie_shift = float(logratio_margins(tied, ref, pairs).abs().mean())

    # From a policy that already prefers one side, ties pull the margin back towards 0.
    train_dpo(hard, ref, with_labels(TRAIN, (0.5, 0.5)), cfg)
    pulled_back = float(logratio_margins(hard, ref, pairs).mean())
    print(
        f"{loss} margin change: hard labels {hard_shift:.3f}, ties {tie_shift:.2e}; ties after hard {pulled_back:.3f}"
    )
    assert hard_shift > 2.0
    assert tie_shift < 1e-3
    assert abs(pulled_back) < 0.5 * hard_shift


# -- tier 3: learning ---------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["dpo", "ipo"])
def test_learns_the_toy_preference(loss: Loss, tokenizer: PreTrainedTokenizerFast) -> None:
    cfg = DPOConfig(loss=loss, beta=0.1, lr=1e-3, epochs=2, batch_size=16)
    control = train_dpo(fresh_policy(tokenizer), None, shuffled_labels(TRAIN, seed=2), cfg, HELD_OUT)

    policy = fresh_policy(tokenizer)
    ref = policy.frozen_copy()
    m = train_dpo(policy, ref, TRAIN, cfg, HELD_OUT)
    train_pairs, _ = tokenize_records(policy, TRAIN)
    train_shift = float(logratio_margins(policy, ref, train_pairs).mean())
    print(
        f"{loss}: held-out accuracy {m.eval_reward_accuracy:.3f} (shuffled-label control "
        f"{control.eval_reward_accuracy:.3f}); log-ratio margin held-out {m.eval_margin / cfg.beta:.2f}, "
        f"train {train_shift:.2f} nats; "
        f"loss {m.losses[0]:.3f} -> {m.losses[-1]:.3f}; {m.pairs_per_second:.0f} pairs/s"
    )
    assert m.n_eval == len(HELD_OUT)
    # The first step sees policy == ref, so h = 0 exactly: DPO's loss is log 2, IPO's the squared target.
    assert m.losses[0] == pytest.approx(math.log(2.0) if loss == "dpo" else (1.0 / (2.0 * cfg.beta)) ** 2)
    assert abs(control.eval_reward_accuracy - 0.5) <= 0.2  # labels that say nothing teach nothing
    assert m.eval_reward_accuracy >= 0.8
    # log pi(c) - log pi(r) rose by over a nat against the reference's, on held-out and on training pairs.
    assert m.eval_margin > cfg.beta * 1.0 and train_shift > 1.0
    assert np.mean(m.losses[-2:]) < m.losses[0]


@pytest.mark.parametrize("loss", ["dpo", "ipo"])
def test_raises_a_learned_reward_on_its_own_samples_with_bounded_kl(
    loss: Loss, policy_tokenizer: PreTrainedTokenizerFast, learned_vowel_reward: LearnedReward
) -> None:
    # Offline RLHF in one round: pairs of the starting policy's own completions, the one the learned reward
    # model scores higher marked chosen; DPO / IPO on them; then fresh samples are scored.
    policy = tiny_policy(policy_tokenizer, value_head=False)
    ref = policy.frozen_copy()
    scorer = learned_vowel_reward.scorer
    prompts = text_task.prompts()
    draws = prompts * 30
    batch = policy.generate(draws, max_new_tokens=8, n_per_prompt=2, seed=21)
    scores = scorer([draws[int(j)] for j in batch.prompt_index], batch.completions)
    records = []
    for j, prompt in enumerate(draws):
        a, b = batch.completions[2 * j], batch.completions[2 * j + 1]
        if a and b and a != b and scores[2 * j] != scores[2 * j + 1]:  # an empty completion is no record
            chosen, rejected = (a, b) if scores[2 * j] > scores[2 * j + 1] else (b, a)
            records.append(PreferenceRecord(prompt, chosen, rejected))

    def measure() -> tuple[float, float, float]:
        fresh = policy.generate(prompts, max_new_tokens=8, n_per_prompt=16, seed=5)
        owners = [prompts[int(j)] for j in fresh.prompt_index]
        with torch.no_grad():
            kl = float(((fresh.logp - ref.sampled_logp(fresh)) * fresh.completion_mask).sum(-1).mean())
        return float(scorer(owners, fresh.completions).mean()), float(vowel_share(owners, fresh.completions).mean()), kl

    learned0, true0, _ = measure()
    beta = 0.1
    train_dpo(policy, ref, records, DPOConfig(loss=loss, beta=beta, lr=3e-3, epochs=2, batch_size=16))
    learned1, true1, kl = measure()
    print(
        f"{loss}: {len(records)} pairs; learned {learned0:.3f} -> {learned1:.3f}, true {true0:.3f} -> {true1:.3f}, "
        f"KL {kl:.2f} nats per completion"
    )
    # Seen (1 thread, 297 pairs): dpo learned 0.29 -> 2.40, true 0.258 -> 0.502, KL 4.5 nats per completion;
    # ipo learned 0.29 -> 2.44, true 0.258 -> 0.494, KL 4.3. The target: 1 nat per token of the 8.
    assert learned1 >= learned0 + 1.5
    assert true1 >= true0 + 0.1
    assert kl < 8.0
