"""How a reward model is fitted: one config for every model, kind of feedback and caller.

The control loop's ``[reward]`` section, the text loop's ``reward`` field,
``rlhfkit fit-reward`` and the benchmarks all fill in this one dataclass, and
every field means the same wherever it is used (see :func:`rlhfkit.reward.fit.fit_reward`).
The fields are grouped: the fit itself, then the ones that only some reward models read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from rlhfkit.checks import fraction, non_negative, positive, require


@dataclass(frozen=True)
class RewardConfig:
    """How the reward model is trained."""

    # -- the fit (every reward model, every kind of feedback) ------------------------------
    ensemble_size: int = 3
    """K, the reward model's members; with K > 1 each member trains on its own bootstrap resample of the
    answers of every kind (a count per answer and member, drawn anew each fit), with K = 1 on every answer."""
    epochs: int = 30
    """Passes over the training answers per fit: one pass takes as many steps as the kind with the most
    answers needs at batch_size per step (the model is warm-started between a loop's rounds)."""
    batch_size: int = 32
    """Answers of each kind per gradient step (for text comparisons: labelled pairs per step)."""
    lr: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay of the reward model's weights (the L2-style regulariser lambda_r)."""
    center_coef: float = 1e-3
    """Weight of the reward-centering term mean(r)^2, r the reward per step of a segment or per text; 0 = off."""
    slip_rate: float = 0.0
    """The stated chance that a comparison is a slip (the human answered at random, as B-Pref's mistake teacher
    does): the fit's likelihood is P(A>B) = slip_rate / 2 + (1 - slip_rate) * sigmoid(r_A - r_B), so one contrary
    answer cannot pull the reward far however sure it was; 0 = plain Bradley-Terry. A teacher that flips a share
    eps of its answers (teacher.mistake_prob) matches slip_rate = 2 * eps. On the describe task with eps = 0.25
    (150 comparisons, 4 seeds) agreement was 0.720 plain, 0.729 at 0.25, 0.724 at 0.5; on Pendulum under slips
    and myopia it keeps every seed only with recency_discount stated too (docs/benchmarks.md)."""
    holdout_frac: float = 0.15
    """Fraction of answers held out for the metrics, chosen by a hash of the query id (the same rule for
    every kind, so an answer stays on its side from round to round)."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """'constant', or 'cosine': decaying to 0 over the fit's steps. Cosine suits a fit from scratch to
    convergence: with a constant rate the last iterate still carries the minibatch noise (pendulum ratings,
    development seeds 11 and 12, 200 to 1,600 ratings: agreement moved by up to 0.01 between neighbouring
    data sizes and averaged 0.976 / 0.972; cosine averaged 0.979 / 0.977), which is why experiments/kinds_eval
    uses it. The loops' warm-started fits of a few epochs keep the constant rate: a transformer reward
    fitted for 8 epochs at 1e-3 learned less with cosine (agreement 0.80 against 0.85 constant, held-out
    answers 0.67 against 0.86)."""
    rating_fit: Literal["profile", "learned"] = "profile"
    """Ratings' per-annotator a_j, b_j, sigma_j: 'profile' (closed-form maximum likelihood on each
    minibatch; scale-free) or 'learned' (parameters trained with the reward)."""
    prior_coef: float = 1e-2
    """Weight of the prior pulling the calibration log-scales (log a_j, log beta) to 0."""
    n_alternatives: int = 6
    """Edits of x that a correction x' was also chosen over (drawn once per correction and fit)."""
    seed: int = 0
    """Seeds the fit's draws: bootstrap counts, minibatch order, correction alternatives (a loop adds the
    run's seed and the round to it, so each round draws anew)."""

    # -- the per-step MLP (control segments; text features) --------------------------------
    hidden: tuple[int, ...] = (64, 64)
    """Per-step MLP and text-feature models: hidden layer widths of each member."""
    use_action: bool = True
    """Per-step MLP: feed the action to r(s, a); false gives a state-only r(s), which resists crediting
    actions for later states."""
    recency_discount: float = 1.0
    """Per-step MLP: the stated myopia of the people answering, in (0, 1]. The fit compares segments by
    sum_t recency_discount^(T-1-t) r(s_t, a_t), the last step weighing 1, as B-Pref's myopic teacher
    judges (teacher.gamma); the policy still optimises r itself. 1 = the plain sum (Christiano et al.)."""

    # -- the transformer reward model (text) -----------------------------------------------
    max_tokens: int = 4096
    """Transformer: padded token positions per step (prompt + completions); each step is padded to its own
    longest prompt piece, and a prompt with more answers than batch_size is split across steps."""
    length_pool: int = 0
    """Transformer: 0 = shuffled steps; n > 0 = sorted by length within shuffled pools of about n steps
    (less padding, but steps of one length band learn worse)."""
    disable_dropout: bool = True
    """Set the model's dropout probabilities to 0 before fitting (as TRL and OpenRLHF do for reward models):
    dropout adds noise to every reward margin, and a fit of a few epochs learns slower with it."""

    RENAMED: ClassVar[dict[str, str]] = {"max_pairs": "batch_size"}
    """Keys of older configs and the field that replaced each (loading names the new one)."""

    def __post_init__(self) -> None:
        require(
            self,
            {
                "ensemble_size": (positive, ">= 1"),
                "epochs": (positive, ">= 1"),
                "batch_size": (positive, ">= 1"),
                "lr": (positive, "> 0"),
                "weight_decay": (non_negative, ">= 0"),
                "center_coef": (non_negative, ">= 0"),
                "holdout_frac": (fraction, "in [0, 1)"),
                "slip_rate": (fraction, "in [0, 1)"),
                "recency_discount": (lambda g: 0 < g <= 1, "in (0, 1]"),
                "lr_schedule": (lambda v: v in ("constant", "cosine"), '"constant" or "cosine"'),
                "rating_fit": (lambda v: v in ("profile", "learned"), '"profile" or "learned"'),
                "prior_coef": (non_negative, ">= 0"),
                "n_alternatives": (non_negative, ">= 0"),
                "hidden": (lambda h: len(h) > 0 and all(w > 0 for w in h), "a non-empty list of positive widths"),
                "max_tokens": (positive, ">= 1"),
                "length_pool": (non_negative, ">= 0"),
            },
        )
