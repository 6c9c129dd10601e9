"""Active query selection: which pairs of candidates the reward ensemble learns most from.

A round draws ``candidates`` times more generations than its comparisons need,
pairs them uniformly at random into disjoint candidate pairs (each generation in
at most one pair, as :class:`~rlhfkit.feedback.queries.UniformPairs` does), and
keeps the ``n`` pairs a strategy ranks first. This is B-Pref's protocol (Lee et
al. 2021, "B-Pref: Benchmarking Preference-Based Reinforcement Learning"): score
``large_batch * n`` random pairs, ask the best ``n``.

The scores read the reward ensemble's ``(K, n)`` segment returns ``R`` through
the fit's own likelihood, Bradley–Terry, per member ``k``:
``P_k(A>B) = sigmoid(R_k[A] - R_k[B])``. With ``Pbar = mean_k P_k`` and the binary
entropy ``H(p) = -p log p - (1 - p) log(1 - p)`` (nats):

- ``uniform``: no score; the first ``n`` random pairs.
- ``disagreement``: ``Var_k P_k`` (population variance over members).
- ``entropy``: ``H(Pbar)``, the predictive entropy of the answer.
- ``bald``: ``H(Pbar) - mean_k H(P_k)``, the mutual information between the
  answer and which member is right (Houlsby et al. 2011, "Bayesian Active
  Learning by Disagreement").
- ``kcenter``: greedy k-center in feature space (:func:`kcenter`), over each
  pair's features ``[f(A), f(B)]`` concatenated in the pair's order, as B-Pref does.
- ``disagreement+kcenter``, ``entropy+kcenter``: keep the ``prefilter`` share of
  the candidate pairs with the highest score (at least ``n``), then k-center
  among them (B-Pref's combinations; its default keeps half).

Rankings (:func:`choose_sets`) take ``k`` of the candidates left over by the
comparisons, greedily maximising the summed pairwise score of the set (k-center:
``k`` candidates spread out). Other kinds stay uniform.

A candidate's features are the reward model's input, standardised and flattened
over the segment's steps (:meth:`~rlhfkit.reward.segment_model.SegmentRewardModel.features`;
B-Pref uses the raw states). B-Pref seeds k-center with the pairs already asked;
here a round sees only its own candidates, so the first center is the pair
farthest from their mean. Ties go to the pair drawn first.

A control run (:meth:`~rlhfkit.domains.control.ControlDomain.sample`) asks
through :func:`select_queries_by`: round 1 uniformly (its reward model has seen
no answers), later rounds by ``[feedback] query_strategy`` from ``candidates``
times the generations the queries need. A text run
(:meth:`~rlhfkit.domains.text.TextDomain.sample`) asks one query per prompt, whose
completions share that prompt: from round 2 it draws ``candidates`` times the
completions a query shows and asks those :func:`choose_in_prompt` picks, by
``uniform`` or ``entropy`` only (one reward model, no ensemble to disagree; no
round of pairs to spread apart).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

import numpy as np
import torch

from rlhfkit.feedback.mix import RANKING_SIZE, select_queries
from rlhfkit.feedback_records import Comparison, Ranking
from rlhfkit.types import Content, Generation, Query, new_id

Strategy = Literal["uniform", "disagreement", "entropy", "bald", "kcenter", "disagreement+kcenter", "entropy+kcenter"]
"""The query selection strategies (see the module docstring)."""

STRATEGIES: tuple[str, ...] = get_args(Strategy)

ACTIVE_CANDIDATES = 4
"""Default oversampling factor of the active strategies: candidate pairs scored per pair asked. B-Pref's runs use 10;
4 keeps the extra env steps of a control round's sampling below its PPO steps (Pendulum: 30 comparisons x 2 x 50
steps x 4 = 12,000)."""

ACTIVE_KINDS = (Comparison.kind, Ranking.kind)
"""The feedback kinds the active strategies choose (other kinds are drawn uniformly: run them with 'uniform')."""

PREFILTER = 0.5
"""Share of the candidate pairs the combined strategies keep by score before k-center (B-Pref keeps half)."""


def pair_probabilities(returns: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """``(K, m)`` Bradley–Terry ``P_k(A>B) = sigmoid(R_k[A] - R_k[B])`` of the ``m`` pairs ``(A, B)`` in ``pairs``."""
    return sigmoid(returns[:, pairs[:, 0]] - returns[:, pairs[:, 1]])


def sigmoid(d: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-d))``, written as ``(1 + tanh(d / 2)) / 2`` so that no ``d`` overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * d))


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """``H(p) = -p log p - (1 - p) log(1 - p)`` in nats, elementwise; ``H(0) = H(1) = 0``."""
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return -(q * np.log(q) + (1 - q) * np.log1p(-q))


def disagreement(P: np.ndarray) -> np.ndarray:
    """``(m,)`` variance over the ``K`` members (rows of ``P``) of each pair's ``P_k(A>B)``."""
    return P.var(axis=0)


def entropy(P: np.ndarray) -> np.ndarray:
    """``(m,)`` binary entropy of the ensemble's mean ``P(A>B)``."""
    return binary_entropy(P.mean(axis=0))


def bald(P: np.ndarray) -> np.ndarray:
    """``(m,)`` ``H(mean_k P_k) - mean_k H(P_k)``: what the answer tells about which member is right (>= 0)."""
    return binary_entropy(P.mean(axis=0)) - binary_entropy(P).mean(axis=0)


SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "disagreement": disagreement,
    "entropy": entropy,
    "bald": bald,
}


def kcenter(features: np.ndarray, n: int) -> list[int]:
    """Greedy k-center (Gonzalez 1985; Sener and Savarese 2018): ``n`` rows of ``features`` ``(m, d)``, spread out.

    The first center is the row farthest from the rows' mean; each next one the row farthest (Euclidean) from
    its nearest chosen center. Returns row indices in the order chosen; ties go to the lower index.
    """
    m = len(features)
    if n > m:
        raise ValueError(f"k-center: {n} centers from {m} points")
    x = features.reshape(m, -1).astype(np.float64)
    far = np.linalg.norm(x - x.mean(axis=0), axis=1)  # the mean is no center: only the first pick reads it
    nearest = np.full(m, np.inf)
    chosen: list[int] = []
    for _ in range(n):
        i = int(np.argmax(far if not chosen else nearest))
        chosen.append(i)
        nearest = np.minimum(nearest, np.linalg.norm(x - x[i], axis=1))
        nearest[chosen] = -np.inf
    return chosen


def pair_features(features: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """``(m, 2d)``: each pair's candidate features ``[f(A), f(B)]`` (``features``: ``(n, d)``)."""
    f = features.reshape(len(features), -1)
    return np.concatenate([f[pairs[:, 0]], f[pairs[:, 1]]], axis=1)


def top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest ``scores``, highest first; ties to the lower index."""
    return np.argsort(-scores, kind="stable")[:n]


def choose_pairs(
    strategy: str,
    returns: np.ndarray | None,
    pairs: np.ndarray,
    n: int,
    features: np.ndarray | None = None,
    prefilter: float = PREFILTER,
) -> list[int]:
    """Indices of the ``n`` pairs (rows of ``pairs`` ``(m, 2)``) that ``strategy`` asks, in the order chosen.

    ``returns``: the ensemble's ``(K, n_candidates)`` returns (needed by every strategy that scores);
    ``features``: ``(n_candidates, d)`` (needed by the k-center ones).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown query strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    m = len(pairs)
    if n > m:
        raise ValueError(f"{n} queries from {m} candidate pairs")
    if strategy == "uniform":
        return list(range(n))
    score_name, _, diversify = strategy.partition("+")
    rows = np.arange(m)
    if score_name != "kcenter":
        if returns is None:
            raise ValueError(f"query strategy {strategy!r} needs the ensemble's returns")
        scores = SCORES[score_name](pair_probabilities(returns, pairs))
        if not diversify:
            return [int(i) for i in top(scores, n)]
        rows = np.sort(top(scores, max(n, math.ceil(prefilter * m))))
    if features is None:
        raise ValueError(f"query strategy {strategy!r} needs the candidates' features")
    return [int(rows[i]) for i in kcenter(pair_features(features, pairs[rows]), n)]


def pairwise_scores(score: Callable[[np.ndarray], np.ndarray], returns: np.ndarray) -> np.ndarray:
    """``(n, n)``: ``score`` of every pair ``(i, j)`` of ``n`` candidates, symmetric (each score is the same for
    ``(A, B)`` and ``(B, A)``; averaging the two removes round-off); the diagonal is 0."""
    K, n = returns.shape
    d = returns[:, :, None] - returns[:, None, :]
    S = score(sigmoid(d.reshape(K, n * n))).reshape(n, n)
    S = (S + S.T) / 2
    np.fill_diagonal(S, 0.0)
    return S


def choose_sets(
    strategy: str, returns: np.ndarray | None, k: int, n_sets: int, features: np.ndarray | None = None
) -> list[list[int]]:
    """``n_sets`` disjoint sets of ``k`` candidates to rank (indices, in the order chosen).

    A scoring strategy starts each set from the remaining pair with the highest score, then adds the candidate
    with the highest summed score against the set so far (greedy maximum summed pairwise score); a combination
    ranks by its score alone. ``kcenter`` takes each set by :func:`kcenter` over the remaining candidates'
    features. Ties go to the lower index.
    """
    if strategy not in STRATEGIES or strategy == "uniform":
        raise ValueError(f"sets to rank are chosen by an active strategy, got {strategy!r}")
    n = len(returns[0]) if returns is not None else len(features) if features is not None else 0
    if k < 2 or k * n_sets > n:
        raise ValueError(f"{n_sets} disjoint sets of {k} (k >= 2) from {n} candidates")
    left = np.ones(n, dtype=bool)
    sets: list[list[int]] = []
    score_name = strategy.partition("+")[0]
    if score_name == "kcenter":
        if features is None:
            raise ValueError(f"query strategy {strategy!r} needs the candidates' features")
        for _ in range(n_sets):
            rows = np.flatnonzero(left)
            chosen = [int(rows[i]) for i in kcenter(features[rows], k)]
            left[chosen] = False
            sets.append(chosen)
        return sets
    if returns is None:
        raise ValueError(f"query strategy {strategy!r} needs the ensemble's returns")
    S = pairwise_scores(SCORES[score_name], returns)
    for _ in range(n_sets):
        pair = np.where(np.triu(left[:, None] & left[None, :], k=1), S, -np.inf)
        i, j = np.unravel_index(int(np.argmax(pair)), pair.shape)
        chosen = [int(i), int(j)]
        left[chosen] = False
        while len(chosen) < k:
            gain = np.where(left, S[:, chosen].sum(axis=1), -np.inf)
            c = int(np.argmax(gain))
            chosen.append(c)
            left[c] = False
        sets.append(chosen)
    return sets


def choose_in_prompt(strategy: str, returns: Sequence[np.ndarray], size: int = 2) -> list[tuple[int, ...]]:
    """For each prompt, which ``size`` of its candidate completions its one query asks about (indices in its group).

    ``returns[p]``: the ensemble's ``(K, m_p)`` returns of prompt ``p``'s ``m_p >= size`` candidates. A comparison
    (``size = 2``) asks the pair ``(A, B)``, ``A < B``, of highest score (:data:`SCORES`; ``entropy``:
    ``H(mean_k P_k)`` with ``P_k(A>B) = sigmoid(R_k[A] - R_k[B])``) among the group's ``m_p (m_p - 1) / 2`` pairs,
    drawn in the order (0, 1), (0, 2), ..., (1, 2), ...; ties go to the pair drawn first (the scores are
    :func:`pairwise_scores`'s, the same for ``(A, B)`` and ``(B, A)`` to the last bit, so that pairs whose members'
    return differences are mirror images tie exactly rather than by round-off). A ranking (``size > 2``)
    asks :func:`choose_sets`'s set of ``size``. ``uniform`` keeps the first ``size``: the candidates are independent
    draws of the policy, so these are a uniform choice.

    A query's completions share one prompt, so a text run (:meth:`~rlhfkit.domains.text.TextDomain.sample`)
    chooses within each prompt's group rather than pairing candidates across the round as :func:`choose_pairs`
    does; the k-center strategies, which spread a round's queries apart, have nothing to spread here.
    """
    if strategy != "uniform" and strategy not in SCORES:
        raise ValueError(
            f"query strategy {strategy!r} cannot choose within one prompt's completions; expected 'uniform' or one "
            f"of {', '.join(SCORES)}"
        )
    chosen: list[tuple[int, ...]] = []
    for r in returns:
        m = r.shape[1]
        if size < 2 or m < size:
            raise ValueError(f"a query of {size} (>= 2) completions from a prompt's {m} candidates")
        if strategy == "uniform":
            chosen.append(tuple(range(size)))
        elif size == 2:
            a, b = np.triu_indices(m, k=1)  # the pairs A < B in the order drawn
            best = int(top(pairwise_scores(SCORES[strategy], r)[a, b], 1)[0])
            chosen.append((int(a[best]), int(b[best])))
        else:
            chosen.append(tuple(choose_sets(strategy, r, size, 1)[0]))
    return chosen


# -- scoring candidates with a reward model, and the selector a domain uses --------------------


@dataclass(frozen=True)
class Scores:
    """What the strategies read about ``n`` candidates."""

    returns: np.ndarray
    """``(K, n)``: each ensemble member's return of each candidate."""
    features: np.ndarray | None = None
    """``(n, d)``: each candidate in the reward model's feature space (None where the model has none)."""


class EnsembleModel(Protocol):
    """A reward model as the fit sees it (:class:`rlhfkit.reward.fit.RewardModel`), as far as scoring goes;
    optionally ``features(encoded) -> (n, d)`` for the k-center strategies."""

    def encode(self, items: Sequence[Content]) -> Any: ...

    def returns(self, encoded: Any, idx: torch.Tensor | None = None) -> torch.Tensor: ...


def ensemble_scores(model: EnsembleModel, items: Sequence[Content]) -> Scores:
    """The ensemble's returns of ``items`` (and their features, if the model gives them), without gradients."""
    with torch.no_grad():
        encoded = model.encode(items)
        returns = model.returns(encoded).double().numpy()
        feats = getattr(model, "features", None)
        features = feats(encoded).double().numpy() if callable(feats) else None
    return Scores(returns, features)


@dataclass(frozen=True)
class QuerySelection:
    """How a round chooses its comparisons: the strategy and the oversampling factor (``[feedback]``)."""

    strategy: Strategy = "uniform"
    """One of :data:`STRATEGIES`."""
    candidates: int = 1
    """Candidate pairs drawn and scored per pair asked (1: as many as asked)."""

    def in_round(self, round_: int) -> QuerySelection:
        """The selection round ``round_`` uses: uniform and no oversampling in round 1, whose reward model has seen
        no answers (its members differ only by their random initialisation), as PEBBLE's first queries are."""
        return self if round_ > 1 else QuerySelection()


class ActivePairs:
    """Comparisons chosen by a strategy from uniformly paired candidates (a :class:`QuerySelector`).

    ``score(contents) -> Scores`` scores the candidates (:func:`ensemble_scores` with the current reward model).
    """

    def __init__(self, strategy: str, score: Callable[[Sequence[Content]], Scores]) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown query strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
        self.strategy = strategy
        self.score = score

    def select(self, generations: Sequence[Generation], n: int, rng: np.random.Generator) -> list[Query]:
        if len(generations) < 2 * n:
            raise ValueError(f"{n} disjoint pairs need {2 * n} generations, got {len(generations)}")
        order = rng.permutation(len(generations))
        pairs = order[: len(order) // 2 * 2].reshape(-1, 2)
        scores = self.score([g.content for g in generations]) if self.strategy != "uniform" else None
        chosen = choose_pairs(
            self.strategy,
            None if scores is None else scores.returns,
            pairs,
            n,
            None if scores is None else scores.features,
        )
        round_ = max(g.round for g in generations)
        return [Query(new_id(rng), (generations[pairs[j, 0]].id, generations[pairs[j, 1]].id), round_) for j in chosen]


def select_queries_by(
    selection: QuerySelection,
    generations: Sequence[Generation],
    counts: Mapping[str, int],
    rng: np.random.Generator,
    model: EnsembleModel | None,
) -> list[Query]:
    """``counts[kind]`` queries about ``generations`` (the candidates), chosen by ``selection.strategy``.

    'uniform' is :func:`~rlhfkit.feedback.mix.select_queries` (the same queries for the same ``rng`` as before
    strategies existed); the active strategies choose comparisons (runs asking only comparisons) with ``model``'s
    :func:`ensemble_scores` of every candidate.
    """
    if selection.strategy == "uniform":
        return select_queries(generations, counts, rng)
    asked = {kind: c for kind, c in counts.items() if c > 0}
    if not set(asked) <= set(ACTIVE_KINDS):
        raise ValueError(f"query strategy {selection.strategy!r} chooses comparisons and rankings only; asked {asked}")
    if model is None:
        raise ValueError(f"query strategy {selection.strategy!r} needs a reward model to score the candidates")
    scores = ensemble_scores(model, [g.content for g in generations])
    queries = ActivePairs(selection.strategy, lambda xs: scores).select(generations, asked.get(Comparison.kind, 0), rng)
    n_rankings = asked.get(Ranking.kind, 0)
    if not n_rankings:
        return queries
    used = {g for q in queries for g in q.generation_ids}
    left = [i for i, g in enumerate(generations) if g.id not in used]
    sets = choose_sets(
        selection.strategy,
        scores.returns[:, left],
        RANKING_SIZE,
        n_rankings,
        None if scores.features is None else scores.features[left],
    )
    round_ = max(g.round for g in generations)
    return queries + [
        Query(new_id(rng), tuple(generations[left[i]].id for i in s), round_, kind=Ranking.kind) for s in sets
    ]
