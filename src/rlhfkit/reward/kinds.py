"""Loss functions for every kind of feedback: pure ``(returns, labels, parameters) -> terms``.

All of them read the reward model's predicted returns ``r(x)`` (shape ``(..., N)``,
a leading ensemble axis allowed) and an answer per row; none keeps state. Each
returns the per-answer negative log-likelihood ``nll`` and its weighted mean
``loss`` (``weight``: e.g. bootstrap weights, 1 by default), plus a metric.

- **Luce choice** (:func:`luce_choice_nll`): a Boltzmann-rational choice of one
  option from a set, ``P(c | C) = exp r(c) / sum_{o in C} exp r(o)``. Every other
  kind below that is a choice is built from it, as in reward-rational choice
  (Jeon, Milli, Dragan 2020).
- **Ranking** (:func:`plackett_luce_loss`): ``k`` items best first are ``k - 1``
  successive Luce choices, each from the items not yet placed (Plackett–Luce).
  With ``k = 2`` it is exactly Bradley–Terry.
- **Correction** (:func:`correction_loss`): the corrected ``x'`` was chosen over
  the original ``x`` and over nearby alternatives (other edits of ``x``).
- **Rating** (:func:`rating_loss`): a Gaussian likelihood of the rating (mapped
  to ``[-1, 1]``) around a per-annotator affine map of the return,
  ``y ~ N(a_j r(x) + b_j, sigma^2)``, so people who use the scale differently are
  calibrated instead of fighting each other (:func:`fit_affine_calibration`
  solves ``a_j, b_j`` in closed form for known returns).
- **Rating, profiled** (:func:`profiled_rating_loss`): the same Gaussian with
  every annotator's ``a_j >= 0``, ``b_j`` and ``sigma_j`` at their maximum-likelihood
  values for the batch (closed form), so the loss does not depend on the
  reward's scale or level and cannot pull them against other kinds.
- **Label, ordinal** (:func:`ordinal_label_loss`): a cumulative-logit model with
  learned increasing thresholds, ``P(y <= c) = sigmoid(theta_c - s r(x))``.
- **Label, categorical** (:func:`categorical_label_loss`): a multinomial logit on
  the return, ``P(y = c) = softmax_c(w_c r(x) + b_c)``. Unordered categories say
  nothing about which way is better, so on their own they fix the reward only up
  to sign; other kinds in the same fit set the sign.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class KindTerms:
    """The named terms of one kind's loss.

    ``loss``: weighted mean of ``nll`` over answers (averaged over a leading
    ensemble axis, if any); ``nll``: ``(..., N)`` per-answer negative
    log-likelihood; ``metric``: the kind's own accuracy-like number (see each
    function), detached.
    """

    loss: torch.Tensor
    nll: torch.Tensor
    metric: torch.Tensor


def _mean(nll: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if nll.shape[-1] == 0:
        return nll.sum() * 0.0
    if weight is None:
        return nll.mean()
    w = weight.to(nll.dtype).expand_as(nll)
    per_member = (nll * w).sum(-1) / w.sum(-1).clamp_min(1e-12)
    return per_member.mean()


_MASKED = -1e9  # a return that takes no probability mass in a softmax, with finite gradients


def luce_choice_nll(
    chosen: torch.Tensor, others: torch.Tensor, others_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``-log P(chosen | {chosen} ∪ others)`` under the Luce–Shepard rule.

    Args:
        chosen: ``(..., N)`` returns of the chosen options.
        others: ``(..., N, M)`` returns of the options not chosen.
        others_mask: ``(N, M)`` bool, False for padding (rows with fewer options).
    """
    if others_mask is not None:
        others = others.masked_fill(~others_mask, _MASKED)
    logits = torch.cat([chosen.unsqueeze(-1), others], dim=-1)
    return torch.logsumexp(logits, dim=-1) - chosen


def plackett_luce_loss(
    ranked_returns: torch.Tensor, mask: torch.Tensor | None = None, weight: torch.Tensor | None = None
) -> KindTerms:
    """Plackett–Luce negative log-likelihood of rankings.

    ``P(x_1 > ... > x_k) = prod_{j=1}^{k-1} exp r(x_j) / sum_{l >= j} exp r(x_l)``.

    Args:
        ranked_returns: ``(..., N, K)`` returns in ranked order, best first.
        mask: ``(N, K)`` bool, False for padding *after* the ranked items of a
            row (rankings of fewer than K items). Default: all real.
        weight: ``(..., N)`` answer weights.

    ``metric``: the fraction of adjacent ranked pairs the returns order correctly.
    """
    r = ranked_returns
    if mask is None:
        mask = torch.ones(r.shape[-2:], dtype=torch.bool, device=r.device)
    r = r.masked_fill(~mask, _MASKED)
    # log sum_{l >= j} exp r_l for every position j: a reversed cumulative logsumexp.
    tail = torch.logcumsumexp(r.flip(-1), dim=-1).flip(-1)
    stage = (tail - r) * mask.to(r.dtype)  # the last real item's stage is log(1) = 0
    nll = stage.sum(-1)
    pair_mask = mask[..., 1:] & mask[..., :-1]
    right = ((r[..., :-1] > r[..., 1:]) & pair_mask).to(r.dtype).sum((-1, -2))
    metric = right / pair_mask.sum().clamp_min(1)
    return KindTerms(loss=_mean(nll, weight), nll=nll, metric=metric.mean().detach())


def correction_loss(
    corrected: torch.Tensor,
    original: torch.Tensor,
    alternatives: torch.Tensor,
    alternatives_mask: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> KindTerms:
    """Reward-rational choice of a correction: ``x'`` chosen over ``x`` and its nearby alternatives.

    ``P(x' | x) = exp r(x') / (exp r(x') + exp r(x) + sum_m exp r(alt_m))``
    (Jeon, Milli, Dragan 2020, with the choice set approximated by ``x`` and
    ``M`` sampled edits of it; a rationality coefficient multiplies the returns
    before they get here).

    Args:
        corrected, original: ``(..., N)`` returns of ``x'`` and ``x``.
        alternatives: ``(..., N, M)`` returns of the alternatives.
        alternatives_mask: ``(N, M)`` bool, False for padding.

    ``metric``: the fraction of corrections scored above their original.
    """
    others = torch.cat([original.unsqueeze(-1), alternatives], dim=-1)
    mask = None
    if alternatives_mask is not None:
        mask = torch.cat([torch.ones_like(alternatives_mask[..., :1]), alternatives_mask], dim=-1)
    nll = luce_choice_nll(corrected, others, mask)
    metric = (corrected > original).to(corrected.dtype).mean()
    return KindTerms(loss=_mean(nll, weight), nll=nll, metric=metric.detach())


def rating_loss(
    returns: torch.Tensor,
    ratings: torch.Tensor,
    scale: torch.Tensor,
    offset: torch.Tensor,
    sigma: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> KindTerms:
    """Gaussian NLL of ratings around a per-annotator affine map of the return.

    ``nll = 0.5 ((y - (a r + b)) / sigma)^2 + log sigma + 0.5 log(2 pi)``.

    Args:
        returns: ``(..., N)`` predicted returns ``r(x)``.
        ratings: ``(N,)`` ratings ``y`` mapped to ``[-1, 1]`` (low end of the scale -1).
        scale, offset: ``(..., N)`` or ``(N,)``: each answer's annotator's ``a_j`` and ``b_j``.
        sigma: rating noise (a scalar or ``(N,)``), > 0.

    ``metric``: root-mean-square residual ``y - (a r + b)``.
    """
    pred = scale * returns + offset
    z = (ratings - pred) / sigma
    nll = 0.5 * z**2 + torch.log(sigma) + 0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=returns.dtype))
    nll = nll.expand(torch.broadcast_shapes(nll.shape, returns.shape))
    rmse = ((ratings - pred) ** 2).mean().sqrt()
    return KindTerms(loss=_mean(nll, weight), nll=nll, metric=rmse.detach())


def profiled_rating_loss(
    returns: torch.Tensor,
    ratings: torch.Tensor,
    annotator: torch.Tensor,
    n_annotators: int,
    weight: torch.Tensor | None = None,
) -> KindTerms:
    """Gaussian NLL of ratings with each annotator's ``a_j >= 0``, ``b_j``, ``sigma_j`` profiled out.

    For annotator ``j`` with ratings ``y`` and returns ``r`` (correlation ``rho``),
    the maximum of ``N(y; a r + b, sigma^2)`` over ``a >= 0, b, sigma`` is at
    ``sigma^2 = var(y) (1 - rho^2)`` when ``rho >= 0``, giving a per-answer NLL of
    ``0.5 log(2 pi var(y) (1 - rho |rho|)) + 0.5``. For ``rho < 0`` the best is
    ``a = 0``; ``1 - rho |rho|`` (above 1 there) extends it smoothly so that
    anti-correlation is penalised with a gradient towards ``rho > 0``. The loss
    is invariant to ``r -> c r + d`` with ``c > 0``: ratings order the reward
    without setting its scale or level. Annotators with fewer than 3 ratings
    or a constant rating here are left out (they say nothing about the order).

    Args:
        returns: ``(..., N)``; ratings: ``(N,)`` in ``[-1, 1]``; annotator: ``(N,)``
            indices in ``[0, n_annotators)``.
        weight: ``(..., N)`` answer weights (e.g. bootstrap counts): means, variances
            and the correlation become weighted ones, per ensemble member; a member
            whose weights leave an annotator fewer than 3 ratings or a constant one
            leaves that annotator out. Default: 1 for every answer.

    ``nll``: ``(..., N)`` each answer's share (its annotator's NLL; 0 when left
    out); ``loss``: (weighted) mean over all ``N`` answers; ``metric``: the mean
    ``rho`` of the annotators used.
    """
    nll = torch.zeros(returns.shape, dtype=returns.dtype, device=returns.device)
    w_all = None if weight is None else weight.to(returns.dtype).expand(returns.shape)
    rhos = []
    for j in range(n_annotators):
        m = annotator == j
        y = ratings[m].to(returns.dtype)
        if y.numel() < 3 or float(y.max() - y.min()) == 0.0:
            continue
        r = returns[..., m]
        if w_all is None:
            rc, yc = r - r.mean(-1, keepdim=True), y - y.mean()
            vr, vy = (rc**2).mean(-1), (yc**2).mean()
            rho = (rc * yc).mean(-1) / (vr * vy).clamp_min(1e-24).sqrt()
            var = vy * (1 - rho * rho.abs()).clamp_min(1e-6)  # a floor for a perfect fit (rho = 1)
            nll[..., m] = (0.5 * torch.log(2 * torch.pi * var) + 0.5).unsqueeze(-1)
        else:
            w = w_all[..., m]
            total = w.sum(-1)

            def wmean(x: torch.Tensor, w: torch.Tensor = w, total: torch.Tensor = total) -> torch.Tensor:
                return (w * x).sum(-1) / total.clamp_min(1e-12)

            rc, yc = r - wmean(r).unsqueeze(-1), y - wmean(y.expand_as(r)).unsqueeze(-1)
            vr, vy = wmean(rc**2), wmean(yc**2)
            used = (total >= 3) & (vy > 0)  # per member: enough weighted ratings, not all equal
            vy = torch.where(used, vy, torch.ones_like(vy))  # finite values (and gradients) where left out
            rho = wmean(rc * yc) / (vr * vy).clamp_min(1e-24).sqrt()
            var = vy * (1 - rho * rho.abs()).clamp_min(1e-6)
            share = torch.where(used, 0.5 * torch.log(2 * torch.pi * var) + 0.5, torch.zeros_like(var))
            nll[..., m] = share.unsqueeze(-1).expand_as(r)
        rhos.append(rho.detach().mean())
    metric = torch.stack(rhos).mean() if rhos else torch.tensor(float("nan"))
    return KindTerms(loss=_mean(nll, w_all), nll=nll, metric=metric)


def fit_affine_calibration(
    returns: torch.Tensor, ratings: torch.Tensor, annotator: torch.Tensor, n_annotators: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares ``a_j, b_j`` with ``y ~ a_j r + b_j`` per annotator, for known returns.

    Args:
        returns, ratings: ``(N,)``; annotator: ``(N,)`` indices in ``[0, n_annotators)``.

    Returns ``(scale (n_annotators,), offset (n_annotators,))``; an annotator
    with fewer than two distinct returns gets ``a = 1`` and ``b`` the mean residual.
    """
    scale = torch.ones(n_annotators, dtype=returns.dtype)
    offset = torch.zeros(n_annotators, dtype=returns.dtype)
    for j in range(n_annotators):
        m = annotator == j
        r, y = returns[m], ratings[m]
        if r.numel() >= 2 and float(r.var()) > 0:
            a = ((r - r.mean()) * (y - y.mean())).sum() / ((r - r.mean()) ** 2).sum()
            scale[j], offset[j] = a, y.mean() - a * r.mean()
        elif r.numel() > 0:
            offset[j] = (y - r).mean()
    return scale, offset


def ordinal_label_loss(
    returns: torch.Tensor,
    labels: torch.Tensor,
    thresholds: torch.Tensor,
    scale: torch.Tensor | float = 1.0,
    weight: torch.Tensor | None = None,
) -> KindTerms:
    """Cumulative-logit (ordered logit) NLL of ordinal labels.

    With ``z = s r(x)`` and increasing thresholds ``theta_0 < ... < theta_{C-2}``:
    ``P(y <= c) = sigmoid(theta_c - z)``, so ``P(y = c) = sigmoid(theta_c - z) -
    sigmoid(theta_{c-1} - z)`` (``theta_{-1} = -inf``, ``theta_{C-1} = +inf``),
    computed stably as ``log sigmoid(u - z) + log sigmoid(z - l) + log(1 - e^{l - u})``.

    Args:
        returns: ``(..., N)``; labels: ``(N,)`` ints in ``[0, C)``, worst first;
        thresholds: ``(C - 1,)`` increasing; scale: ``s > 0``.

    ``metric``: the fraction of labels equal to the most likely category.
    """
    z = returns * scale
    big = torch.full((1,), 1e6, dtype=thresholds.dtype, device=thresholds.device)
    edges = torch.cat([-big, thresholds, big])
    lower, upper = edges[labels], edges[labels + 1]
    nll = -(F.logsigmoid(upper - z) + F.logsigmoid(z - lower) + torch.log(-torch.expm1(lower - upper)))
    # The most likely category: count thresholds below z, then compare neighbours' masses.
    with torch.no_grad():
        cdf = torch.sigmoid(edges - z.unsqueeze(-1))
        probs = cdf[..., 1:] - cdf[..., :-1]
        metric = (probs.argmax(-1) == labels).to(returns.dtype).mean()
    return KindTerms(loss=_mean(nll, weight), nll=nll, metric=metric)


def ordered_thresholds(first: torch.Tensor, log_gaps: torch.Tensor) -> torch.Tensor:
    """Increasing thresholds ``theta_0 = first``, ``theta_c = theta_{c-1} + softplus(gap_c) + 1e-3``."""
    gaps = F.softplus(log_gaps) + 1e-3
    return torch.cat([first.reshape(1), first + torch.cumsum(gaps, 0)])


def categorical_label_loss(
    returns: torch.Tensor,
    labels: torch.Tensor,
    slopes: torch.Tensor,
    intercepts: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> KindTerms:
    """Multinomial-logit NLL of unordered labels: ``P(y = c) = softmax_c(w_c r(x) + b_c)``.

    Args:
        returns: ``(..., N)``; labels: ``(N,)`` ints in ``[0, C)``;
        slopes, intercepts: ``(C,)`` (fix one category's pair at 0 for identifiability).

    ``metric``: the fraction of labels equal to the most likely category.
    """
    logits = returns.unsqueeze(-1) * slopes + intercepts
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, labels.expand(returns.shape).unsqueeze(-1)).squeeze(-1)
    metric = (logp.argmax(-1) == labels).to(returns.dtype).mean()
    return KindTerms(loss=_mean(nll, weight), nll=nll, metric=metric.detach())
