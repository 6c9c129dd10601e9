"""People's verdict on the policy against the base: evaluation comparisons, stored but never fitted.

With ``[text] people_win_rate = n`` the loop, after each round's evaluation, asks ``n`` comparisons of
a completion of the round's policy against one of the base policy, on held-out prompts (which side is
A is drawn per query). Their query ids start with :data:`EVALUATION_PREFIX`: the reward fit's read
(:func:`~rlhfkit.feedback.answers.read_answers`) and the web loop's count of usable answers leave
them out, so the verdict stays independent of what the reward model learned from. The policy's
generations name it (``policy_id = "round-K"``), the base's are ``"base"``.

:func:`win_rates` reads the verdicts from a store: per round's policy, the answers and the win rate,
an answer counting the policy's share of its label distribution (a win 1, "about equal" 0.5, a graded
answer as given; "incomparable" is left out). People answer when they can, so the report reads the
store again each time it is written.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rlhfkit.feedback_records import Comparison

if TYPE_CHECKING:
    from rlhfkit.feedback.store import FeedbackStore

EVALUATION_PREFIX = "eval-"
"""How an evaluation query's id starts."""
BASE_POLICY = "base"
"""The ``policy_id`` of the base policy's generations in an evaluation query."""


def is_evaluation(query_id: str) -> bool:
    """Whether a query (and so its answers) is an evaluation comparison, never fitted."""
    return query_id.startswith(EVALUATION_PREFIX)


@dataclass(frozen=True)
class WinRate:
    """People's verdict on one round's policy against the base."""

    round: int
    """The round whose policy was judged (after that round's optimisation)."""
    answers: int
    """Usable answers (incomparable ones left out)."""
    win_rate: float
    """The policy's mean share of the label distribution: 1 a win, 0.5 a tie; NaN with no answers."""


def win_rates(store: FeedbackStore) -> list[WinRate]:
    """Every round's evaluation verdict stored so far, by round (rounds with queries but no answers: NaN)."""
    queries = {q.id: q for q in store.queries() if is_evaluation(q.id)}
    if not queries:
        return []
    gens = store.generations(sorted({g for q in queries.values() for g in q.generation_ids}))
    shares: dict[int, list[float]] = {q.round: [] for q in queries.values()}
    for f in store.feedback(kind=Comparison.kind):
        q = queries.get(f.query_id)
        if q is None or not isinstance(f, Comparison) or f.mu is None:
            continue
        policy_side = [gens[g].policy_id != BASE_POLICY for g in q.generation_ids]
        if sum(policy_side) != 1:
            continue  # not a policy-against-base pair
        shares[q.round].append(float(f.mu[policy_side.index(True)]))
    return [WinRate(k, len(v), sum(v) / len(v) if v else float("nan")) for k, v in sorted(shares.items())]


WIN_RATES_FILE = "win_rates.json"
"""Where a run folder keeps the verdicts read at the end of the last round (the report's table)."""


def write_win_rates(run_dir: Path, store: FeedbackStore) -> list[WinRate]:
    """Read the verdicts from ``store`` and write them to ``RUN_DIR/win_rates.json`` (nothing when there are none)."""
    from rlhfkit.files import atomic_write_bytes

    rates = win_rates(store)
    if rates:
        rows = [{**asdict(r), "win_rate": r.win_rate if math.isfinite(r.win_rate) else None} for r in rates]
        atomic_write_bytes(run_dir / WIN_RATES_FILE, json.dumps(rows).encode("utf-8"))
    return rates


def read_win_rates(run_dir: Path) -> list[WinRate]:
    """The verdicts last written to the run folder (none when there is no readable file)."""
    try:
        rows = json.loads((run_dir / WIN_RATES_FILE).read_text(encoding="utf-8"))
        return [
            WinRate(int(r["round"]), int(r["answers"]), float("nan") if r["win_rate"] is None else float(r["win_rate"]))
            for r in rows
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return []
