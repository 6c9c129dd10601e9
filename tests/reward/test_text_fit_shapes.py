"""`fit-reward --model tiny` with its defaults reaches a plain Bradley–Terry loop's accuracy on any data shape.

The data come from a Boltzmann (noisy) teacher: each of 60 words carries a
weight ``w ~ N(0, 1)``, a completion's true reward is the sum of its eight words'
weights, and the teacher prefers ``a`` over ``b`` with probability
``sigmoid(beta * (r(a) - r(b)))``, ``beta = 1.5``. Labels are drawn from that
probability, so no model can order more held-out pairs than the true reward does
on average: the **Bayes ceiling** ``mean(max(p, 1 - p))`` over the held-out pairs
(stated and checked in each test).

The reference is a plain loop: the same tiny model (same initial weights and
tokenizer as ``fit-reward --model tiny``), whole sequences (prompt + completion)
through the model, shuffled batches of 32 pairs, AdamW at ``fit-reward``'s
default rate, one epoch, seed 0.

Two shapes of 4,000-odd pairs:

- few prompts, many pairs: 30 prompts, 17 completions each, all 136 pairs of each
  prompt labelled (4,080 pairs; held out: 9 new completions of each prompt, 1,080
  pairs). Bayes ceiling 0.909; the plain loop reaches 0.896. Before pairs were
  budgeted per step, a batch held whole prompt groups under 4,096 padded positions:
  3 optimiser steps an epoch and held-out accuracy 0.752; now 150 steps and 0.884 (0.881 before
  the one reward fit of issue 11, which plans the same steps);
- many prompts, one pair each (4,000 pairs; held out: 1,000 pairs of other
  prompts). Bayes ceiling 0.899; plain loop 0.878; ``fit-reward`` 0.876 before (30
  steps), 0.886 now (125 steps).

"Reaches" means at least 0.83 and no more than 0.02 below the plain loop: the
loops' batch orders alone move one run's held-out accuracy by about 0.01–0.015
(over four data seeds of the first shape at ``beta = 1``, ``fit-reward`` minus
plain was +0.003, -0.008, +0.004 and -0.015).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rlhfkit.cli import main
from rlhfkit.feedback.formats import read_preferences
from rlhfkit.reward.losses import bradley_terry_loss
from rlhfkit.reward.transformer import completion_token_ids, load_reward_model, plain_rewards, prompt_token_ids

WORDS = tuple(f"{c}{v}{e}" for c in "bdgkmprst" for v in "aeiou" for e in "ln")[:60]
WEIGHTS = dict(zip(WORDS, np.random.default_rng(0).normal(size=len(WORDS)), strict=True))
BETA = 1.5
COMPLETION_WORDS = 8

Row = dict[str, str]


def _true_reward(text: str) -> float:
    return float(sum(WEIGHTS[w] for w in text.split()))


def _labelled(rng: np.random.Generator, prompt: str, a: str, b: str) -> tuple[Row, float]:
    """One row drawn from the Boltzmann teacher, and the Bayes-optimal chance of predicting it."""
    p_a = 1.0 / (1.0 + np.exp(-BETA * (_true_reward(a) - _true_reward(b))))
    chosen, rejected = (a, b) if rng.random() < p_a else (b, a)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}, float(max(p_a, 1.0 - p_a))


def _completions(rng: np.random.Generator, k: int) -> list[str]:
    out: list[str] = []
    while len(out) < k:
        text = " " + " ".join(rng.choice(WORDS, COMPLETION_WORDS))
        if text not in out:
            out.append(text)
    return out


def _all_pairs(rng: np.random.Generator, prompts: list[str], k: int) -> tuple[list[Row], float]:
    """``k`` completions per prompt and every one of their ``k(k-1)/2`` pairs labelled; the Bayes ceiling."""
    rows, best = [], []
    for prompt in prompts:
        comps = _completions(rng, k)
        for i in range(k):
            for j in range(i + 1, k):
                row, p = _labelled(rng, prompt, comps[i], comps[j])
                rows.append(row)
                best.append(p)
    order = rng.permutation(len(rows))
    return [rows[i] for i in order], float(np.mean(best))


def _prompts(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, 6)) for _ in range(n)]


def _write(path: Path, rows: list[Row]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _plain_loop_accuracy(train: Path, held: Path, batch: int = 32, lr: float = 5e-4, seed: int = 0) -> float:
    """Held-out accuracy of one epoch of a plain Bradley–Terry loop on whole sequences, batches of ``batch`` pairs."""
    texts = [str(v) for r in read_preferences(train).records for v in (r.prompt, r.chosen, r.rejected)]
    model, tokenizer = load_reward_model("tiny", texts, seed)  # what fit-reward --model tiny starts from
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    pad = int(tokenizer.pad_token_id)

    def sequences(path: Path) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        out = []
        for r in read_preferences(path).records:
            assert isinstance(r.prompt, str) and isinstance(r.chosen, str) and isinstance(r.rejected, str)
            prompt = prompt_token_ids(tokenizer, r.prompt)
            out.append(
                (
                    prompt + completion_token_ids(tokenizer, r.chosen),
                    prompt + completion_token_ids(tokenizer, r.rejected),
                )
            )
        return out

    pairs = sequences(train)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    order = np.random.default_rng(seed).permutation(len(pairs))
    model.train()
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        rewards = plain_rewards(model, [pairs[i][0] for i in idx] + [pairs[i][1] for i in idx], pad)
        r_chosen, r_rejected = rewards[: len(idx)], rewards[len(idx) :]
        loss = bradley_terry_loss(r_chosen, r_rejected, torch.tensor([[1.0, 0.0]] * len(idx))).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    held_pairs = sequences(held)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(held_pairs), 256):
            chunk = held_pairs[start : start + 256]
            rewards = plain_rewards(model, [c for c, _ in chunk] + [r for _, r in chunk], pad)
            correct += int((rewards[: len(chunk)] > rewards[len(chunk) :]).sum())
    return correct / len(held_pairs)


def _fit_reward_defaults(tmp_path: Path, train: Path, held: Path) -> dict[str, float]:
    out = tmp_path / "rm"
    assert (
        main(["fit-reward", "--data", str(train), "--eval-data", str(held), "--model", "tiny", "--out", str(out)]) == 0
    )
    metrics: dict[str, float] = json.loads((out / "metrics.json").read_text())
    return metrics


@pytest.mark.slow
def test_defaults_reach_a_plain_loop_on_few_prompts_with_many_pairs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    prompts = _prompts(rng, 30)
    train_rows, _ = _all_pairs(rng, prompts, 17)
    held_rows, ceiling = _all_pairs(rng, prompts, 9)  # new completions of the same prompts: 1,080 pairs
    assert len(train_rows) == 4080 and len(held_rows) == 1080
    assert ceiling == pytest.approx(0.909, abs=0.001)  # the Bayes ceiling of this held-out set
    train, held = _write(tmp_path / "train.jsonl", train_rows), _write(tmp_path / "held.jsonl", held_rows)

    plain = _plain_loop_accuracy(train, held)
    ours = _fit_reward_defaults(tmp_path, train, held)
    print(
        f"Bayes ceiling {ceiling:.3f}, plain loop {plain:.3f}, "
        f"fit-reward {ours['accuracy']:.3f} ({ours['steps']} steps)"
    )
    assert plain >= 0.83, plain  # the reference this shape is judged by
    assert ours["accuracy"] >= 0.83 and ours["accuracy"] >= plain - 0.02, (ours, plain, ceiling)
    assert ours["steps"] >= 4080 / 32, ours  # the steps follow the pairs (one step per few prompts before)


@pytest.mark.slow
def test_defaults_reach_a_plain_loop_on_many_prompts_with_one_pair(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    train_rows, _ = _all_pairs(rng, _prompts(rng, 4000), 2)
    held_rows, ceiling = _all_pairs(rng, _prompts(rng, 1000), 2)
    assert ceiling == pytest.approx(0.899, abs=0.001)
    train, held = _write(tmp_path / "train.jsonl", train_rows), _write(tmp_path / "held.jsonl", held_rows)

    plain = _plain_loop_accuracy(train, held)
    ours = _fit_reward_defaults(tmp_path, train, held)
    print(
        f"Bayes ceiling {ceiling:.3f}, plain loop {plain:.3f}, "
        f"fit-reward {ours['accuracy']:.3f} ({ours['steps']} steps)"
    )
    assert plain >= 0.83, plain
    assert ours["accuracy"] >= 0.83 and ours["accuracy"] >= plain - 0.02, (ours, plain, ceiling)
    assert ours["steps"] >= 4000 / 32, ours
