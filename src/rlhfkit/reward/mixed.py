"""One reward fit that trains on any mix of feedback kinds, for control segments and for text.

Every answer becomes a term on the returns ``r(x)`` of the generations it is
about (the pure losses are in ``reward/kinds.py``)::

    comparison   Bradley–Terry on (A, B) with mu                      (incomparable: not trained on)
    ranking      Plackett–Luce on the k items, returns times beta_rank
    rating       N(a_j r(x) + b_j, sigma_j^2) per annotator j         (ratings mapped to [-1, 1]; a_j >= 0, b_j,
                 sigma_j profiled out per minibatch by default, see rating_fit)
    label        ordinal: cumulative logit with learned thresholds;   ("none of these": not trained on)
                 categorical: multinomial logit on r(x), per choice set
    correction   x' chosen over x and M edits of x (the task's editor), returns times beta_corr
    language     the interpreter's (feature, direction) picks the side of (A, B) that has more / less
                 of the feature; Bradley–Terry with mu = confidence on that side (not understood: skipped)

The loss is the answer-weighted mean over kinds,
``sum_k (n_k / n) * loss_k``, plus ``center_coef * mean(r)^2`` (Bradley–Terry and the
choice kinds leave the reward's level free) and a weak prior pulling the
calibration log-scales (``log a_j``, ``log beta``) to 0, which pins the reward's
scale when only labels (or learned-calibration ratings) are given.

Ratings' calibration is profiled by default (``rating_fit="profile"``):
``a_j, b_j, sigma_j`` take their closed-form maximum-likelihood values on each
minibatch (``kinds.profiled_rating_loss``), so the rating term does not depend on
the reward's scale or level. Learned as parameters (``"learned"``), they move by at
most ``lr`` per step, and while they travel (``a_j`` from 1 towards the small value
a ranking-scaled reward needs) the rating term holds the reward on the rating
scale and the rankings' ``beta`` has to climb to make up for it: on pendulum
(development seeds 11, 12) 10% of the minutes in ratings then cost
agreement against rankings alone instead of helping (0.007–0.024 at 400 and 1,200
steps). Optimisation is AdamW on
minibatches of ``batch_size`` answers of every kind per step, at a constant
learning rate or one decaying to 0 on a cosine (``lr_schedule``); only the
generations those answers touch are scored.

The reward model scores a whole generation: for control the per-step MLP
ensemble of ``reward/nets.py`` summed over the segment
(:class:`SegmentRewardModel`), for text an MLP on a fixed feature vector of the
completion (:class:`TextFeatureRewardModel`: bag-of-words counts or frozen
sentence embeddings), a cheap stand-in for the transformer reward model of
``reward/text.py`` that keeps this fit and its tests fast.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from rlhfkit.checks import non_negative, positive, require
from rlhfkit.feedback.edits import Editor, completion_text
from rlhfkit.feedback.language import Interpreter
from rlhfkit.reward.fit import NoUsableFeedbackError, ordering_accuracy
from rlhfkit.reward.kinds import (
    KindTerms,
    categorical_label_loss,
    correction_loss,
    fit_affine_calibration,
    ordered_thresholds,
    ordinal_label_loss,
    plackett_luce_loss,
    profiled_rating_loss,
    rating_loss,
)
from rlhfkit.reward.losses import bradley_terry_loss
from rlhfkit.reward.nets import RewardEnsemble, mlp
from rlhfkit.tasks.features import FeatureSet
from rlhfkit.types import (
    Comparison,
    Content,
    Correction,
    Feedback,
    Generation,
    Label,
    Language,
    Query,
    Ranking,
    Rating,
    Segment,
)


@dataclass(frozen=True)
class MixedFitConfig:
    """How the mixed-kind reward fit trains."""

    ensemble_size: int = 1
    """K reward members (different initialisations, same data)."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of each member's MLP."""
    steps: int = 400
    """Gradient steps."""
    batch_size: int = 64
    """Answers of each kind per step."""
    lr: float = 3e-3
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    center_coef: float = 1e-3
    """Weight of mean(r)^2."""
    prior_coef: float = 1e-2
    """Weight of the prior pulling calibration log-scales (log a_j, log beta) to 0."""
    n_alternatives: int = 6
    """Edits of x that a correction x' was also chosen over (drawn once per correction)."""
    lr_schedule: str = "constant"
    """``"constant"`` or ``"cosine"`` (decays to 0 over ``steps``). Cosine suits a fit from scratch to
    convergence: with a constant rate the last iterate still carries the minibatch noise (pendulum
    ratings, development seeds 11 and 12, 200 to 1,600 ratings: agreement moved by up to 0.01 between
    neighbouring data sizes and averaged 0.976 / 0.972; cosine averaged 0.979 / 0.977), which is why
    ``reward/kinds_eval`` uses it. The default stays constant for the loops' warm-started fits of a
    few epochs: a transformer reward fitted for 8 epochs at 1e-3 learned less with cosine
    (``tests/reward/test_text_mixed.py``: agreement 0.80 against 0.85 constant, held-out answers
    0.67 against 0.86)."""
    rating_fit: str = "profile"
    """Ratings' per-annotator a_j, b_j, sigma_j: ``"profile"`` (closed-form maximum likelihood on each
    minibatch; scale-free) or ``"learned"`` (parameters trained with the reward)."""
    seed: int = 0
    """Seeds initialisation, minibatches and the correction alternatives."""

    def __post_init__(self) -> None:
        require(
            self,
            {
                "ensemble_size": (positive, ">= 1"),
                "hidden": (lambda h: len(h) > 0 and all(w > 0 for w in h), "a non-empty list of positive widths"),
                "steps": (positive, ">= 1"),
                "batch_size": (positive, ">= 1"),
                "lr": (positive, "> 0"),
                "weight_decay": (non_negative, ">= 0"),
                "center_coef": (non_negative, ">= 0"),
                "prior_coef": (non_negative, ">= 0"),
                "n_alternatives": (non_negative, ">= 0"),
                "rating_fit": (lambda v: v in ("profile", "learned"), '"profile" or "learned"'),
                "lr_schedule": (lambda v: v in ("constant", "cosine"), '"constant" or "cosine"'),
            },
        )


# -- answers as index tensors ----------------------------------------------------------


@dataclass
class LabelGroup:
    """Labels that share one choice set (and so one set of thresholds or category parameters)."""

    choices: tuple[str, ...]
    ordinal: bool
    item: torch.Tensor
    label: torch.Tensor


@dataclass
class MixedData:
    """Every usable answer as indices into one table of generations ``items``.

    Corrections add their ``x'`` and its alternatives to the table.
    """

    items: list[Content]
    comparison: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    """(a, b, mu (N, 2))."""
    ranking: tuple[torch.Tensor, torch.Tensor] | None = None
    """(items (N, K) best first, mask (N, K))."""
    rating: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    """(item, rating in [-1, 1], annotator index)."""
    annotators: list[str] = field(default_factory=list)
    labels: list[LabelGroup] = field(default_factory=list)
    correction: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    """(corrected, original, alternatives (N, M))."""
    language: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    """(a, b, mu (N, 2)) as interpreted."""
    counts: dict[str, int] = field(default_factory=dict)
    """Usable answers per kind."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Answers stored but not trained on: incomparable, "none of these", utterances not understood."""

    @property
    def n_answers(self) -> int:
        return sum(self.counts.values())


def build_data(
    feedback: Sequence[Feedback],
    queries: Mapping[str, Query],
    generations: Mapping[str, Generation],
    *,
    editor: Editor | None = None,
    interpreter: Interpreter | None = None,
    features: FeatureSet | None = None,
    n_alternatives: int = 6,
    seed: int = 0,
) -> MixedData:
    """Turn stored answers of any kinds into index tensors (see :class:`MixedData`).

    ``editor`` is needed for corrections (their alternatives), ``interpreter`` and
    ``features`` for language.
    """
    rng = np.random.default_rng(seed)
    items: list[Content] = []
    index: dict[str, int] = {}

    def item(gid: str) -> int:
        if gid not in index:
            index[gid] = len(items)
            items.append(generations[gid].content)
        return index[gid]

    def add(content: Content) -> int:
        items.append(content)
        return len(items) - 1

    by_kind: dict[str, list[Any]] = {}
    for f in feedback:
        by_kind.setdefault(f.kind, []).append(f)
    data = MixedData(items=items)
    skipped: dict[str, int] = {}

    comps = [c for c in by_kind.get(Comparison.kind, []) if c.usable]
    skipped["comparison"] = len(by_kind.get(Comparison.kind, [])) - len(comps)
    if comps:
        ids = [queries[c.query_id].generation_ids for c in comps]
        data.comparison = (
            torch.tensor([item(a) for a, _ in ids]),
            torch.tensor([item(b) for _, b in ids]),
            torch.tensor([c.mu for c in comps], dtype=torch.float32),
        )
    ranks: list[Ranking] = by_kind.get(Ranking.kind, [])
    if ranks:
        k = max(len(r.ranked) for r in ranks)
        idx = torch.zeros((len(ranks), k), dtype=torch.long)
        mask = torch.zeros((len(ranks), k), dtype=torch.bool)
        for i, r in enumerate(ranks):
            idx[i, : len(r.ranked)] = torch.tensor([item(g) for g in r.ranked])
            mask[i, : len(r.ranked)] = True
        data.ranking = (idx, mask)
    ratings: list[Rating] = by_kind.get(Rating.kind, [])
    if ratings:
        data.annotators = sorted({r.annotator_id for r in ratings})
        who = {a: j for j, a in enumerate(data.annotators)}
        data.rating = (
            torch.tensor([item(queries[r.query_id].generation_ids[0]) for r in ratings]),
            torch.tensor([2 * (r.value - r.scale[0]) / (r.scale[1] - r.scale[0]) - 1 for r in ratings]),
            torch.tensor([who[r.annotator_id] for r in ratings]),
        )
    labels: list[Label] = [x for x in by_kind.get(Label.kind, []) if x.usable]
    skipped["label"] = len(by_kind.get(Label.kind, [])) - len(labels)
    groups: dict[tuple[tuple[str, ...], bool], list[Label]] = {}
    for lab in labels:
        groups.setdefault((lab.choices, lab.ordinal), []).append(lab)
    for (choices, ordinal), group in groups.items():
        data.labels.append(
            LabelGroup(
                choices,
                ordinal,
                torch.tensor([item(queries[x.query_id].generation_ids[0]) for x in group]),
                torch.tensor([x.index for x in group]),
            )
        )
    corrections: list[Correction] = by_kind.get(Correction.kind, [])
    if corrections:
        if editor is None:
            raise ValueError("corrections need an editor (tasks.features.editor(task)) to draw nearby alternatives")
        corr, orig, alts = [], [], []
        for c in corrections:
            x = queries[c.query_id].generation_ids[0]
            orig.append(item(x))
            corr.append(add(c.corrected))
            alts.append([add(a) for a in editor.propose(generations[x].content, rng, n_alternatives)])
        data.correction = (
            torch.tensor(corr),
            torch.tensor(orig),
            torch.tensor(alts, dtype=torch.long).reshape(len(corr), n_alternatives),
        )
    said: list[Language] = by_kind.get(Language.kind, [])
    if said:
        if interpreter is None or features is None:
            raise ValueError("language feedback needs an interpreter and the task's features")
        many = getattr(interpreter, "interpret_many", None)
        meanings = many([s.utterance for s in said]) if many else [interpreter.interpret(s.utterance) for s in said]
        la, lb, lmu = [], [], []
        for s, m in zip(said, meanings, strict=True):
            if m is None:
                continue
            a, b = queries[s.query_id].generation_ids
            fn = features[m.feature].fn
            side = m.direction * (fn(generations[a].content) - fn(generations[b].content))
            if side == 0:
                continue  # the named feature does not tell these two apart
            p = max(m.confidence, 0.5)
            la.append(item(a))
            lb.append(item(b))
            lmu.append((p, 1 - p) if side > 0 else (1 - p, p))
        skipped["language"] = len(said) - len(la)
        if la:
            data.language = (torch.tensor(la), torch.tensor(lb), torch.tensor(lmu, dtype=torch.float32))
    data.counts = {
        "comparison": len(comps),
        "ranking": len(ranks),
        "rating": len(ratings),
        "label": len(labels),
        "correction": len(corrections),
        "language": 0 if data.language is None else len(data.language[0]),
    }
    data.counts = {k: v for k, v in data.counts.items() if v}
    data.skipped = {k: v for k, v in skipped.items() if v}
    return data


# -- reward models over whole generations -------------------------------------------------


class ItemRewardModel(Protocol):
    """Scores whole generations: ``encode`` once, then ``returns`` for any subset."""

    size: int

    def encode(self, items: Sequence[Content]) -> Any: ...

    def set_stats(self, encoded: Any) -> None: ...

    def returns(self, encoded: Any, idx: torch.Tensor | None = None) -> torch.Tensor:
        """``(K, n)`` predicted returns of the encoded items ``idx`` (all when None)."""
        ...

    def parameters(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...


class SegmentRewardModel(nn.Module):
    """The per-step MLP ensemble (``reward/nets.py``), summed over each control segment."""

    def __init__(self, ensemble: RewardEnsemble, discrete: bool = False) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.discrete = discrete

    @property
    def size(self) -> int:
        return self.ensemble.size

    def encode(self, items: Sequence[Content]) -> tuple[torch.Tensor, torch.Tensor]:
        segs = [x for x in items if isinstance(x, Segment)]
        if len(segs) != len(items):
            raise TypeError("a SegmentRewardModel scores control segments only")
        obs = torch.as_tensor(np.stack([s.observations for s in segs]), dtype=torch.float32)
        act = torch.as_tensor(np.stack([s.actions for s in segs]))
        return obs, (act.long() if self.discrete else act.float())

    def set_stats(self, encoded: tuple[torch.Tensor, torch.Tensor]) -> None:
        obs, act = encoded
        self.ensemble.features.set_stats(obs.flatten(0, 1), act.flatten(0, 1))

    def returns(self, encoded: tuple[torch.Tensor, torch.Tensor], idx: torch.Tensor | None = None) -> torch.Tensor:
        obs, act = encoded
        if idx is not None:
            obs, act = obs[idx], act[idx]
        return self.ensemble.segment_returns(obs, act)


class TextFeaturizer(Protocol):
    """Maps texts to fixed feature vectors ``(N, dim)``."""

    dim: int

    def __call__(self, items: Sequence[Content]) -> torch.Tensor: ...


_WORDS = re.compile(r"[a-z']+|[.,!?]")


class BagOfWords:
    """Counts of each vocabulary word in the completion, plus its length and whether it ends with ".".

    A cheap text representation: it sees which words are used, how often, and
    how long the answer is, but not their order.
    """

    def __init__(self, vocabulary: Sequence[str]) -> None:
        self.vocabulary = tuple(dict.fromkeys(w.lower() for w in vocabulary))
        self._pos = {w: i for i, w in enumerate(self.vocabulary)}
        self.dim = len(self.vocabulary) + 2

    @classmethod
    def fit(cls, items: Sequence[Content], max_words: int = 2000) -> BagOfWords:
        """The ``max_words`` most frequent words of the items' completions."""
        counts: dict[str, int] = {}
        for x in items:
            for w in _WORDS.findall(completion_text(x).lower()):
                counts[w] = counts.get(w, 0) + 1
        return cls(sorted(counts, key=lambda w: (-counts[w], w))[:max_words])

    def __call__(self, items: Sequence[Content]) -> torch.Tensor:
        out = torch.zeros((len(items), self.dim))
        for i, x in enumerate(items):
            words = _WORDS.findall(completion_text(x).lower())
            for w in words:
                j = self._pos.get(w)
                if j is not None:
                    out[i, j] += 1
            out[i, -2] = len(words)
            out[i, -1] = float(bool(words) and words[-1] == ".")
        return out


class SentenceEmbeddings:
    """Frozen all-MiniLM-L6-v2 embeddings of the completion (384 dimensions, offline)."""

    dim = 384

    def __init__(self, model: Any = None) -> None:
        from rlhfkit.feedback.language import load_sentence_model

        self.model = model if model is not None else load_sentence_model()

    def __call__(self, items: Sequence[Content]) -> torch.Tensor:
        texts = [completion_text(x) for x in items]
        return torch.as_tensor(np.asarray(self.model.encode(texts)), dtype=torch.float32)


class TextFeatureRewardModel(nn.Module):
    """K MLPs on a fixed feature vector of each completion (standardised with stats from the data)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, featurizer: TextFeaturizer, size: int = 1, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        self.featurizer = featurizer
        self.members = nn.ModuleList(mlp(featurizer.dim, hidden, 1) for _ in range(size))
        self.register_buffer("mean", torch.zeros(featurizer.dim))
        self.register_buffer("std", torch.ones(featurizer.dim))

    @property
    def size(self) -> int:
        return len(self.members)

    def encode(self, items: Sequence[Content]) -> torch.Tensor:
        return self.featurizer(items)

    def set_stats(self, encoded: torch.Tensor) -> None:
        self.mean.copy_(encoded.mean(0))
        self.std.copy_(encoded.std(0).clamp_min(1e-3) if encoded.shape[0] > 1 else torch.ones_like(self.std))

    def returns(self, encoded: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        x = encoded if idx is None else encoded[idx]
        x = (x - self.mean) / self.std
        return torch.stack([m(x).squeeze(-1) for m in self.members])


# -- calibration parameters and the fit ----------------------------------------------------


class Calibration(nn.Module):
    """Per-kind parameters learned with the reward: rating scale/offset per annotator, label
    thresholds or category weights per choice set, and the rationality of rankings and corrections."""

    def __init__(self, data: MixedData) -> None:
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
        return torch.cat([self.rating_log_scale, self.log_beta_ranking.reshape(1), self.log_beta_correction.reshape(1)])


@dataclass(frozen=True)
class MixedFitResult:
    """A fitted reward and its calibration, with the final training loss per kind."""

    model: Any
    calibration: Calibration
    losses: dict[str, float]
    counts: dict[str, int]
    skipped: dict[str, int]


def _kind_terms(
    data: MixedData, cal: Calibration, r: Any, batch: dict[str, torch.Tensor], rating_fit: str = "profile"
) -> dict[str, KindTerms]:
    """Each present kind's loss on its minibatch ``batch[kind]``; ``r(idx)`` gives ``(K, n)`` returns."""
    out: dict[str, KindTerms] = {}
    if data.comparison is not None:
        a, b, mu = (t[batch["comparison"]] for t in data.comparison)
        t = bradley_terry_loss(r(a), r(b), mu)
        out["comparison"] = KindTerms(t.loss, torch.zeros(0), t.accuracy)
    if data.ranking is not None:
        idx, mask = (t[batch["ranking"]] for t in data.ranking)
        out["ranking"] = plackett_luce_loss(
            cal.log_beta_ranking.exp() * r(idx.flatten()).unflatten(-1, idx.shape), mask
        )
    if data.rating is not None:
        it, y, who = (t[batch["rating"]] for t in data.rating)
        if rating_fit == "profile":
            out["rating"] = profiled_rating_loss(r(it), y, who, len(data.annotators))
        else:
            sigma = cal.rating_log_sigma.exp()
            out["rating"] = rating_loss(r(it), y, cal.rating_log_scale.exp()[who], cal.rating_offset[who], sigma)
    for g, params in zip(data.labels, cal.label_params, strict=True):
        sel = batch[f"label:{id(g)}"]
        it, lab = g.item[sel], g.label[sel]
        c = len(g.choices)
        if g.ordinal:
            th = ordered_thresholds(params[0], params[1 : c - 1])
            terms = ordinal_label_loss(r(it), lab, th, params[-1].exp())
        else:
            zero = torch.zeros(1)
            slopes, intercepts = torch.cat([zero, params[: c - 1]]), torch.cat([zero, params[c - 1 :]])
            terms = categorical_label_loss(r(it), lab, slopes, intercepts)
        prev = out.get("label")
        n_prev = 0 if prev is None else int(prev.nll.numel())
        if prev is None:
            out["label"] = terms
        else:  # several choice sets: one answer-weighted label term
            n = int(terms.nll.numel())
            w = n / (n + n_prev)
            out["label"] = KindTerms(
                (1 - w) * prev.loss + w * terms.loss,
                torch.cat([prev.nll.flatten(), terms.nll.flatten()]),
                (1 - w) * prev.metric + w * terms.metric,
            )
    if data.correction is not None:
        c_, o_, alts = (t[batch["correction"]] for t in data.correction)
        beta = cal.log_beta_correction.exp()
        ra = r(alts.flatten()).unflatten(-1, alts.shape)
        out["correction"] = correction_loss(beta * r(c_), beta * r(o_), beta * ra)
    if data.language is not None:
        a, b, mu = (t[batch["language"]] for t in data.language)
        t = bradley_terry_loss(r(a), r(b), mu)
        out["language"] = KindTerms(t.loss, torch.zeros(0), t.accuracy)
    return out


def _sizes(data: MixedData) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for name in ("comparison", "ranking", "rating", "correction", "language"):
        t = getattr(data, name)
        if t is not None:
            sizes[name] = len(t[0])
    for g in data.labels:
        sizes[f"label:{id(g)}"] = len(g.item)
    return sizes


def fit_mixed(model: Any, data: MixedData, config: MixedFitConfig) -> MixedFitResult:
    """Fit ``model`` (a :class:`SegmentRewardModel` or :class:`TextFeatureRewardModel`) in place on ``data``."""
    if data.n_answers == 0:
        raise NoUsableFeedbackError(f"no usable answers to fit the reward on (stored but skipped: {data.skipped})")
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    encoded = model.encode(data.items)
    model.set_stats(encoded)
    cal = Calibration(data)
    opt = torch.optim.AdamW(
        [
            {"params": list(model.parameters()), "weight_decay": config.weight_decay},
            {"params": list(cal.parameters()), "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps) if config.lr_schedule == "cosine" else None
    )
    sizes = _sizes(data)
    total_n = sum(sizes.values())
    model.train()
    last: dict[str, float] = {}
    for _ in range(config.steps):
        batch = {
            k: (torch.randperm(n, generator=gen)[: config.batch_size] if n > config.batch_size else torch.arange(n))
            for k, n in sizes.items()
        }
        # Score each generation the batch touches once.
        needed = torch.unique(torch.cat([_touched(data, k, b) for k, b in batch.items()]))
        pos = torch.full((len(data.items),), -1, dtype=torch.long)
        pos[needed] = torch.arange(len(needed))
        scores = model.returns(encoded, needed)  # (K, u)

        def r(idx: torch.Tensor, scores: torch.Tensor = scores, pos: torch.Tensor = pos) -> torch.Tensor:
            return scores[:, pos[idx]]

        terms = _kind_terms(data, cal, r, batch, config.rating_fit)
        shares = {k: sum(n for name, n in sizes.items() if name.split(":")[0] == k) / total_n for k in terms}
        loss = sum((shares[k] * t.loss for k, t in terms.items()), torch.zeros(()))
        loss = loss + config.center_coef * scores.mean() ** 2 + config.prior_coef * (cal.log_scales() ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        last = {k: float(t.loss.detach()) for k, t in terms.items()}
    model.eval()
    if data.rating is not None and config.rating_fit == "profile":
        _set_rating_calibration(model, encoded, data, cal)
    return MixedFitResult(model, cal, last, dict(data.counts), dict(data.skipped))


@torch.no_grad()
def _set_rating_calibration(model: Any, encoded: Any, data: MixedData, cal: Calibration) -> None:
    """Store the profiled a_j, b_j and the pooled sigma of all ratings on the fitted reward (for reporting)."""
    assert data.rating is not None
    it, y, who = data.rating
    ret = model.returns(encoded, it).mean(0).double()
    scale, offset = fit_affine_calibration(ret, y.double(), who, len(data.annotators))
    scale = scale.clamp_min(1e-6)
    resid = y.double() - (scale[who] * ret + offset[who])
    cal.rating_log_scale.copy_(scale.log().float())
    cal.rating_offset.copy_(offset.float())
    cal.rating_log_sigma.copy_(resid.pow(2).mean().clamp_min(1e-12).sqrt().log().float())


def _touched(data: MixedData, key: str, b: torch.Tensor) -> torch.Tensor:
    if key.startswith("label:"):
        g = next(g for g in data.labels if f"label:{id(g)}" == key)
        return g.item[b]
    if key == "rating":
        assert data.rating is not None
        return data.rating[0][b]
    if key == "ranking":
        assert data.ranking is not None
        idx, mask = data.ranking
        return idx[b][mask[b]]
    t = getattr(data, key)
    parts = [t[0][b], t[1][b]]
    if key == "correction":
        parts.append(t[2][b].flatten())
    return torch.cat(parts)


@torch.no_grad()
def agreement(model: Any, items_a: Sequence[Content], items_b: Sequence[Content], true_diff: np.ndarray) -> float:
    """Fraction of pairs ``(a_i, b_i)`` the fitted reward (ensemble mean) orders like ``true_diff``."""
    ea, eb = model.encode(items_a), model.encode(items_b)
    diff = model.returns(ea).mean(0) - model.returns(eb).mean(0)
    return ordering_accuracy(diff.double(), torch.as_tensor(true_diff, dtype=torch.float64))


# -- fitting on a run's stored answers ----------------------------------------------------


@dataclass(frozen=True)
class StoredFitMetrics:
    """A mixed-kind fit on a run's stored answers, measured on the held-out ones."""

    losses: dict[str, float]
    """Final training loss of each kind."""
    heldout_accuracy: float
    """Held-out comparisons and adjacent pairs of held-out rankings that the reward orders like the human
    (decisive answers only; NaN when none is held out)."""
    true_accuracy: float
    """The same pairs ordered like the true return (NaN without a true return)."""
    counts: dict[str, int]
    """Usable training answers per kind."""
    n_heldout: int
    """Held-out answers (every kind)."""
    skipped: dict[str, int]
    """Stored answers not trained on: incomparable, "none of these", utterances not understood."""


def heldout_pairs(feedback: Sequence[Feedback], queries: Mapping[str, Query]) -> list[tuple[str, str]]:
    """``(preferred, other)`` generation ids from decisive comparisons and adjacent places of rankings."""
    pairs: list[tuple[str, str]] = []
    for f in feedback:
        if isinstance(f, Comparison) and f.usable and f.mu is not None and f.mu[0] != f.mu[1]:
            a, b = queries[f.query_id].generation_ids
            pairs.append((a, b) if f.mu[0] > f.mu[1] else (b, a))
        elif isinstance(f, Ranking):
            pairs += list(zip(f.ranked[:-1], f.ranked[1:], strict=True))
    return pairs


def fit_stored(
    model: Any,
    feedback: Sequence[Feedback],
    queries: Mapping[str, Query],
    generations: Mapping[str, Generation],
    config: MixedFitConfig,
    is_heldout: Any,
    *,
    editor: Editor | None = None,
    interpreter: Interpreter | None = None,
    features: FeatureSet | None = None,
    true_return: Any = None,
    epochs: int | None = None,
) -> StoredFitMetrics:
    """Fit ``model`` (warm start) on the stored answers that ``is_heldout(query_id)`` keeps for training.

    ``config.steps`` gradient steps, or with ``epochs`` as many as it takes to pass
    ``epochs`` times over the kind with the most answers (``config.batch_size`` of
    each kind per step). ``true_return(content)``, if given, scores the held-out
    pairs against the truth too.
    """
    train = [f for f in feedback if not is_heldout(f.query_id)]
    held = [f for f in feedback if is_heldout(f.query_id)]
    data = build_data(
        train,
        queries,
        generations,
        editor=editor,
        interpreter=interpreter,
        features=features,
        n_alternatives=config.n_alternatives,
        seed=config.seed,
    )
    if epochs is not None and data.counts:
        config = dataclasses.replace(config, steps=epochs * -(-max(_sizes(data).values()) // config.batch_size))
    fit = fit_mixed(model, data, config)
    pairs = heldout_pairs(held, queries)
    acc = true_acc = float("nan")
    if pairs:
        with torch.no_grad():
            ret_a = model.returns(model.encode([generations[a].content for a, _ in pairs])).mean(0)
            ret_b = model.returns(model.encode([generations[b].content for _, b in pairs])).mean(0)
        diff = (ret_a - ret_b).double()
        acc = float((diff > 0).double().mean())
        if true_return is not None:
            truth = torch.tensor(
                [true_return(generations[a].content) - true_return(generations[b].content) for a, b in pairs],
                dtype=torch.float64,
            )
            true_acc = ordering_accuracy(diff, truth)
    return StoredFitMetrics(fit.losses, acc, true_acc, dict(data.counts), len(held), dict(data.skipped))
