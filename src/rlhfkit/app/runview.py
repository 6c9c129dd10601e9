"""What the app shows about the run behind it: its settings for people, who answered, and progress per round.

The app never imports the loop or its config classes (``shared/DESIGN.md``):
everything here is read from the store, which the loop writes, and from the run
folder's ``metrics.jsonl`` when the app can see it (an app on another machine,
``serve --db postgresql://...``, may not: then the returns are left out).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from rlhfkit.app import schemas as s
from rlhfkit.feedback.store import AnnotationSettings, FeedbackStore

log = logging.getLogger("rlhfkit.app")


def run_settings(store: FeedbackStore, fallback: AnnotationSettings) -> tuple[AnnotationSettings, bool]:
    """The settings the run wrote to ``store`` and True, or ``fallback`` and False if no run has written any.

    A malformed record is a ``ValueError`` naming the field: the app then refuses
    to start rather than offer a scale the run does not use.
    """
    written = store.read_annotation_settings()
    if written is None:
        return fallback, False
    return written, True


def settings_out(settings: AnnotationSettings, from_run: bool) -> s.SettingsOut:
    return s.SettingsOut(
        instructions=settings.instructions,
        rating_scale=list(settings.rating_scale),
        label_choices=list(settings.label_choices),
        label_ordinal=settings.label_ordinal,
        task=settings.task,
        source="run" if from_run else "fallback",
    )


def people_progress(store: FeedbackStore) -> list[s.AnnotatorProgress]:
    """Everyone who answers, with their answer counts, by id.

    An admin who has answered nothing is left out (admins log in to watch and
    pause, not to answer); one who has answered is listed, marked ``admin``.
    Simulated and imported annotators, who have no login, are ``none``.
    """
    counts = store.feedback_counts()
    kinds = {a.id: a.kind for a in store.annotators()}
    roles: dict[str, str] = {}
    for t in store.tokens():
        if t.role == "admin" or t.annotator_id not in roles:
            roles[t.annotator_id] = t.role
    ids = sorted(a for a in set(kinds) | set(counts) if roles.get(a) != "admin" or counts.get(a, 0) > 0)
    return [
        s.AnnotatorProgress(
            annotator_id=a,
            kind=kinds.get(a, "unknown"),
            answered=counts.get(a, 0),
            role=roles.get(a, "none"),  # type: ignore[arg-type]  # roles are checked by the store
        )
        for a in ids
    ]


def read_metrics(run_dir: Path | None) -> list[dict[str, Any]] | None:
    """The rows of ``RUN_DIR/metrics.jsonl`` (one per finished round), or None if there is no such file.

    The loop replaces the file atomically, so a reader never sees half of it; a
    line that is not a JSON object is skipped all the same.
    """
    if run_dir is None:
        return None
    try:
        text = (run_dir / "metrics.jsonl").read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, PermissionError, UnicodeDecodeError):
        return None
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def rounds_view(store: FeedbackStore, run_dir: Path | None, report_url: str) -> s.RoundsOut:
    """Per round: queries posted, answers stored to them, and the true and learned return after it.

    Round 0 is the base policy before any feedback (it has returns, no queries);
    a round the loop has posted queries for but not finished has no returns yet.
    """
    counts = store.counts_by_round()
    metrics = read_metrics(run_dir)
    by_round: dict[int, dict[str, Any]] = {}
    for row in metrics or []:
        k = _number(row.get("round"))
        if k is not None:
            by_round[int(k)] = row
    rounds = []
    for k in sorted(set(counts) | set(by_round)):
        posted, answered = counts.get(k, (0, 0))
        row = by_round.get(k, {})
        rounds.append(
            s.RoundOut(
                round=k,
                queries=posted,
                answers=answered,
                true_return=_number(row.get("true_return")),
                learned_return=_number(row.get("learned_return")),
            )
        )
    has_report = run_dir is not None and (run_dir / "report.html").is_file()
    return s.RoundsOut(rounds=rounds, metrics=metrics is not None, report=report_url if has_report else None)
