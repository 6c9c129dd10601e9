"""Preference pairs into the store (each answer once) and out of it in every format."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from formats_helpers import (
    HH_ROWS,
    SCORED_ROWS,
    TRL_ROWS,
    assistant,
    user,
    write_jsonl,
)

from rlhfkit.feedback.formats import (
    PreferenceRecord,
    export_store,
    import_into_store,
    read_hh,
    read_scored,
    read_trl,
    read_trl_conversational,
)
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback_records import Comparison
from rlhfkit.types import Generation, Query, Text


def test_every_format_exports_a_plain_text_store(tmp_path: Path, store: FeedbackStore) -> None:
    """Plain text converts to chat for the chat formats: one user message, one assistant reply."""
    records = [PreferenceRecord(prompt="Hi", chosen="Hello", rejected="Bye", source_line=1)]
    import_into_store(records, store)
    export_store(store, tmp_path / "c.jsonl", "trl_conversational")
    assert list(read_trl_conversational(tmp_path / "c.jsonl").records) == [
        replace(records[0], prompt=(user("Hi"),), chosen=(assistant("Hello"),), rejected=(assistant("Bye"),))
    ]
    export_store(store, tmp_path / "h.jsonl", "hh")
    assert json.loads((tmp_path / "h.jsonl").read_text()) == {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Bye",
    }


def test_chat_store_cannot_be_written_as_plain_trl(tmp_path: Path, store: FeedbackStore) -> None:
    import_into_store(read_hh(write_jsonl(tmp_path / "hh.jsonl", HH_ROWS[:1])).records, store)
    with pytest.raises(ValueError, match="trl_conversational"):
        export_store(store, tmp_path / "out.jsonl", "trl")
    with pytest.raises(ValueError, match="plain-text"):
        export_store(store, tmp_path / "out.jsonl", "scored")


def _human_answers(store: FeedbackStore) -> None:
    """Three human answers on plain-text pairs: B, incomparable, graded towards B."""
    gens = [Generation(f"g{i}", 0, "p", Text(prompt="P", completion=f"c{i}")) for i in range(4)]
    store.add_generations(gens)
    store.add_queries([Query("q0", ("g0", "g1"), 0), Query("q1", ("g1", "g2"), 0), Query("q2", ("g2", "g3"), 0)])
    store.record(Comparison.make("q0", "B", "h"))
    store.record(Comparison.make("q1", "incomparable", "h"))
    store.record(Comparison.make("q2", "graded", "h", mu_a=0.25))


def test_export_orients_b_answers_and_skips_incomparable(tmp_path: Path, store: FeedbackStore) -> None:
    _human_answers(store)
    out = tmp_path / "out.jsonl"
    assert export_store(store, out, "trl") == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [
        {"prompt": "P", "chosen": "c1", "rejected": "c0"},
        {"prompt": "P", "chosen": "c3", "rejected": "c2", "mu": [0.75, 0.25]},
    ]
    assert export_store(store, out, "trl", include_incomparable=True) == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[1] == {"prompt": "P", "chosen": "c1", "rejected": "c2", "mu": None}
    assert export_store(store, out, "trl", annotator_id="nobody") == 0


def test_scored_export_counts_wins(tmp_path: Path, store: FeedbackStore) -> None:
    _human_answers(store)
    out = tmp_path / "out.jsonl"
    assert export_store(store, out, "scored", include_incomparable=True) == 1
    assert json.loads(out.read_text()) == {
        "prompt": "P",
        "completions": [
            {"text": "c1", "score": 1.0},
            {"text": "c0", "score": 0.0},
            {"text": "c3", "score": 0.75},
            {"text": "c2", "score": 0.25},
        ],
    }


def test_unknown_format(tmp_path: Path, store: FeedbackStore) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        export_store(store, tmp_path / "x.jsonl", "csv")  # type: ignore[arg-type]


def test_importing_the_same_file_twice_stores_each_answer_once(tmp_path: Path, store: FeedbackStore) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", TRL_ROWS)
    assert import_into_store(read_trl(path).records, store, annotator_id="ann").stored == len(TRL_ROWS)
    counts = (len(store.generations()), len(store.queries()), len(store.comparisons()))
    assert counts == (2 * len(TRL_ROWS), len(TRL_ROWS), len(TRL_ROWS))
    again = import_into_store(read_trl(path).records, store, annotator_id="ann", round=3, batch_size=2)
    assert (again.stored, again.duplicates, again.annotators) == (0, len(TRL_ROWS), ("ann",))
    assert (len(store.generations()), len(store.queries()), len(store.comparisons())) == counts
    # The same path given relatively finds the same records.
    assert import_into_store(read_trl(Path(str(path))).records, store, annotator_id="ann").stored == 0
    # Another annotator's answers to the same queries are new answers, not new queries.
    assert import_into_store(read_trl(path).records, store, annotator_id="other").stored == len(TRL_ROWS)
    assert len(store.queries()) == len(TRL_ROWS)
    assert {a.id: a.kind for a in store.annotators()} == {"ann": "dataset", "other": "dataset"}


def test_scored_pairs_share_generations(tmp_path: Path, store: FeedbackStore) -> None:
    records = read_scored(write_jsonl(tmp_path / "s.jsonl", SCORED_ROWS)).records
    assert import_into_store(records, store).stored == len(records) == 6 + 1 + 3
    assert len(store.generations()) == 4 + 2 + 3
    assert import_into_store(read_scored(tmp_path / "s.jsonl").records, store).stored == 0


def test_store_records(tmp_path: Path, store: FeedbackStore) -> None:
    records = read_trl(write_jsonl(tmp_path / "data.jsonl", TRL_ROWS[:4])).records
    import_into_store(records, store, round=2, policy_id="hf")
    queries = store.queries()
    generations = store.generations()
    assert [q.round for q in queries] == [2] * 4
    a, b = (generations[gid] for gid in queries[1].generation_ids)
    assert (a.policy_id, a.round) == ("hf", 2)
    assert (a.text.prompt, a.text.completion, b.text.completion) == ("2 + 2 =", " 4", " 5")
    assert a.text.info["source_line"] == 2 and a.text.info["margin"] == 2.5
    mus = [c.mu for c in store.comparisons()]
    assert mus == [(1.0, 0.0), (1.0, 0.0), (0.5, 0.5), (0.8, 1.0 - 0.8)]
    assert [c.annotator_id for c in store.comparisons()] == ["dataset"] * 4
