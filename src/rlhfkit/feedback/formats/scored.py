"""Scored completions (the UltraFeedback shape), read as pairs and written back with scores.

A row is ``{"prompt": str, "completions": [{"text" | "response": str,
"score": number}, ...]}``: several scored completions of one prompt, turned
into pairs: every pair (``"all_pairs"``) or the best against the worst
(``"best_vs_worst"``); equal scores give a tie, and with a ``temperature`` the
label is graded, ``mu = sigmoid((s_i - s_j) / T)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from rlhfkit.feedback.formats.common import ImportReport, PreferenceRecord, StoredPair, is_number
from rlhfkit.feedback.formats.rows import RowContext, RowError, RowParser, make_record, plain_text, read_file, required

ScoredMode = Literal["all_pairs", "best_vs_worst"]
"""How a ``"scored"`` row is turned into pairs."""


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def scored_parser(
    mode: ScoredMode = "all_pairs",
    temperature: float | None = None,
    keep_ties: bool = True,
    prompt_key: str = "prompt",
    score_key: str = "score",
) -> RowParser:
    """The row parser for these options (see :func:`read_scored`); bad options raise ``ValueError`` at once."""
    if mode not in ("all_pairs", "best_vs_worst"):
        raise ValueError(f"mode must be 'all_pairs' or 'best_vs_worst', got {mode!r}")
    if temperature is not None and (not is_number(temperature) or not math.isfinite(temperature) or temperature <= 0):
        raise ValueError(f"temperature must be a positive number or None, got {temperature!r}")

    def parse(row: Mapping[str, Any], line: int, ctx: RowContext) -> list[PreferenceRecord]:
        prompt = plain_text(required(row, prompt_key), prompt_key, allow_empty=True)
        completions = required(row, "completions")
        if not isinstance(completions, list):
            raise RowError("completions", f"must be a list, got {type(completions).__name__}")
        if len(completions) < 2:
            raise RowError("completions", f"needs at least 2 completions, got {len(completions)}")
        texts: list[str] = []
        scores: list[float] = []
        for i, c in enumerate(completions):
            name = f"completions[{i}]"
            if not isinstance(c, Mapping):
                raise RowError(name, f"must be an object, got {type(c).__name__}")
            text_key = "text" if c.get("text") is not None else "response"
            if c.get(text_key) is None:
                raise RowError(f"{name}.text", "missing (expected 'text' or 'response')")
            text = plain_text(c[text_key], f"{name}.{text_key}")
            if text in texts:
                raise RowError(f"{name}.{text_key}", f"is the same as completions[{texts.index(text)}]")
            if c.get(score_key) is None:
                raise RowError(f"{name}.{score_key}", "missing")
            score = c[score_key]
            if not is_number(score) or not math.isfinite(score):
                raise RowError(f"{name}.{score_key}", f"must be a finite number, got {score!r}")
            texts.append(text)
            scores.append(float(score))
        # Best first; a stable sort keeps the file's order among equal scores.
        order = sorted(range(len(texts)), key=lambda i: scores[i], reverse=True)
        if mode == "all_pairs":
            pairs = [(order[a], order[b]) for a in range(len(order)) for b in range(a + 1, len(order))]
        else:
            pairs = [(order[0], order[-1])]
        records = []
        for i, j in pairs:
            tie = scores[i] == scores[j]
            if tie and not keep_ties:
                continue
            mu_c = 0.5 if tie else 1.0 if temperature is None else _sigmoid((scores[i] - scores[j]) / temperature)
            records.append(
                make_record(ctx, line, prompt, texts[i], texts[j], (mu_c, 1.0 - mu_c), scores=(scores[i], scores[j]))
            )
        return records

    return parse


def read_scored(
    path: str | Path,
    *,
    mode: ScoredMode = "all_pairs",
    temperature: float | None = None,
    keep_ties: bool = True,
    prompt_key: str = "prompt",
    score_key: str = "score",
    skip_bad_rows: bool = False,
    annotator_id: str = "dataset",
    source: str | None = None,
) -> ImportReport[PreferenceRecord]:
    """Read rows of scored completions (UltraFeedback shape) and pair them up.

    A row is ``{"prompt": str, "completions": [{"text" | "response": str,
    "score": number}, ...]}`` with at least two completions of distinct texts.
    The completions are ordered best first (equal scores keep the file's
    order) and paired, the better one as ``chosen``:

    - ``mode="all_pairs"``: every pair, ``k (k - 1) / 2`` records for ``k``
      completions; ``mode="best_vs_worst"``: the first best against the last worst;
    - equal scores give ``mu = (0.5, 0.5)`` (dropped with ``keep_ties=False``);
    - otherwise ``mu = (1, 0)``, or with a ``temperature`` ``T`` the graded
      ``mu = (sigmoid((s_i - s_j) / T), 1 - ...)``.

    Records keep the two scores in ``scores``; ``margin`` is ``None``.
    ``prompt_key`` / ``score_key`` name those fields for files that call them
    otherwise (``"instruction"``, ``"overall_score"``). Other arguments as for
    :func:`~rlhfkit.feedback.formats.trl.read_trl`; a bad row is skipped whole.
    """
    parse = scored_parser(mode, temperature, keep_ties, prompt_key, score_key)
    return read_file(path, parse, skip_bad_rows, annotator_id, source)


def scored_rows(pairs: Iterable[StoredPair]) -> Iterator[dict[str, Any]]:
    """One row per distinct prompt, its completions in order of first appearance (see ``export_store``).

    The scores are those imported from a scored file when every completion of
    the prompt has one, otherwise its wins (1 per win, ``mu`` for a tie or a
    graded answer). Incomparable answers say nothing about scores and are left
    out. Plain text only.
    """
    groups: dict[str, list[StoredPair]] = {}
    for pair in pairs:
        if pair.mu is None:
            continue  # an incomparable answer says nothing about scores
        if not all(isinstance(v, str) for v in (pair.prompt, pair.chosen.completion, pair.rejected.completion)):
            raise ValueError(f"query {pair.query_id}: format 'scored' needs plain-text prompt and completions")
        assert isinstance(pair.prompt, str)
        groups.setdefault(pair.prompt, []).append(pair)
    for prompt, group in groups.items():
        wins: dict[str, float] = {}
        stored: dict[str, set[Any]] = {}
        for pair in group:
            assert pair.mu is not None
            for text, share in ((pair.chosen, pair.mu[0]), (pair.rejected, pair.mu[1])):
                key = str(text.completion)
                wins[key] = wins.get(key, 0.0) + share
                stored.setdefault(key, set()).add(text.info.get("score"))
        use_stored = all(len(s) == 1 and is_number(next(iter(s))) for s in stored.values())
        completions = [
            {"text": text, "score": next(iter(stored[text])) if use_stored else score} for text, score in wins.items()
        ]
        yield {"prompt": prompt, "completions": completions}
