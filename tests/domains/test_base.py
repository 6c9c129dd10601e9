"""A domain of one's own goes through the one loop unchanged: a toy bandit domain, written against the Domain protocol.

The bandit's policy picks one of six words; a generation is that word (a ``Text``); its true reward is a fixed
score per word, which only the simulated human sees. The loop stores its queries and answers, the one reward fit
trains a bag-of-words reward model on them, and the domain's optimiser (exact policy gradient on the learned
reward minus beta * KL to the base) moves the policy: the true return rises over the base's by a margin.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rlhfkit.config import FeedbackConfig, KLConfig, RunConfig
from rlhfkit.domains.base import Domain, Hold
from rlhfkit.feedback.mix import select_queries
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.teacher import TeacherConfig
from rlhfkit.loop import Run
from rlhfkit.reward.config import RewardConfig
from rlhfkit.reward.feature_model import BagOfWords, TextFeatureRewardModel
from rlhfkit.types import Content, Generation, Query, Text, new_id

WORDS = ("dull", "plain", "fine", "good", "great", "superb")
TRUE = np.array([-2.0, -1.0, 0.0, 0.5, 1.5, 2.0])
"""The true reward of each word: the simulated human judges by it, the policy never sees it."""

MARGIN = 1.0
"""Least rise in the expected true reward over the uniform base policy (0.17 expected; the best word scores 2.0)."""


def _word(x: Content) -> int:
    assert isinstance(x, Text) and isinstance(x.completion, str)
    return WORDS.index(x.completion)


class BanditDomain:
    """A categorical policy over WORDS; generations are single words."""

    instructions = "Prefer the better word."
    return_scale = 1.0
    reward_optimizer: torch.optim.Optimizer | None = None

    def __init__(self, kl: KLConfig, seed: int = 0, steps: int = 200, lr: float = 0.1) -> None:
        self.kl_config = kl
        self.steps, self.lr = steps, lr
        self.logits = torch.zeros(len(WORDS), requires_grad=True)
        self.base = torch.zeros(len(WORDS))
        self.model = TextFeatureRewardModel(BagOfWords(WORDS), size=2, hidden=(16,))
        self.rng = np.random.default_rng(seed)
        self.teacher_reward: Callable[[Content], np.ndarray] = lambda x: np.array([TRUE[_word(x)]])

    def sample(
        self, round_: int, counts: Mapping[str, int], rng: np.random.Generator
    ) -> tuple[list[Generation], list[Query]]:
        probs = torch.softmax(self.logits, 0).detach().numpy()
        n = 2 * sum(counts.values())
        words = rng.choice(len(WORDS), size=n, p=probs)
        gens = [Generation(new_id(rng), round_, f"round-{round_ - 1}", Text("say a word", WORDS[w])) for w in words]
        return gens, select_queries(gens, counts, rng)

    def evaluation_queries(self, round_: int, rng: np.random.Generator) -> tuple[list[Generation], list[Query]]:
        return [], []  # judged by its true reward

    def reward_model(self) -> TextFeatureRewardModel:
        return self.model

    def true_return(self, content: Content) -> float:
        return float(TRUE[_word(content)])

    def _learned(self) -> torch.Tensor:
        with torch.no_grad():
            items = [Text("say a word", w) for w in WORDS]
            return self.model.returns(self.model.encode(items)).mean(0)

    def optimize(self, round_: int, hold: Hold) -> None:
        """Exact gradient ascent on E_pi[r_learned] - beta * KL(pi || base)."""
        reward = self._learned()
        opt = torch.optim.SGD([self.logits], lr=self.lr)
        for _ in range(self.steps):
            hold()
            logp = torch.log_softmax(self.logits, 0)
            kl = (logp.exp() * (logp - torch.log_softmax(self.base, 0))).sum()
            loss = -(logp.exp() * reward).sum() + self.kl_config.beta * kl
            opt.zero_grad()
            loss.backward()
            opt.step()

    def evaluate(self) -> tuple[dict[str, float], dict[str, Any]]:
        p = torch.softmax(self.logits, 0).detach()
        logp, logq = torch.log_softmax(self.logits, 0).detach(), torch.log_softmax(self.base, 0)
        metrics = {
            "true_return": float((p * torch.as_tensor(TRUE, dtype=p.dtype)).sum()),
            "learned_return": float((p * self._learned()).sum()),
            "kl_to_base": float((p * (logp - logq)).sum()),
        }
        return metrics, {"kind": "text", "samples": []}

    def counters(self) -> dict[str, float]:
        return {}

    @property
    def beta(self) -> float:
        return self.kl_config.beta

    def state_dict(self) -> dict[str, Any]:
        return {"logits": self.logits.detach().clone(), "reward_model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any], round_: int) -> None:
        with torch.no_grad():
            self.logits.copy_(state["logits"])
        self.model.load_state_dict(state["reward_model"])


def test_a_toy_domain_runs_through_the_unchanged_loop_store_and_fit(tmp_path: Path) -> None:
    kl = KLConfig(beta=0.05)
    config = RunConfig(
        task="bandit",
        rounds=3,
        feedback=FeedbackConfig(initial_comparisons=20, comparisons_per_round=10, teacher=TeacherConfig(beta=3.0)),
        reward=RewardConfig(ensemble_size=2, epochs=40, hidden=(16,)),
        kl=kl,
    )
    domain: Domain = BanditDomain(kl)
    run = Run.create(config, tmp_path / "run", progress=False, domain=domain)
    history = run.run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    true = [r["true_return"] for r in rows]
    print("bandit true return by round:", [round(t, 3) for t in true], "accuracy", [r["rm_accuracy"] for r in rows])
    assert [r["round"] for r in rows] == [0, 1, 2, 3] and len(history) == 4
    assert true[0] == pytest.approx(float(TRUE.mean()))  # the base is uniform
    assert true[-1] - true[0] >= MARGIN, true
    assert rows[-1]["kl_to_base"] > 0.0
    store = FeedbackStore.in_dir(tmp_path / "run")
    assert store.count_feedback() == 40 and len(store.queries()) == 40
    assert {_word(g.content) for g in store.generations().values()} <= set(range(len(WORDS)))
    assert rows[-1]["rm_true_accuracy"] > 0.7  # the one fit learned the person's ordering of words
