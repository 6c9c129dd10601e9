"""How much annotators agree: pairwise agreement and Krippendorff's alpha.

Every comparison answer becomes a category, ``"A"`` when ``mu(A) > 1/2``,
``"B"`` when ``mu(A) < 1/2``, ``"equal"`` at exactly 1/2 (graded answers fall
on their side); "incomparable" answers carry no label and are left out.

- **pairwise agreement**: over every query answered by two or more people and
  every pair of them, the share of pairs giving the same category;
- **Krippendorff's alpha** (Krippendorff 2004, *Content Analysis*, ch. 11):
  ``alpha = 1 - D_o / D_e`` from the coincidence matrix ``o_ck`` of values
  paired within units, ``n_c = sum_k o_ck``, ``n = sum_c n_c``::

      alpha = 1 - (n - 1) * sum_{c,k} o_ck * delta2(c, k) / sum_{c,k} n_c * n_k * delta2(c, k)

  with ``delta2 = [c != k]`` for nominal categories and ``(c - k)^2`` for the
  interval metric (used on ``mu(A)`` itself, so graded answers count at their
  strength). Units with a single value are not pairable and drop out. 1 is
  perfect agreement, 0 is chance, below 0 is systematic disagreement; it is
  None when undefined (fewer than two pairable values, or a single value used).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rlhfkit.feedback_records import Comparison


def category(c: Comparison) -> str | None:
    """A comparison as a nominal category, or None for "incomparable"."""
    if c.mu is None:
        return None
    a = c.mu[0]
    return "A" if a > 0.5 else "B" if a < 0.5 else "equal"


def krippendorff_alpha(
    units: Iterable[Sequence[Hashable]], metric: Callable[[Hashable, Hashable], float] | None = None
) -> float | None:
    """Krippendorff's alpha over ``units`` (each the values its coders gave; missing values left out).

    ``metric`` is ``delta^2``; the default is nominal (0 if equal, 1 otherwise).
    """
    delta2 = metric or (lambda c, k: 0.0 if c == k else 1.0)
    o: dict[tuple[Hashable, Hashable], float] = defaultdict(float)
    for values in units:
        m = len(values)
        if m < 2:
            continue
        for i, j in itertools.permutations(range(m), 2):
            o[(values[i], values[j])] += 1.0 / (m - 1)
    n_c: dict[Hashable, float] = defaultdict(float)
    for (c, _k), v in o.items():
        n_c[c] += v
    n = sum(n_c.values())
    if n < 2:
        return None
    observed = sum(v * delta2(c, k) for (c, k), v in o.items())
    expected = sum(n_c[c] * n_c[k] * delta2(c, k) for c in n_c for k in n_c)
    if expected == 0:
        return None
    return 1.0 - (n - 1) * observed / expected


@dataclass(frozen=True)
class Agreement:
    """Agreement between annotators on the queries two or more of them answered."""

    n_units: int
    """Queries with at least two labelled (not incomparable) answers."""
    n_pairs: int
    """Pairs of annotators' answers to the same query."""
    pairwise: float | None
    """Share of those pairs that agree (None without pairs)."""
    alpha_nominal: float | None
    """Krippendorff's alpha on the categories A / B / equal."""
    alpha_interval: float | None
    """Krippendorff's alpha with the interval metric on mu(A)."""
    by_pair: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """``"alice|bob"`` -> (agreeing pairs, pairs), names in sorted order."""


def agreement(comparisons: Iterable[Comparison]) -> Agreement:
    """Pairwise agreement and Krippendorff's alpha of stored comparison answers (see the module docstring)."""
    labels: dict[str, dict[str, tuple[str, float]]] = defaultdict(dict)
    for c in comparisons:
        cat = category(c)
        if cat is not None and c.mu is not None:
            labels[c.query_id][c.annotator_id] = (cat, c.mu[0])
    units = {q: v for q, v in labels.items() if len(v) >= 2}
    agree = pairs = 0
    by_pair: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for answers in units.values():
        for a, b in itertools.combinations(sorted(answers), 2):
            same = answers[a][0] == answers[b][0]
            agree += same
            pairs += 1
            by_pair[f"{a}|{b}"][0] += same
            by_pair[f"{a}|{b}"][1] += 1
    nominal = krippendorff_alpha([cat for cat, _ in v.values()] for v in units.values())
    interval = krippendorff_alpha(
        ([mu for _, mu in v.values()] for v in units.values()),
        lambda c, k: (float(c) - float(k)) ** 2,  # type: ignore[arg-type]  # values are floats here
    )
    return Agreement(
        n_units=len(units),
        n_pairs=pairs,
        pairwise=agree / pairs if pairs else None,
        alpha_nominal=nominal,
        alpha_interval=interval,
        by_pair={k: (v[0], v[1]) for k, v in sorted(by_pair.items())},
    )
