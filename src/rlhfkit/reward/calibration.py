"""Per-kind calibration, learned with the reward, and each kind's loss term on a minibatch.

Every answer becomes a term on the returns ``r(x)`` of the generations it is
about (the pure losses are in ``reward/losses.py`` and ``reward/kinds.py``)::

    comparison   Bradley–Terry on (A, B) with mu                      (incomparable: not trained on)
    ranking      Plackett–Luce on the k items, returns times beta_rank
    rating       N(a_j r(x) + b_j, sigma_j^2) per annotator j         (ratings mapped to [-1, 1]; a_j >= 0, b_j,
                 sigma_j profiled out per minibatch by default, see RewardConfig.rating_fit)
    label        ordinal: cumulative logit with learned thresholds;   ("none of these": not trained on)
                 categorical: multinomial logit on r(x), per choice set
    correction   x' chosen over x and M edits of x (the task's editor), returns times beta_corr
    language     the interpreter's (feature, direction) picks the side of (A, B) that has more / less
                 of the feature; Bradley–Terry with mu = confidence on that side (not understood: skipped)

:class:`Calibration` holds the parameters these terms learn besides the reward:
per-annotator rating scale and offset (when learned), label thresholds or
category weights per choice set, and the rationality ``beta`` of rankings and
corrections. Learned as parameters, ratings' ``a_j`` move by at most ``lr`` per
step, and while they travel (from 1 towards the small value a ranking-scaled
reward needs) the rating term holds the reward on the rating scale and the
rankings' ``beta`` has to climb to make up for it: on pendulum (development seeds
11, 12) 10% of the minutes in ratings then cost agreement against rankings alone
instead of helping (0.007–0.024 at 400 and 1,200 steps). Hence the profiled default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import nn

from rlhfkit.reward.fit_data import FitData
from rlhfkit.reward.kinds import (
    KindTerms,
    categorical_label_loss,
    correction_loss,
    ordered_thresholds,
    ordinal_label_loss,
    plackett_luce_loss,
    profiled_rating_loss,
    rating_loss,
)
from rlhfkit.reward.losses import bradley_terry_loss

Returns = Callable[[torch.Tensor], torch.Tensor]
"""``r(idx)``: the ``(K, *idx.shape)`` returns of item rows ``idx``."""


class Calibration(nn.Module):
    """Per-kind parameters learned with the reward (see the module docstring)."""

    def __init__(self, data: FitData) -> None:
        super().__init__()
        n_annot = max(1, len(data.annotators))
        self.rating_log_scale = nn.Parameter(torch.zeros(n_annot))
        self.rating_offset = nn.Parameter(torch.zeros(n_annot))
        self.rating_log_sigma = nn.Parameter(torch.tensor(math.log(0.3)))
        self.log_beta_ranking = nn.Parameter(torch.zeros(()))
        self.log_beta_correction = nn.Parameter(torch.zeros(()))
        self.label_params = nn.ParameterList()
        for g in data.labels:
            c = len(g.choices)
            if g.ordinal:
                # first threshold, gaps (softplus), log scale s
                init = torch.cat(
                    [torch.tensor([-1.0]), torch.full((c - 2,), math.log(math.expm1(2.0 / (c - 1)))), torch.zeros(1)]
                )
            else:
                init = torch.zeros(2 * (c - 1))  # slopes and intercepts; category 0 is the reference
                init[: c - 1] = torch.linspace(0.5, 1.0, c - 1)  # break the symmetry between categories
            self.label_params.append(nn.Parameter(init))

    def log_scales(self) -> torch.Tensor:
        """The log-scales a weak prior pulls to 0: it pins the reward's scale when no kind sets it."""
        return torch.cat([self.rating_log_scale, self.log_beta_ranking.reshape(1), self.log_beta_correction.reshape(1)])


def kind_terms(
    data: FitData,
    cal: Calibration,
    r: Returns,
    batch: Mapping[str, torch.Tensor],
    rating_fit: str = "profile",
    weight: Mapping[str, torch.Tensor] | None = None,
    slip: float = 0.0,
) -> dict[str, KindTerms]:
    """Each present kind's loss on its minibatch ``batch[key]`` (answer indices per kind key).

    ``r(idx)`` gives ``(K, n)`` returns of item rows; ``weight[key]``, if given, the
    ``(K, len(batch[key]))`` answer weights (each ensemble member's bootstrap counts).
    Labels on several choice sets make one answer-weighted ``"label"`` term. ``slip``: the comparisons' stated
    slip rate (:func:`~rlhfkit.reward.losses.bradley_terry_loss`).
    """

    def w(key: str) -> torch.Tensor | None:
        return None if weight is None else weight[key]

    out: dict[str, KindTerms] = {}
    if data.comparison is not None and "comparison" in batch:
        a, b, mu = (t[batch["comparison"]] for t in data.comparison)
        t = bradley_terry_loss(r(a), r(b), mu, weight=w("comparison"), slip=slip)
        out["comparison"] = KindTerms(t.loss, torch.zeros(0), t.accuracy)
    if data.ranking is not None and "ranking" in batch:
        idx, mask = (t[batch["ranking"]] for t in data.ranking)
        ranked = cal.log_beta_ranking.exp() * r(idx.flatten()).unflatten(-1, idx.shape)
        out["ranking"] = plackett_luce_loss(ranked, mask, w("ranking"))
    if data.rating is not None and "rating" in batch:
        it, y, who = (t[batch["rating"]] for t in data.rating)
        if rating_fit == "profile":
            out["rating"] = profiled_rating_loss(r(it), y, who, len(data.annotators), w("rating"))
        else:
            sigma = cal.rating_log_sigma.exp()
            scale, offset = cal.rating_log_scale.exp()[who], cal.rating_offset[who]
            out["rating"] = rating_loss(r(it), y, scale, offset, sigma, w("rating"))
    for i, (g, params) in enumerate(zip(data.labels, cal.label_params, strict=True)):
        key = f"label:{i}"
        if key not in batch:
            continue
        it, lab = g.item[batch[key]], g.label[batch[key]]
        c = len(g.choices)
        if g.ordinal:
            th = ordered_thresholds(params[0], params[1 : c - 1])
            terms = ordinal_label_loss(r(it), lab, th, params[-1].exp(), w(key))
        else:
            zero = torch.zeros(1)
            slopes, intercepts = torch.cat([zero, params[: c - 1]]), torch.cat([zero, params[c - 1 :]])
            terms = categorical_label_loss(r(it), lab, slopes, intercepts, w(key))
        prev = out.get("label")
        if prev is None:
            out["label"] = terms
        else:  # several choice sets: one answer-weighted label term
            n, n_prev = int(terms.nll.shape[-1]), int(prev.nll.shape[-1])
            share = n / (n + n_prev)
            out["label"] = KindTerms(
                (1 - share) * prev.loss + share * terms.loss,
                torch.cat([prev.nll, terms.nll], dim=-1),
                (1 - share) * prev.metric + share * terms.metric,
            )
    if data.correction is not None and "correction" in batch:
        c_, o_, alts = (t[batch["correction"]] for t in data.correction)
        beta = cal.log_beta_correction.exp()
        ra = r(alts.flatten()).unflatten(-1, alts.shape)
        out["correction"] = correction_loss(beta * r(c_), beta * r(o_), beta * ra, weight=w("correction"))
    if data.language is not None and "language" in batch:
        a, b, mu = (t[batch["language"]] for t in data.language)
        t = bradley_terry_loss(r(a), r(b), mu, weight=w("language"))
        out["language"] = KindTerms(t.loss, torch.zeros(0), t.accuracy)
    return out
