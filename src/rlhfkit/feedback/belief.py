"""A Bayesian belief over the weights of a reward linear in a task's named features, and what to ask it next.

When the true reward is (or is assumed to be) linear in a few named features,
``R(x) = w . phi(x)`` (:class:`~rlhfkit.tasks.features.FeatureSet`), the unknown is
a direction ``w`` on the unit sphere: the scale of a reward does not change which
of two generations is better. This is the setting of APReL (Bıyık et al. 2022,
"APReL: A Library for Active Preference-based Reward Learning Algorithms") and of
the work it packages (Sadigh et al. 2017; Bıyık et al. 2019, "Asking Easy Questions").

**Answer model.** A person compares A and B and prefers A with probability
``P(A>B | w) = sigmoid(beta * w . (phi(A) - phi(B)))``; ``beta`` is their stated
rationality. A soft answer ``y`` (1: A, 0: B, 0.5: about equal) has the
log-likelihood ``y log P + (1 - y) log(1 - P)``, as in the reward fit.

**Belief.** A uniform prior on the sphere times the likelihood of every answer,
represented by samples from Metropolis–Hastings (:meth:`LinearBelief.samples`):
many chains run side by side; a proposal adds Gaussian noise of scale ``step`` and
projects back onto the sphere. The proposal's density depends only on the angle
between the two points, so it is symmetric and the acceptance ratio is the
posterior ratio.

**Acquisition** over candidate pairs, from the belief's samples ``w_s`` and
``P_s = P(A>B | w_s)``, ``Pbar = mean_s P_s``:

- ``max_information``: the mutual information between the answer and ``w``,
  ``H(Pbar) - mean_s H(P_s)`` (Bıyık et al. 2019). It is BALD with the posterior's
  samples as the ensemble's members (:func:`~rlhfkit.feedback.selection.bald`).
- ``volume_removal``: the expected share of the belief an answer removes (Sadigh
  et al. 2017). An answer r removes ``1 - P(r | w)`` of each sample's mass, and it
  comes with probability ``E[P(r | w)]``, so the expectation is
  ``sum_r E[P_r] (1 - E[P_r]) = 2 Pbar (1 - Pbar)``. It depends on ``Pbar`` only:
  it prefers a pair on which every sample is unsure (each ``P_s`` near 0.5) as much
  as one the samples disagree on, which is why max-information asks easier
  questions for the same information.
- ``uniform``: the first candidate pair.

Ties go to the pair listed first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rlhfkit.feedback.selection import bald, sigmoid

ACQUISITIONS = ("uniform", "max_information", "volume_removal")


def unit(w: np.ndarray) -> np.ndarray:
    """``w`` divided by its norm along the last axis."""
    return w / np.linalg.norm(w, axis=-1, keepdims=True)


def log_sigmoid(d: np.ndarray) -> np.ndarray:
    """``log(sigmoid(d))`` without overflow for large ``|d|``."""
    return -np.logaddexp(0.0, -d)


@dataclass
class LinearBelief:
    """Posterior samples over a unit weight vector ``w`` of a reward ``w . phi`` from soft pairwise answers.

    Args:
        dim: number of features.
        beta: the answer model's rationality (see the module docstring).
        chains: Metropolis–Hastings chains run side by side; each gives ``per_chain`` samples.
        burn_in: steps before a chain's first sample.
        per_chain: samples kept per chain, ``thin`` steps apart.
        step: the proposal's Gaussian scale before it is projected onto the sphere.
        seed: the sampler's random seed (each call to :meth:`samples` draws afresh from it).
    """

    dim: int
    beta: float = 1.0
    chains: int = 64
    burn_in: int = 150
    per_chain: int = 4
    thin: int = 10
    step: float = 0.25
    seed: int = 0
    diffs: list[np.ndarray] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)
    _draws: int = 0

    def update(self, phi_a: np.ndarray, phi_b: np.ndarray, label: float) -> None:
        """Add one answer: ``label`` is P(A preferred) as the person gave it (1, 0, or 0.5 for about equal)."""
        if not 0.0 <= label <= 1.0:
            raise ValueError(f"an answer's label is P(A>B) in [0, 1], got {label}")
        d = np.asarray(phi_a, dtype=np.float64) - np.asarray(phi_b, dtype=np.float64)
        if d.shape != (self.dim,):
            raise ValueError(f"features of shape {d.shape} for a belief over {self.dim} weights")
        self.diffs.append(d)
        self.labels.append(float(label))

    def log_likelihood(self, w: np.ndarray) -> np.ndarray:
        """Log-likelihood of every answer so far under each row of ``w`` ``(S, dim)``: shape ``(S,)``."""
        if not self.diffs:
            return np.zeros(len(w))
        z = self.beta * (w @ np.stack(self.diffs).T)  # (S, n)
        y = np.asarray(self.labels)
        return (y * log_sigmoid(z) + (1 - y) * log_sigmoid(-z)).sum(axis=1)

    def samples(self) -> np.ndarray:
        """``(chains * per_chain, dim)`` unit vectors drawn from the posterior."""
        rng = np.random.default_rng([self.seed, self._draws])
        self._draws += 1
        w = unit(rng.standard_normal((self.chains, self.dim)))  # the prior: uniform on the sphere
        if not self.diffs:
            return unit(rng.standard_normal((self.chains * self.per_chain, self.dim)))
        ll = self.log_likelihood(w)
        kept: list[np.ndarray] = []
        for t in range(self.burn_in + self.per_chain * self.thin):
            proposal = unit(w + self.step * rng.standard_normal(w.shape))
            ll_new = self.log_likelihood(proposal)
            accept = np.log(rng.random(len(w))) < ll_new - ll
            w = np.where(accept[:, None], proposal, w)
            ll = np.where(accept, ll_new, ll)
            if t >= self.burn_in and (t - self.burn_in + 1) % self.thin == 0:
                kept.append(w.copy())
        return np.concatenate(kept)

    def mean(self, samples: np.ndarray | None = None) -> np.ndarray:
        """The posterior mean direction: the samples' mean, normalised."""
        return unit((self.samples() if samples is None else samples).mean(axis=0))


def answer_probabilities(samples: np.ndarray, diffs: np.ndarray, beta: float) -> np.ndarray:
    """``(S, m)``: ``P(A>B | w_s)`` for each sample ``w_s`` (rows of ``samples``) and pair (rows of ``diffs``)."""
    return sigmoid(beta * (samples @ np.asarray(diffs, dtype=np.float64).T))


def max_information(P: np.ndarray) -> np.ndarray:
    """``(m,)`` mutual information between each pair's answer and ``w`` (``P``: ``(S, m)``)."""
    return bald(P)


def volume_removal(P: np.ndarray) -> np.ndarray:
    """``(m,)`` expected share of the belief removed by each pair's answer: ``2 Pbar (1 - Pbar)``."""
    p = P.mean(axis=0)
    return 2.0 * p * (1.0 - p)


_SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "max_information": max_information,
    "volume_removal": volume_removal,
}


def choose_query(acquisition: str, samples: np.ndarray, diffs: np.ndarray, beta: float) -> int:
    """Index of the candidate pair (row of ``diffs``: ``phi(A) - phi(B)``) that ``acquisition`` asks."""
    if acquisition not in ACQUISITIONS:
        raise ValueError(f"unknown acquisition {acquisition!r}; expected one of {', '.join(ACQUISITIONS)}")
    if len(diffs) == 0:
        raise ValueError("no candidate pairs to choose from")
    if acquisition == "uniform":
        return 0
    scores = _SCORES[acquisition](answer_probabilities(samples, diffs, beta))
    return int(np.argmax(scores))  # the first of equal maxima


def alignment(w: np.ndarray, w_true: np.ndarray) -> float:
    """Cosine between an estimated and the true weight vector (APReL's alignment metric)."""
    return float(np.dot(unit(np.asarray(w, dtype=np.float64)), unit(np.asarray(w_true, dtype=np.float64))))


def run_active_learning(
    features: np.ndarray,
    w_true: np.ndarray,
    acquisition: str,
    queries: int,
    candidates: int = 50,
    beta: float = 1.0,
    teacher_beta: float | None = None,
    seed: int = 0,
) -> list[float]:
    """Learn ``w_true``'s direction from a simulated person's answers; the alignment after each query.

    Each query draws ``candidates`` random pairs from the rows of ``features`` ``(N, dim)``, asks the one
    ``acquisition`` chooses, and the person answers by sampling from the answer model with ``teacher_beta``
    (default ``beta``; ``inf``: always the higher ``w_true . phi``). Returns ``queries + 1`` alignments of
    the posterior mean with ``w_true``, the first before any answer.
    """
    rng = np.random.default_rng(seed)
    belief = LinearBelief(dim=features.shape[1], beta=beta, seed=seed)
    t_beta = beta if teacher_beta is None else teacher_beta
    samples = belief.samples()
    curve = [alignment(belief.mean(samples), w_true)]
    for _ in range(queries):
        pairs = np.stack([rng.choice(len(features), size=2, replace=False) for _ in range(candidates)])
        diffs = features[pairs[:, 0]] - features[pairs[:, 1]]
        i = choose_query(acquisition, samples, diffs, beta)
        margin = float(np.dot(w_true, diffs[i]))
        if np.isinf(t_beta):
            label = 0.5 if margin == 0 else float(margin > 0)
        else:
            label = float(rng.random() < sigmoid(np.array(t_beta * margin)))
        belief.update(features[pairs[i, 0]], features[pairs[i, 1]], label)
        samples = belief.samples()
        curve.append(alignment(belief.mean(samples), w_true))
    return curve
