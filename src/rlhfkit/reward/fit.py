"""Fitting a reward model to stored comparisons, and measuring it.

``fit_reward`` minimises, for every ensemble member k on its own bootstrap
resample D_k of the training answers::

    sum_{i in D_k} BT(r_k(A_i), r_k(B_i); mu_i) / |D_k|  +  center_coef * mean_t r_k(s_t, a_t)^2

with weight decay (AdamW) as the second regulariser. Incomparable answers are
kept out of the data (they are stored, never trained on). A fixed, hash-based
fraction of the answers is held out for metrics, so an answer stays in the same
split from round to round while the model is warm-started.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rlhfkit.checks import fraction, non_negative, positive, require
from rlhfkit.reward.losses import bradley_terry_loss, expected_calibration_error, reward_centering_penalty
from rlhfkit.reward.nets import RewardEnsemble
from rlhfkit.types import Comparison, Generation, Segment


class NoUsableFeedbackError(RuntimeError):
    """There is nothing to fit the reward model on."""


@dataclass(frozen=True)
class RewardFitConfig:
    """How the reward model is trained."""

    ensemble_size: int = 3
    """K, the number of ensemble members, each trained on a bootstrap resample."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths of each per-step MLP r(s, a)."""
    epochs: int = 30
    """Passes over the training answers per fit (the model is warm-started between rounds)."""
    batch_size: int = 32
    """Pairs per gradient step."""
    lr: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay (the L2-style regulariser lambda_r)."""
    center_coef: float = 1e-3
    """Weight of the reward-centering term mean(r)^2; 0 turns it off."""
    holdout_frac: float = 0.15
    """Fraction of answers held out (by a hash of the query id) for the metrics."""
    use_action: bool = True
    """Feed the action to r(s, a); false gives a state-only r(s), which resists crediting actions for later states."""

    def __post_init__(self) -> None:
        require(
            self,
            {
                "ensemble_size": (positive, ">= 1"),
                "hidden": (lambda h: len(h) > 0 and all(w > 0 for w in h), "a non-empty list of positive widths"),
                "epochs": (positive, ">= 1"),
                "batch_size": (positive, ">= 1"),
                "lr": (positive, "> 0"),
                "weight_decay": (non_negative, ">= 0"),
                "center_coef": (non_negative, ">= 0"),
                "holdout_frac": (fraction, "in [0, 1)"),
            },
        )


@dataclass(frozen=True)
class PairBatch:
    """Comparison data as tensors. ``obs_*``: ``(N, T, obs_dim)``; ``mu``: ``(N, 2)``."""

    obs_a: torch.Tensor
    act_a: torch.Tensor
    obs_b: torch.Tensor
    act_b: torch.Tensor
    mu: torch.Tensor
    true_a: torch.Tensor
    true_b: torch.Tensor

    def __len__(self) -> int:
        return int(self.mu.shape[0])

    def subset(self, idx: torch.Tensor) -> PairBatch:
        return PairBatch(
            *(t[idx] for t in (self.obs_a, self.act_a, self.obs_b, self.act_b, self.mu, self.true_a, self.true_b))
        )


@dataclass(frozen=True)
class RewardMetrics:
    """Quality of a reward model on held-out answers."""

    loss: float
    """Bradley–Terry loss on the training answers at the end of the fit."""
    heldout_accuracy: float
    """Agreement with the human's preferred side on held-out decisive answers."""
    true_accuracy: float
    """Agreement with the true reward's ordering on held-out pairs."""
    ece: float
    """Expected calibration error of P(A>B) on held-out answers."""
    n_train: int
    n_heldout: int
    n_incomparable: int


def _stack(segments: Sequence[Segment], discrete: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lengths = {len(s) for s in segments}
    if len(lengths) != 1:
        raise ValueError(f"segments in one fit must share a length, got lengths {sorted(lengths)}")
    obs = torch.as_tensor(np.stack([s.observations for s in segments]), dtype=torch.float32)
    act = torch.as_tensor(np.stack([s.actions for s in segments]))
    act = act.long() if discrete else act.float()
    true = torch.as_tensor(np.stack([s.true_rewards.sum() for s in segments]), dtype=torch.float64)
    return obs, act, true


def make_pairs(
    segments_a: Sequence[Segment], segments_b: Sequence[Segment], mu: np.ndarray, discrete: bool
) -> PairBatch:
    """Tensors for pairs ``(segments_a[i], segments_b[i])`` labelled ``mu[i]``."""
    oa, aa, ta = _stack(segments_a, discrete)
    ob, ab, tb = _stack(segments_b, discrete)
    return PairBatch(oa, aa, ob, ab, torch.as_tensor(mu, dtype=torch.float32), ta, tb)


def is_heldout(query_id: str, frac: float) -> bool:
    """Whether an answer is held out: a fixed share chosen by a hash of its query id, stable across rounds."""
    h = int.from_bytes(hashlib.sha256(query_id.encode()).digest()[:8], "big")
    return h / 2**64 < frac


def comparison_pairs(
    comparisons: Sequence[Comparison],
    queries: dict[str, tuple[str, ...]],
    generations: dict[str, Generation],
    holdout_frac: float,
    discrete: bool,
) -> tuple[PairBatch | None, PairBatch | None, int]:
    """Split usable comparisons into train and held-out batches; also count incomparable ones."""
    usable = [c for c in comparisons if c.usable]
    n_incomparable = len(comparisons) - len(usable)
    if not usable:
        return None, None, n_incomparable
    splits: dict[bool, list[Comparison]] = {True: [], False: []}
    for c in usable:
        splits[is_heldout(c.query_id, holdout_frac)].append(c)

    def batch(cs: list[Comparison]) -> PairBatch | None:
        if not cs:
            return None
        a = [generations[queries[c.query_id][0]].segment for c in cs]
        b = [generations[queries[c.query_id][1]].segment for c in cs]
        return make_pairs(a, b, np.array([c.mu for c in cs], dtype=np.float32), discrete)

    return batch(splits[False]), batch(splits[True]), n_incomparable


@torch.no_grad()
def evaluate_pairs(model: RewardEnsemble, pairs: PairBatch) -> tuple[float, float, float]:
    """``(label accuracy, true-ordering accuracy, ECE)`` of the ensemble mean on ``pairs``."""
    ra = model.segment_returns(pairs.obs_a, pairs.act_a).mean(0)
    rb = model.segment_returns(pairs.obs_b, pairs.act_b).mean(0)
    terms = bradley_terry_loss(ra, rb, pairs.mu)
    true_acc = ordering_accuracy(ra - rb, pairs.true_a - pairs.true_b)
    ece = expected_calibration_error(terms.p_a, pairs.mu[:, 0])
    return float(terms.accuracy), true_acc, ece


def ordering_accuracy(predicted_diff: torch.Tensor, true_diff: torch.Tensor) -> float:
    """Fraction of pairs whose predicted ordering matches the true one (true ties skipped, predicted ties wrong)."""
    keep = true_diff != 0
    if not bool(keep.any()):
        return float("nan")
    return float((torch.sign(predicted_diff[keep]) == torch.sign(true_diff[keep])).double().mean())


def fit_reward(
    model: RewardEnsemble,
    train: PairBatch,
    heldout: PairBatch | None,
    config: RewardFitConfig,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer | None = None,
    n_incomparable: int = 0,
) -> RewardMetrics:
    """Fit ``model`` in place on ``train`` (warm start: pass the previous optimizer too)."""
    n = len(train)
    if n == 0:
        raise NoUsableFeedbackError("no usable comparisons to fit the reward model on")
    opt = optimizer or make_reward_optimizer(model, config)
    model.features.set_stats(
        torch.cat([train.obs_a, train.obs_b]).flatten(0, 1), torch.cat([train.act_a, train.act_b]).flatten(0, 1)
    )
    boot = [torch.randint(0, n, (n,), generator=generator) for _ in range(model.size)]
    steps_per_epoch = max(1, -(-n // config.batch_size))
    model.train()
    last_loss = float("nan")
    for _ in range(config.epochs):
        perms = [b[torch.randperm(n, generator=generator)] for b in boot]
        for s in range(steps_per_epoch):
            total = torch.zeros(())
            for k, member in enumerate(model.members):
                idx = perms[k][s * config.batch_size : (s + 1) * config.batch_size]
                if idx.numel() == 0:
                    continue
                xa = model.features(train.obs_a[idx], train.act_a[idx])
                xb = model.features(train.obs_b[idx], train.act_b[idx])
                ra, rb = member(xa).squeeze(-1), member(xb).squeeze(-1)
                terms = bradley_terry_loss(ra.sum(-1), rb.sum(-1), train.mu[idx])
                total = total + terms.loss + config.center_coef * reward_centering_penalty(torch.cat([ra, rb]))
            opt.zero_grad()
            total.backward()
            opt.step()
            last_loss = total.item() / model.size
    model.eval()
    if heldout is not None and len(heldout) > 0:
        acc, true_acc, ece = evaluate_pairs(model, heldout)
    else:
        acc, true_acc, ece = float("nan"), float("nan"), float("nan")
    return RewardMetrics(
        loss=last_loss,
        heldout_accuracy=acc,
        true_accuracy=true_acc,
        ece=ece,
        n_train=n,
        n_heldout=0 if heldout is None else len(heldout),
        n_incomparable=n_incomparable,
    )


def make_reward_optimizer(model: RewardEnsemble, config: RewardFitConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
