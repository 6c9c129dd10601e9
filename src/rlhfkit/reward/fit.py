"""The one reward fit: any reward model, any mix of feedback kinds, measured on held-out answers.

:func:`fit_reward` minimises, for every ensemble member ``k``::

    sum_kinds (n_kind / n) * L_kind(r_k; bootstrap counts c_k)                  (reward/calibration.py)
      + center_coef * mean(r_k)^2  +  prior_coef * |calibration log-scales|^2

with AdamW (weight decay on the reward model's weights: the second regulariser;
the calibration, present only when rankings, labels, corrections or learned
ratings are given, has its own AdamW without decay and the weak prior instead).
Each kind's loss ``L_kind`` is the mean over the step's answers of that kind,
weighted per member by the bootstrap counts ``c_k`` (with K > 1: how often each
answer was drawn in ``n`` draws with replacement, anew each fit; K = 1 trains on
every answer once, since a single model gains nothing from a resample). Every
kind's answers are therefore resampled the same way, and the members also start
from different initial weights. ``mean(r)`` is the mean reward per scoring unit:
per step of a control segment, per text (Bradley–Terry and the choice kinds
leave the reward's level free; centering pins it).

Steps: each epoch cuts each kind's answers into ``batch_size`` minibatches (a
fresh permutation, in near-equal parts); a step takes one minibatch of every
kind, and an epoch has as many steps as the kind with the most answers needs
(smaller kinds cycle). A reward model may plan its own minibatches instead
(:meth:`PlansBatches.plan_batches`): the transformer takes whole prompt pieces,
each prompt encoded once. Each step scores only the generations its answers touch.

Answers stored but not usable (incomparable, "none of these", utterances not
understood) are counted, never trained on. The held-out answers (by the hash of
their query id, :meth:`~rlhfkit.feedback.answers.AnswerSet.split`) give the
metrics: accuracy on decisive comparisons and on adjacent places of rankings,
the same pairs ordered like the true return, and the ECE of ``P(A > B)`` on
comparisons.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from rlhfkit.feedback.answers import AnswerSet, is_heldout
from rlhfkit.feedback.mix import KindTools
from rlhfkit.feedback_records import Comparison, Feedback, Ranking
from rlhfkit.reward.calibration import Calibration, kind_terms
from rlhfkit.reward.config import RewardConfig
from rlhfkit.reward.fit_data import FitData, build_fit_data, unusable
from rlhfkit.reward.kinds import KindTerms
from rlhfkit.reward.losses import expected_calibration_error
from rlhfkit.types import Content, Query

__all__ = ["NoUsableFeedbackError", "RewardConfig", "RewardMetrics", "fit_reward", "is_heldout", "measure"]


class NoUsableFeedbackError(RuntimeError):
    """There is nothing to fit the reward model on."""


class RewardModel(Protocol):
    """Scores whole generations: ``encode`` them once, then ``returns`` for any subset.

    ``returns(encoded, idx)`` is ``(K, n)``: each of the K members' return of the
    encoded items ``idx`` (all when None). Optional: ``units(encoded, idx) -> (n,)``,
    the scoring units in each item (steps of a segment; 1 per item otherwise),
    and ``plan_batches`` (:class:`PlansBatches`).
    """

    @property
    def size(self) -> int: ...

    def encode(self, items: Sequence[Content]) -> Any: ...

    def set_stats(self, encoded: Any) -> None: ...

    def returns(self, encoded: Any, idx: torch.Tensor | None = None) -> torch.Tensor: ...

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


@runtime_checkable
class PlansBatches(Protocol):
    """A reward model's hint on how to cut its training steps."""

    def plan_batches(
        self, encoded: Any, touched: Sequence[tuple[int, ...]], config: RewardConfig, rng: np.random.Generator
    ) -> list[list[int]]:
        """One epoch's minibatches of one kind's answers (indices); ``touched[i]``: the items answer ``i`` is about."""
        ...


@dataclass(frozen=True)
class RewardMetrics:
    """What a fit trained on and how well it does on the held-out answers."""

    loss: float
    """The last step's training loss: the answer-weighted sum over kinds (before the regularisers)."""
    losses: dict[str, float]
    """The last step's training loss of each kind."""
    heldout_accuracy: float
    """Held-out decisive comparisons and adjacent places of held-out rankings that the reward (ensemble mean)
    orders like the human; NaN when none is held out."""
    true_accuracy: float
    """Held-out comparisons and adjacent ranked places ordered like the true return (NaN without one)."""
    ece: float
    """Expected calibration error of P(A > B) on the held-out comparisons (NaN without any)."""
    counts: dict[str, int]
    """Usable training answers per kind."""
    n_heldout: int
    """Usable held-out answers (every kind)."""
    skipped: dict[str, int]
    """Stored answers, training and held-out, that the fit could not use: incomparable comparisons,
    "none of these" labels, utterances not understood."""
    steps: int
    """Gradient steps taken."""
    seconds: float
    """Wall time of the training steps (scoring, loss, backward, optimizer step; not encoding the items,
    planning the steps or measuring)."""

    @property
    def n_train(self) -> int:
        return sum(self.counts.values())

    @property
    def n_incomparable(self) -> int:
        return self.skipped.get("comparison", 0)


_SKIPPED = {"comparison": "incomparable", "label": '"none of these"', "language": "not understood"}


def _skipped_text(skipped: dict[str, int]) -> str:
    return ", ".join(f"{n} {_SKIPPED.get(k, k)}" for k, n in skipped.items())


def make_reward_optimizer(model: Any, config: RewardConfig) -> torch.optim.Optimizer:
    """AdamW on the reward model's trainable weights (a loop keeps it across rounds for a warm start).

    Frozen weights (a LoRA model's base) are left out: AdamW would skip them, but they would sit in its
    parameter groups.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _calibrated(data: FitData, config: RewardConfig) -> bool:
    """Whether the answers train calibration parameters (rankings, labels, corrections, learned ratings)."""
    return bool(
        data.ranking is not None
        or data.labels
        or data.correction is not None
        or (data.rating is not None and config.rating_fit == "learned")
    )


def _bootstrap(sizes: dict[str, int], k: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Per kind key, ``(K, n)`` counts: how often each answer is drawn in ``n`` draws with replacement, per member."""
    return {
        key: torch.as_tensor(np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(k)])).float()
        for key, n in sizes.items()
    }


def _plan_steps(
    model: Any, encoded: Any, data: FitData, config: RewardConfig, rng: np.random.Generator
) -> list[dict[str, torch.Tensor]]:
    """Every step of the fit: per kind key, the answers in its minibatch (see the module docstring)."""
    sizes = data.sizes()
    planner = model if isinstance(model, PlansBatches) else None
    touched = {k: data.touched_by_answer(k) for k in sizes} if planner is not None else {}

    def epoch(key: str) -> list[Sequence[int]]:
        if planner is not None:
            return list(planner.plan_batches(encoded, touched[key], config, rng))
        n = sizes[key]
        return [part.tolist() for part in np.array_split(rng.permutation(n), -(-n // config.batch_size))]

    steps: list[dict[str, torch.Tensor]] = []
    for _ in range(config.epochs):
        per_key = {key: epoch(key) for key in sizes}
        n_steps = max(len(b) for b in per_key.values())
        for key, batches in per_key.items():
            while len(batches) < n_steps:  # a kind with fewer answers goes round again
                batches += epoch(key)
        steps += [{key: torch.as_tensor(per_key[key][s], dtype=torch.long) for key in sizes} for s in range(n_steps)]
    return steps


def _step_loss(
    model: Any,
    encoded: Any,
    data: FitData,
    cal: Calibration,
    batch: dict[str, torch.Tensor],
    weight: dict[str, torch.Tensor] | None,
    config: RewardConfig,
    calibrated: bool,
) -> tuple[dict[str, KindTerms], torch.Tensor]:
    """One step's terms per kind and the total loss (see the module docstring), scoring each touched item once."""
    needed = torch.unique(torch.cat([data.touched(k, b) for k, b in batch.items()]))
    pos = torch.full((len(data.items),), -1, dtype=torch.long)
    pos[needed] = torch.arange(len(needed))
    scores = model.returns(encoded, needed)  # (K, u)
    terms = kind_terms(data, cal, lambda idx: scores[:, pos[idx]], batch, config.rating_fit, weight, config.slip_rate)
    total = sum((data.counts[k] / data.n_answers * t.loss for k, t in terms.items()), torch.zeros(()))
    units = getattr(model, "units", None)
    per_unit = scores.sum(-1) / (units(encoded, needed).sum() if units is not None else len(needed))  # (K,)
    total = total + config.center_coef * (per_unit**2).mean()
    if calibrated:
        total = total + config.prior_coef * (cal.log_scales() ** 2).sum()
    return terms, total


def fit_reward(
    model: Any,
    train: AnswerSet,
    heldout: AnswerSet | None = None,
    config: RewardConfig | None = None,
    tools: KindTools | None = None,
    *,
    true_return: Callable[[Content], float] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> RewardMetrics:
    """Fit ``model`` in place (warm start) on ``train``; measure it on ``heldout``.

    ``model``: a :class:`RewardModel` of ``config.ensemble_size`` members.
    ``tools``: what corrections (an editor) and language (an interpreter and the
    task's features) need. ``true_return(content)``, if given, scores the held-out
    pairs against the truth too. ``optimizer``: the reward model's AdamW from the
    last fit (a loop's warm start); by default a fresh one. The fit's draws come
    from ``config.seed`` and leave torch's global random state as it was.

    Raises :class:`NoUsableFeedbackError` when no training answer is usable.
    """
    config = config or RewardConfig()
    if model.size != config.ensemble_size:
        raise ValueError(f"the reward model has {model.size} members but ensemble_size is {config.ensemble_size}")
    data = build_fit_data(train, tools, config.n_alternatives, config.seed)
    skipped = dict(data.skipped)
    for kind, n in (unusable(heldout) if heldout is not None else {}).items():
        skipped[kind] = skipped.get(kind, 0) + n
    n_held = 0 if heldout is None else len(heldout) - sum(unusable(heldout).values())
    if data.n_answers == 0:
        stored = len(train) + (0 if heldout is None else len(heldout))
        held = f", {n_held} held out" if n_held else ""
        why = f", {_skipped_text(skipped)}" if skipped else ""
        raise NoUsableFeedbackError(f"no usable answers to fit the reward on ({stored} stored{why}{held})")
    rng = np.random.default_rng(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.disable_dropout and isinstance(model, nn.Module):
            for module in model.modules():
                if isinstance(module, nn.Dropout):
                    module.p = 0.0
        encoded = model.encode(data.items)
        model.set_stats(encoded)
        cal = Calibration(data)
        opt = optimizer or make_reward_optimizer(model, config)
        optimizers = [opt]
        if _calibrated(data, config):  # the calibration's own AdamW (fresh each fit, no weight decay)
            optimizers.append(torch.optim.AdamW(cal.parameters(), lr=config.lr, weight_decay=0.0))
        for o in optimizers:
            for group in o.param_groups:
                group["lr"] = group["initial_lr"] = config.lr  # a warm optimizer may end a cosine fit near 0
        weights = _bootstrap(data.sizes(), model.size, rng) if model.size > 1 else None
        steps = _plan_steps(model, encoded, data, config, rng)
        scheds = (
            [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=len(steps)) for o in optimizers]
            if config.lr_schedule == "cosine"
            else []
        )
        model.train()
        losses: dict[str, float] = {}
        t0 = time.perf_counter()
        for batch in steps:
            w = None if weights is None else {k: weights[k][:, b] for k, b in batch.items()}
            terms, total = _step_loss(model, encoded, data, cal, batch, w, config, calibrated=len(optimizers) > 1)
            for o in optimizers:
                o.zero_grad()
            total.backward()
            for o in optimizers:
                o.step()
            for sched in scheds:
                sched.step()
            losses = {k: float(t.loss.detach()) for k, t in terms.items()}
        seconds = time.perf_counter() - t0
        model.eval()
    acc, true_acc, ece = measure(model, heldout, true_return) if heldout is not None else (math.nan,) * 3
    return RewardMetrics(
        loss=sum(data.counts[k] / data.n_answers * v for k, v in losses.items()) if losses else math.nan,
        losses=losses,
        heldout_accuracy=acc,
        true_accuracy=true_acc,
        ece=ece,
        counts=dict(data.counts),
        n_heldout=n_held,
        skipped=skipped,
        steps=len(steps),
        seconds=seconds,
    )


# -- measuring ---------------------------------------------------------------------------


def ordering_accuracy(predicted_diff: torch.Tensor, true_diff: torch.Tensor) -> float:
    """Fraction of pairs whose predicted ordering matches the true one (true ties skipped, predicted ties wrong)."""
    keep = true_diff != 0
    if not bool(keep.any()):
        return float("nan")
    return float((torch.sign(predicted_diff[keep]) == torch.sign(true_diff[keep])).double().mean())


def heldout_pairs(feedback: Sequence[Feedback], queries: Mapping[str, Query]) -> list[tuple[str, str]]:
    """``(preferred, other)`` generation ids from decisive comparisons and adjacent places of rankings."""
    pairs: list[tuple[str, str]] = []
    for f in feedback:
        if isinstance(f, Comparison) and f.mu is not None and f.mu[0] != f.mu[1]:
            a, b = queries[f.query_id].generation_ids
            pairs.append((a, b) if f.mu[0] > f.mu[1] else (b, a))
        elif isinstance(f, Ranking):
            pairs += list(zip(f.ranked[:-1], f.ranked[1:], strict=True))
    return pairs


@torch.no_grad()
def measure(
    model: Any, answers: AnswerSet, true_return: Callable[[Content], float] | None = None
) -> tuple[float, float, float]:
    """``(accuracy, true-ordering accuracy, ECE)`` of the ensemble-mean reward on ``answers``; NaN where
    there is nothing to measure.

    Accuracy and true-ordering accuracy are over :func:`heldout_pairs` (a predicted tie is wrong; a true
    tie is left out of the second), ECE over the usable comparisons' ``P(A > B)`` against ``mu(A)``.
    """
    pairs = heldout_pairs(answers.feedback, answers.queries)
    comps = [f for f in answers.feedback if isinstance(f, Comparison) and f.mu is not None]
    shown = [answers.queries[c.query_id].generation_ids for c in comps]
    ids = list(dict.fromkeys([g for pair in pairs for g in pair] + [g for ab in shown for g in ab]))
    if not ids:
        return math.nan, math.nan, math.nan
    row = {g: i for i, g in enumerate(ids)}
    model.eval()
    ret = model.returns(model.encode([answers.generations[g].content for g in ids])).mean(0).double()

    def diff(ab: Sequence[tuple[str, ...]]) -> torch.Tensor:
        return ret[[row[a] for a, _ in ab]] - ret[[row[b] for _, b in ab]]

    accuracy = true_accuracy = ece = math.nan
    if pairs:
        d = diff(pairs)
        accuracy = float((d > 0).double().mean())
        if true_return is not None:
            truth = {g: true_return(answers.generations[g].content) for g in ids}
            true_accuracy = ordering_accuracy(d, torch.tensor([truth[a] - truth[b] for a, b in pairs]).double())
    if comps:
        mu_a = torch.tensor([c.mu[0] for c in comps if c.mu is not None], dtype=torch.float64)
        ece = expected_calibration_error(torch.sigmoid(diff(shown)), mu_a)
    return accuracy, true_accuracy, ece


@torch.no_grad()
def agreement(model: Any, items_a: Sequence[Content], items_b: Sequence[Content], true_diff: np.ndarray) -> float:
    """Fraction of pairs ``(a_i, b_i)`` the fitted reward (ensemble mean) orders like ``true_diff``."""
    ea, eb = model.encode(items_a), model.encode(items_b)
    diff = model.returns(ea).mean(0) - model.returns(eb).mean(0)
    return ordering_accuracy(diff.double(), torch.as_tensor(true_diff, dtype=torch.float64))
