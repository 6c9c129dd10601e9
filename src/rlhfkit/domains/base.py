"""What a domain gives the loop: the one interface control and text (and any new domain) implement.

The loop (:mod:`rlhfkit.loop`) knows nothing of segments, tokens, envs or
language models. Each round it asks the domain, in order:

1. :meth:`Domain.sample` — generations from the current policy, grouped into
   queries of the kinds and counts the round asks for (the loop stores both and
   has the human answer them);
2. :meth:`Domain.reward_model` — the reward model the one reward fit
   (:func:`rlhfkit.reward.fit.fit_reward`) trains on every stored answer, with
   :attr:`Domain.reward_optimizer` (None: the fit makes its own) and
   :meth:`Domain.true_return` (a generation's true reward where the task knows
   one, for the fit's ``rm_true_accuracy``);
3. :meth:`Domain.optimize` — the policy's update on the learned reward minus
   ``beta * KL(pi || pi_base)``, with the run's shared ``[kl]`` settings;
4. :meth:`Domain.evaluate` — metrics (``true_return``, ``learned_return``,
   ``kl_to_base`` at least) and samples of what the policy does, for the report.

:meth:`Domain.state_dict` / :meth:`Domain.load_state_dict` are what the domain
puts in, and takes back from, each round's checkpoint. The web app shows a
generation by its content type (``rlhfkit.types``: a ``Segment`` as a video, a
``Text`` as its prompt and completion), so a new domain with a new content type
also adds its view there.

A new domain is one file: a config dataclass (its section of the run config,
named by :attr:`Domain.section`) and a class with these methods; register it in
:data:`rlhfkit.loop.DOMAINS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from rlhfkit.feedback.selection import QuerySelection
from rlhfkit.optimize.kl import KLConfig
from rlhfkit.reward.config import RewardConfig
from rlhfkit.reward.fit import RewardModel
from rlhfkit.types import Content, Generation, Query


@dataclass(frozen=True)
class DomainContext:
    """The parts of a run's config every domain reads, and where the run lives."""

    task: str
    """The run's task name."""
    seed: int
    """The run's seed."""
    rounds: int
    """Rounds in the run (e.g. for a learning-rate schedule over the whole run)."""
    reward: RewardConfig
    """The shared [reward] section (the reward model's size where the domain builds one)."""
    kl: KLConfig
    """The shared [kl] section: the penalty to the base policy."""
    run_dir: Path
    """The run folder (e.g. for a cached base policy)."""
    progress: bool = True
    """Show progress bars."""
    selection: QuerySelection = field(default_factory=QuerySelection)
    """How comparisons are chosen ([feedback] query_strategy and candidates, resolved)."""


Hold = Callable[[], None]
"""Called by :meth:`Domain.optimize` between updates: returns at once, or waits while an admin has paused the run."""


class Domain(Protocol):
    """One kind of policy and generation, driven by the loop (see the module docstring)."""

    instructions: str
    """What people are asked to look for when the run's config gives no instructions."""
    return_scale: float
    """How much longer a generation's return is than the 50-step clips the built-in rating ranges are for."""
    reward_optimizer: torch.optim.Optimizer | None
    """The reward model's optimiser, kept across rounds (None: each fit makes its own)."""

    def teacher_reward(self, content: Content) -> np.ndarray:
        """The true reward the simulated human judges a generation by (per step, or one number for a whole text)."""
        ...

    def sample(
        self, round_: int, counts: Mapping[str, int], rng: np.random.Generator
    ) -> tuple[list[Generation], list[Query]]:
        """``counts[kind]`` queries of each kind about new generations of the current policy (round ``round_``)."""
        ...

    def evaluation_queries(self, round_: int, rng: np.random.Generator) -> tuple[list[Generation], list[Query]]:
        """Comparisons of the current policy against the base for people to judge, asked after each round's
        evaluation and never fitted (ids starting ``eval-``, :mod:`rlhfkit.feedback.win_rate`); empty for none."""
        ...

    def reward_model(self) -> RewardModel | None:
        """The reward model, wrapped for the one reward fit; None when the policy's reward is fixed (a frozen
        reward model, a reward function): the loop then asks no queries and fits nothing."""
        ...

    def true_return(self, content: Content) -> float:
        """A generation's true reward (NaN where the task has none)."""
        ...

    def optimize(self, round_: int, hold: Hold) -> None:
        """Step 3: one round of policy optimisation on the learned reward, with the KL to the base."""
        ...

    def evaluate(self) -> tuple[dict[str, float], dict[str, Any]]:
        """The policy's metrics now (fixed seeds), and samples of what it does for the report."""
        ...

    def counters(self) -> dict[str, float]:
        """The domain's running totals for metrics.jsonl (``env_steps``, ``generated_tokens``)."""
        ...

    @property
    def beta(self) -> float:
        """The KL weight now (an adaptive controller moves it)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything the domain needs to go on after a restart (its part of a checkpoint)."""
        ...

    def load_state_dict(self, state: dict[str, Any], round_: int) -> None:
        """Take back :meth:`state_dict`'s entries from round ``round_``'s checkpoint."""
        ...
