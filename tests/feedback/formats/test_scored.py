"""Scored completions: pairs, ties, graded labels, field names, options, round trips through the store."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from formats_helpers import (
    SCORED_ROWS,
    roundtrip,
    write_jsonl,
)

from rlhfkit.feedback.formats import (
    export_store,
    import_into_store,
    read_scored,
)
from rlhfkit.feedback.store import FeedbackStore


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"mode": "best_vs_worst"},
        {"temperature": 2.0},
        {"keep_ties": False},
        {"mode": "best_vs_worst", "temperature": 0.5},
    ],
)
def test_scored_roundtrip(tmp_path: Path, store: FeedbackStore, options: dict[str, Any]) -> None:
    first, second = roundtrip(tmp_path, store, SCORED_ROWS, "scored", **options)
    assert second == first
    assert [r.source_line for r in first] == sorted(r.source_line for r in first)


def test_scored_roundtrip_from_wins(tmp_path: Path, store: FeedbackStore) -> None:
    """Without stored scores (records built by hand) the scores are wins, which keep the order."""
    records = [replace(r, scores=None) for r in read_scored(write_jsonl(tmp_path / "s.jsonl", SCORED_ROWS)).records]
    import_into_store(records, store)
    out = tmp_path / "out.jsonl"
    assert export_store(store, out, "scored") == len(SCORED_ROWS)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["completions"] == [
        {"text": "haiku two", "score": 2.5},  # beats 2, ties 1
        {"text": "haiku four", "score": 2.5},
        {"text": "haiku one", "score": 1.0},
        {"text": "haiku three", "score": 0.0},
    ]
    again = [replace(r, scores=None) for r in read_scored(out).records]
    assert again == records


def test_skip_bad_rows_drops_the_whole_scored_row(tmp_path: Path) -> None:
    bad = {"prompt": "x", "completions": [{"text": "a", "score": 1}, {"text": "b", "score": 2}, {"text": "c"}]}
    path = write_jsonl(tmp_path / "data.jsonl", [SCORED_ROWS[1], bad, SCORED_ROWS[2]])
    report = read_scored(path, skip_bad_rows=True)
    assert report.skipped == 1
    assert [r.source_line for r in report.records] == [1, 3, 3, 3]


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_all_pairs_count(tmp_path: Path, k: int) -> None:
    row = {"prompt": "p", "completions": [{"text": f"c{i}", "score": (i * 7) % k} for i in range(k)]}
    records = read_scored(write_jsonl(tmp_path / "s.jsonl", [row])).records
    assert len(records) == k * (k - 1) // 2
    assert all(r.mu == (1.0, 0.0) and r.scores is not None and r.scores[0] > r.scores[1] for r in records)
    assert len({(r.chosen, r.rejected) for r in records}) == len(records)
    assert len(read_scored(tmp_path / "s.jsonl", mode="best_vs_worst").records) == 1


def test_ties_and_best_vs_worst(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", SCORED_ROWS[:1])
    records = read_scored(path).records
    assert [(r.chosen, r.rejected, r.mu) for r in records] == [
        ("haiku two", "haiku four", (0.5, 0.5)),
        ("haiku two", "haiku one", (1.0, 0.0)),
        ("haiku two", "haiku three", (1.0, 0.0)),
        ("haiku four", "haiku one", (1.0, 0.0)),
        ("haiku four", "haiku three", (1.0, 0.0)),
        ("haiku one", "haiku three", (1.0, 0.0)),
    ]
    assert records[1].scores == (9.0, 6.5) and records[1].margin is None
    assert len(read_scored(path, keep_ties=False).records) == 5
    [best] = read_scored(path, mode="best_vs_worst").records
    assert (best.chosen, best.rejected, best.mu) == ("haiku two", "haiku three", (1.0, 0.0))
    tied = write_jsonl(
        tmp_path / "t.jsonl", [{"prompt": "p", "completions": [{"text": "a", "score": 1}, {"text": "b", "score": 1}]}]
    )
    [tie] = read_scored(tied, mode="best_vs_worst").records
    assert (tie.chosen, tie.rejected, tie.mu) == ("a", "b", (0.5, 0.5))


def test_graded_mu_by_hand(tmp_path: Path) -> None:
    row = {
        "prompt": "p",
        "completions": [{"text": "a", "score": 1}, {"text": "b", "score": 3}, {"text": "c", "score": 3}],
    }
    path = write_jsonl(tmp_path / "s.jsonl", [row])
    records = read_scored(path, temperature=2.0).records
    # b vs c: equal scores, sigmoid(0) = 0.5; b vs a and c vs a: sigmoid((3 - 1) / 2) = 1 / (1 + e^-1).
    expected = 1.0 / (1.0 + math.exp(-1.0))
    assert expected == pytest.approx(0.7310585786300049)
    assert [(r.chosen, r.rejected) for r in records] == [("b", "c"), ("b", "a"), ("c", "a")]
    assert records[0].mu == (0.5, 0.5)
    assert records[1].mu == pytest.approx((0.7310585786300049, 0.2689414213699951))
    assert records[2].mu == records[1].mu
    [wide] = read_scored(path, temperature=0.5, mode="best_vs_worst").records  # sigmoid(4) = 0.98201...
    assert wide.mu == pytest.approx((0.9820137900379085, 0.01798620996209155))


def test_scored_field_names(tmp_path: Path) -> None:
    row = {
        "instruction": "p",
        "completions": [{"response": "a", "overall_score": 2}, {"text": "b", "overall_score": 1}],
    }
    path = write_jsonl(tmp_path / "uf.jsonl", [row])
    [record] = read_scored(path, prompt_key="instruction", score_key="overall_score").records
    assert (record.prompt, record.chosen, record.rejected) == ("p", "a", "b")


def test_scored_options_are_checked(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", SCORED_ROWS)
    with pytest.raises(ValueError, match="mode"):
        read_scored(path, mode="top_k")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature"):
        read_scored(path, temperature=0.0)
