"""Exact maths of the per-kind losses (reward/kinds.py), against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from rlhfkit.reward.kinds import (
    categorical_label_loss,
    correction_loss,
    fit_affine_calibration,
    luce_choice_nll,
    ordered_thresholds,
    ordinal_label_loss,
    plackett_luce_loss,
    profiled_rating_loss,
    rating_loss,
)
from rlhfkit.reward.losses import bradley_terry_loss

D = torch.float64


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_plackett_luce_with_two_items_is_bradley_terry() -> None:
    ra = torch.tensor([1.3, -0.2, 0.0, 4.0], dtype=D)
    rb = torch.tensor([0.1, 0.7, 0.0, -3.0], dtype=D)
    pl = plackett_luce_loss(torch.stack([ra, rb], -1))
    bt = bradley_terry_loss(ra, rb, torch.tensor([[1.0, 0.0]] * 4, dtype=D))
    assert torch.allclose(pl.loss, bt.loss, atol=1e-12)
    assert torch.allclose(pl.nll, -torch.log(torch.sigmoid(ra - rb)), atol=1e-12)


def test_plackett_luce_three_items_by_hand() -> None:
    # r = (2, 1, 0) ranked best first: P = e^2/(e^2+e^1+e^0) * e^1/(e^1+e^0)
    p = math.exp(2) / (math.exp(2) + math.exp(1) + 1) * math.exp(1) / (math.exp(1) + 1)
    terms = plackett_luce_loss(torch.tensor([[2.0, 1.0, 0.0]], dtype=D))
    assert terms.loss.item() == pytest.approx(-math.log(p), abs=1e-12)
    assert terms.metric.item() == 1.0
    # Reversed order: P = 1/(1+e+e^2) * e/(e+e^2); adjacent pairs all wrong.
    q = 1 / (1 + math.e + math.e**2) * math.e / (math.e + math.e**2)
    terms = plackett_luce_loss(torch.tensor([[0.0, 1.0, 2.0]], dtype=D))
    assert terms.loss.item() == pytest.approx(-math.log(q), abs=1e-12)
    assert terms.metric.item() == 0.0


def test_plackett_luce_padding_equals_the_shorter_ranking() -> None:
    full = plackett_luce_loss(torch.tensor([[0.5, -1.0]], dtype=D))
    padded = plackett_luce_loss(torch.tensor([[0.5, -1.0, 99.0]], dtype=D), mask=torch.tensor([[True, True, False]]))
    assert padded.loss.item() == pytest.approx(full.loss.item(), abs=1e-9)
    r = torch.tensor([[0.5, -1.0, 99.0]], dtype=D, requires_grad=True)
    plackett_luce_loss(r, mask=torch.tensor([[True, True, False]])).loss.backward()
    assert r.grad is not None and torch.isfinite(r.grad).all() and r.grad[0, 2] == 0


def test_plackett_luce_ensemble_axis_and_weights() -> None:
    r = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 0.0]]], dtype=D)  # (K=2, N=2, k=2)
    w = torch.tensor([3.0, 1.0], dtype=D)
    terms = plackett_luce_loss(r, weight=w)
    nll = -torch.log(torch.sigmoid(r[..., 0] - r[..., 1]))
    expected = ((nll * w).sum(-1) / 4).mean()
    assert terms.loss.item() == pytest.approx(expected.item(), abs=1e-12)


def test_luce_choice_and_correction_by_hand() -> None:
    # x' = 1.0, x = 0.0, alternatives (0.5, -1.0): P = e / (e + 1 + e^0.5 + e^-1)
    p = math.e / (math.e + 1 + math.exp(0.5) + math.exp(-1))
    nll = luce_choice_nll(torch.tensor([1.0], dtype=D), torch.tensor([[0.0, 0.5, -1.0]], dtype=D))
    assert nll.item() == pytest.approx(-math.log(p), abs=1e-12)
    terms = correction_loss(
        torch.tensor([1.0, -2.0], dtype=D),
        torch.tensor([0.0, 0.0], dtype=D),
        torch.tensor([[0.5, -1.0], [7.0, 7.0]], dtype=D),
        alternatives_mask=torch.tensor([[True, True], [False, False]]),
    )
    # second row: only x and x' count (alternatives masked): -log sigmoid(-2 - 0)
    assert terms.nll[0].item() == pytest.approx(-math.log(p), abs=1e-12)
    assert terms.nll[1].item() == pytest.approx(-math.log(_sig(-2.0)), abs=1e-9)
    assert terms.metric.item() == 0.5  # first correction above its original, second not


def test_rating_loss_by_hand() -> None:
    # y = 0.5, a = 2, b = -0.1, r = 0.2 -> pred 0.3, residual 0.2; sigma 0.4
    terms = rating_loss(
        torch.tensor([0.2], dtype=D),
        torch.tensor([0.5], dtype=D),
        torch.tensor([2.0], dtype=D),
        torch.tensor([-0.1], dtype=D),
        torch.tensor(0.4, dtype=D),
    )
    expected = 0.5 * (0.2 / 0.4) ** 2 + math.log(0.4) + 0.5 * math.log(2 * math.pi)
    assert terms.loss.item() == pytest.approx(expected, abs=1e-12)
    assert terms.metric.item() == pytest.approx(0.2, abs=1e-12)


def test_ordinal_label_loss_by_hand() -> None:
    th = torch.tensor([-1.0, 0.5], dtype=D)  # three labels: bad | ok | good
    r = torch.tensor([0.0, 0.0, 0.0, 2.0], dtype=D)
    labels = torch.tensor([0, 1, 2, 2])
    terms = ordinal_label_loss(r, labels, th, scale=torch.tensor(1.5, dtype=D))
    z = [0.0, 0.0, 0.0, 3.0]
    probs = [
        _sig(-1.0 - z[0]),
        _sig(0.5 - z[1]) - _sig(-1.0 - z[1]),
        1 - _sig(0.5 - z[2]),
        1 - _sig(0.5 - z[3]),
    ]
    assert terms.nll.tolist() == pytest.approx([-math.log(p) for p in probs], abs=1e-9)
    # most likely: z=0 -> "ok" (0.44 vs 0.27/0.38); z=3 -> "good"
    assert terms.metric.item() == pytest.approx(0.5)


def test_ordinal_probabilities_sum_to_one_and_thresholds_increase() -> None:
    th = ordered_thresholds(torch.tensor(-0.3, dtype=D), torch.tensor([-5.0, 0.0, 2.0], dtype=D))
    assert bool((th[1:] > th[:-1]).all())
    r = torch.linspace(-4, 4, 9, dtype=D)
    total = sum(torch.exp(-ordinal_label_loss(r, torch.full((9,), c), th).nll) for c in range(5))
    assert torch.allclose(total, torch.ones(9, dtype=D), atol=1e-9)


def test_categorical_label_loss_by_hand() -> None:
    slopes = torch.tensor([0.0, 1.0, -2.0], dtype=D)
    intercepts = torch.tensor([0.0, 0.5, 0.0], dtype=D)
    r = torch.tensor([1.0], dtype=D)
    logits = [0.0, 1.5, -2.0]
    lse = math.log(sum(math.exp(v) for v in logits))
    terms = categorical_label_loss(r, torch.tensor([2]), slopes, intercepts)
    assert terms.loss.item() == pytest.approx(lse - (-2.0), abs=1e-12)
    assert terms.metric.item() == 0.0


def test_calibration_recovers_known_scale_and_offset() -> None:
    g = torch.Generator().manual_seed(0)
    r = torch.randn(600, generator=g, dtype=D)
    who = torch.arange(600) % 3
    a, b = torch.tensor([1.0, 0.5, 2.0], dtype=D), torch.tensor([0.0, 0.4, -0.3], dtype=D)
    y = a[who] * r + b[who] + 0.05 * torch.randn(600, generator=g, dtype=D)
    scale, offset = fit_affine_calibration(r, y, who, 3)
    assert torch.allclose(scale, a, atol=0.02)
    assert torch.allclose(offset, b, atol=0.02)


def test_joint_fit_recovers_scale_and_offset_up_to_the_shared_affine_map() -> None:
    """Ratings from 3 annotators who use the scale differently; reward and calibration learned together."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 4, generator=g, dtype=D)
    w_true = torch.tensor([1.0, -0.5, 0.25, 0.0], dtype=D)
    r_true = x @ w_true
    who = torch.arange(300) % 3
    a, b = torch.tensor([0.4, 0.2, 0.8], dtype=D), torch.tensor([0.0, 0.3, -0.2], dtype=D)
    y = a[who] * r_true + b[who] + 0.02 * torch.randn(300, generator=g, dtype=D)
    w = torch.zeros(4, dtype=D, requires_grad=True)
    log_a = torch.zeros(3, dtype=D, requires_grad=True)
    off = torch.zeros(3, dtype=D, requires_grad=True)
    log_sigma = torch.tensor(math.log(0.3), dtype=D, requires_grad=True)
    opt = torch.optim.Adam([w, log_a, off, log_sigma], lr=0.05)
    torch.manual_seed(0)
    w.data += 0.1 * torch.randn(4, dtype=D)
    for _ in range(1500):
        terms = rating_loss(x @ w, y, log_a.exp()[who], off[who], log_sigma.exp())
        loss = terms.loss + 1e-2 * log_a.mean() ** 2  # pin the shared scale (a and r trade off)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Identifiable: the ratios a_j / a_0 and the offsets relative to annotator 0.
    ratios = (log_a.exp() / log_a.exp()[0]).detach()
    assert torch.allclose(ratios, a / a[0], atol=0.03)
    assert torch.allclose((off - off[0]).detach(), b - b[0], atol=0.03)
    assert torch.corrcoef(torch.stack([x @ w.detach(), r_true]))[0, 1] > 0.99
    assert terms.metric.item() < 0.03


def _two_annotator_ratings() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    r = torch.randn(40, generator=g, dtype=D)
    who = torch.arange(40) % 2
    a, b = torch.tensor([1.0, 0.6], dtype=D), torch.tensor([0.0, 0.3], dtype=D)
    y = a[who] * r + b[who] + 0.2 * torch.randn(40, generator=g, dtype=D)
    return r, y, who


def test_profiled_rating_loss_is_the_gaussian_nll_at_each_annotators_best_fit() -> None:
    r, y, who = _two_annotator_ratings()
    scale, offset = fit_affine_calibration(r, y, who, 2)
    expected = torch.zeros(40, dtype=D)
    for j in range(2):
        m = who == j
        resid = y[m] - (scale[j] * r[m] + offset[j])
        sigma = resid.pow(2).mean().sqrt()  # the maximum-likelihood sigma_j
        expected[m] = rating_loss(r[m], y[m], scale[j], offset[j], sigma).loss  # annotator j's mean NLL
    terms = profiled_rating_loss(r, y, who, 2)
    assert torch.allclose(terms.nll, expected, atol=1e-9)
    assert terms.loss.item() == pytest.approx(expected.mean().item(), abs=1e-9)
    assert 0.9 < terms.metric.item() < 1.0  # mean correlation


def test_profiled_rating_loss_ignores_the_rewards_scale_and_level_but_not_its_direction() -> None:
    r, y, who = _two_annotator_ratings()
    base = profiled_rating_loss(r, y, who, 2).loss
    for c, d in ((10.0, 3.0), (0.05, -7.0)):
        assert profiled_rating_loss(c * r + d, y, who, 2).loss.item() == pytest.approx(base.item(), abs=1e-9)
    flipped = (-r).requires_grad_(True)
    worse = profiled_rating_loss(flipped, y, who, 2).loss
    assert worse.item() > base.item() + 1.0
    worse.backward()
    assert flipped.grad is not None
    assert float((flipped.grad * y).sum()) < 0  # descending the loss turns the returns towards the ratings


def test_profiled_rating_loss_skips_annotators_with_too_few_or_constant_ratings() -> None:
    r = torch.tensor([0.1, 0.5, -0.3, 2.0, 1.0], dtype=D)
    y = torch.tensor([0.2, 0.2, 0.2, 1.0, -1.0], dtype=D)
    who = torch.tensor([0, 0, 0, 1, 1])
    terms = profiled_rating_loss(r, y, who, 2)
    assert torch.equal(terms.nll, torch.zeros(5, dtype=D))
    assert math.isnan(terms.metric.item())


def test_profiled_rating_loss_weighs_ratings_like_repeated_rows_per_member() -> None:
    """Bootstrap counts per ensemble member give each member the loss of its resample (repeated rows)."""
    r, y, who = _two_annotator_ratings()
    returns = torch.stack([r, 0.5 * r + torch.linspace(-1, 1, 40, dtype=D)])  # two members
    g = torch.Generator().manual_seed(5)
    counts = torch.stack([torch.bincount(torch.randint(0, 40, (40,), generator=g), minlength=40) for _ in range(2)])
    weighted = profiled_rating_loss(returns, y, who, 2, weight=counts)
    for k in range(2):
        rep = counts[k]
        alone = profiled_rating_loss(
            returns[k].repeat_interleave(rep), y.repeat_interleave(rep), who.repeat_interleave(rep), 2
        )
        assert alone.loss.item() == pytest.approx(float((weighted.nll[k] * rep).sum() / rep.sum()), abs=1e-9)
    expected = sum(
        profiled_rating_loss(
            returns[k].repeat_interleave(counts[k]), y.repeat_interleave(counts[k]), who.repeat_interleave(counts[k]), 2
        ).loss
        for k in range(2)
    )
    assert weighted.loss.item() == pytest.approx(float(expected) / 2, abs=1e-9)
    # A member whose counts leave an annotator fewer than 3 ratings leaves that annotator out.
    few = torch.zeros(2, 40)
    few[:, who == 0] = 1.0
    few[0, torch.nonzero(who == 1)[:2, 0]] = 1.0
    assert torch.equal(profiled_rating_loss(returns, y, who, 2, weight=few).nll[0, who == 1], torch.zeros(20, dtype=D))
    assert profiled_rating_loss(returns, y, who, 2, weight=torch.ones(40)).loss.item() == pytest.approx(
        profiled_rating_loss(returns, y, who, 2).loss.item(), abs=1e-12
    )
