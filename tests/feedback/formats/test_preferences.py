"""Tests for rlhfkit.feedback.formats.preferences: reading, storing and writing preference data sets."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rlhfkit.feedback.formats.preferences import (
    DataFormatError,
    ImportReport,
    PreferenceFormat,
    PreferenceRecord,
    export_store,
    import_into_store,
    read_hh,
    read_rows,
    read_scored,
    read_trl,
    read_trl_conversational,
)
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.types import Answer, Comparison, Generation, Query, Text


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Write rows as JSON Lines; a ``str`` row is written verbatim (for malformed lines)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read(path: Path, format: PreferenceFormat, **options: Any) -> list[PreferenceRecord]:
    if format == "trl":
        return read_trl(path, **options)
    if format == "trl_conversational":
        return read_trl_conversational(path, **options)
    if format == "hh":
        return read_hh(path, **options)
    return read_scored(path, **options)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeedbackStore]:
    s = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.sqlite'}")
    yield s
    s.close()


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def hh(*turns: str) -> str:
    """An HH transcript from alternating Human / Assistant turns."""
    return "".join(f"\n\n{'Human' if i % 2 == 0 else 'Assistant'}: {t}" for i, t in enumerate(turns))


TRL_ROWS: list[Any] = [
    {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
    {"prompt": "2 + 2 =", "chosen": " 4", "rejected": " 5", "margin": 2.5},
    {"prompt": "Say hi", "chosen": "hi", "rejected": "hello", "mu": [0.5, 0.5]},
    {"prompt": "Best fruit?", "chosen": "Mango", "rejected": "Apple", "mu": [0.8, 0.2]},
    {"chosen": "Q: capital of France? A: Paris", "rejected": "Q: capital of France? A: Rome"},
    {"prompt": "Colour or number?", "chosen": "red", "rejected": "7", "mu": None},
    {"prompt": "ünïcödé ✓", "chosen": "ja", "rejected": "nein", "extra": "ignored"},
]

CONVERSATIONAL_ROWS: list[Any] = [
    {
        "prompt": [{"role": "system", "content": "Be brief."}, user("What colour is the sky?")],
        "chosen": [assistant("Blue.")],
        "rejected": [assistant("Green.")],
    },
    {"prompt": [user("Hi")], "chosen": [assistant("Hello!")], "rejected": [assistant("Go away.")], "mu": [0.6, 0.4]},
    {"chosen": [user("2+2?"), assistant("4")], "rejected": [user("2+2?"), assistant("5")]},
    {"prompt": [user("Tie?")], "chosen": [assistant("a")], "rejected": [assistant("b")], "mu": [0.5, 0.5]},
]

HH_ROWS: list[Any] = [
    {"chosen": hh("How do I bake bread?", "Mix flour, water, yeast."), "rejected": hh("How do I bake bread?", "No.")},
    {
        "chosen": hh("Hi", "Hello! How can I help?", "Tell me a joke", "Why did the chicken cross the road?"),
        "rejected": hh("Hi", "Hello! How can I help?", "Tell me a joke", "I don't know any."),
    },
    {"chosen": hh("Is this a tie?", "Maybe."), "rejected": hh("Is this a tie?", "Perhaps."), "mu": [0.5, 0.5]},
    {"chosen": hh("Graded?", " Yes,\nindented."), "rejected": hh("Graded?", "no"), "mu": [0.75, 0.25]},
]

SCORED_ROWS: list[Any] = [
    {
        "prompt": "Write a haiku",
        "completions": [
            {"text": "haiku one", "score": 6.5},
            {"response": "haiku two", "score": 9.0},
            {"text": "haiku three", "score": 2},
            {"text": "haiku four", "score": 9.0},
        ],
    },
    {"prompt": "Explain RLHF", "completions": [{"text": "short", "score": 1}, {"text": "long", "score": 4}]},
    {
        "prompt": "Name a prime",
        "completions": [{"text": "4", "score": 0}, {"text": "7", "score": 10}, {"text": "9", "score": 3}],
    },
]


def roundtrip(
    tmp_path: Path, store: FeedbackStore, rows: list[Any], format: PreferenceFormat, **options: Any
) -> tuple[list[PreferenceRecord], list[PreferenceRecord]]:
    original = write_jsonl(tmp_path / f"in-{format}.jsonl", rows)
    first = read(original, format, annotator_id="ann", **options)
    import_into_store(first, store)
    exported = tmp_path / f"out-{format}.jsonl"
    export_store(store, exported, format, include_incomparable=True)
    second = read(exported, format, annotator_id="ann", **options)
    return first, second


# -- round trips ------------------------------------------------------------------


def test_trl_roundtrip(tmp_path: Path, store: FeedbackStore) -> None:
    first, second = roundtrip(tmp_path, store, TRL_ROWS, "trl")
    assert len(first) == len(TRL_ROWS)
    assert second == first
    assert [r.source_line for r in second] == list(range(1, len(TRL_ROWS) + 1))
    assert first[1].margin == 2.5
    assert first[2].mu == (0.5, 0.5)
    assert first[3].mu == (0.8, 1.0 - 0.8)
    assert first[4].prompt == "" and first[4].chosen == "Q: capital of France? A: Paris"
    assert first[5].mu is None
    assert first[0].mu == (1.0, 0.0) and first[0].annotator_id == "ann"
    answers = [c.answer for c in store.comparisons()]
    assert answers == [Answer.A, Answer.A, Answer.EQUAL, Answer.GRADED, Answer.A, Answer.INCOMPARABLE, Answer.A]


def test_trl_conversational_roundtrip(tmp_path: Path, store: FeedbackStore) -> None:
    first, second = roundtrip(tmp_path, store, CONVERSATIONAL_ROWS, "trl_conversational")
    assert second == first
    assert first[0].prompt == ({"role": "system", "content": "Be brief."}, user("What colour is the sky?"))
    assert first[0].chosen == (assistant("Blue."),)
    assert first[2].prompt == ()
    assert first[1].mu == (0.6, 1.0 - 0.6)


def test_hh_roundtrip(tmp_path: Path, store: FeedbackStore) -> None:
    first, second = roundtrip(tmp_path, store, HH_ROWS, "hh")
    assert second == first
    assert first[0].prompt == (user("How do I bake bread?"),)
    assert first[0].chosen == (assistant("Mix flour, water, yeast."),)
    assert first[0].rejected == (assistant("No."),)
    assert first[1].prompt == (user("Hi"), assistant("Hello! How can I help?"), user("Tell me a joke"))
    assert first[3].chosen == (assistant(" Yes,\nindented."),)
    # The exported transcripts are byte-for-byte the ones read.
    exported = [json.loads(line) for line in (tmp_path / "out-hh.jsonl").read_text().splitlines()]
    assert [(r["chosen"], r["rejected"]) for r in exported] == [(r["chosen"], r["rejected"]) for r in HH_ROWS]


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
    records = [replace(r, scores=None) for r in read_scored(write_jsonl(tmp_path / "s.jsonl", SCORED_ROWS))]
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
    again = [replace(r, scores=None) for r in read_scored(out)]
    assert again == records


def test_every_format_exports_a_plain_text_store(tmp_path: Path, store: FeedbackStore) -> None:
    """Plain text converts to chat for the chat formats: one user message, one assistant reply."""
    records = [PreferenceRecord(prompt="Hi", chosen="Hello", rejected="Bye", source_line=1)]
    import_into_store(records, store)
    export_store(store, tmp_path / "c.jsonl", "trl_conversational")
    assert read_trl_conversational(tmp_path / "c.jsonl") == [
        replace(records[0], prompt=(user("Hi"),), chosen=(assistant("Hello"),), rejected=(assistant("Bye"),))
    ]
    export_store(store, tmp_path / "h.jsonl", "hh")
    assert json.loads((tmp_path / "h.jsonl").read_text()) == {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Bye",
    }


def test_chat_store_cannot_be_written_as_plain_trl(tmp_path: Path, store: FeedbackStore) -> None:
    import_into_store(read_hh(write_jsonl(tmp_path / "hh.jsonl", HH_ROWS[:1])), store)
    with pytest.raises(ValueError, match="trl_conversational"):
        export_store(store, tmp_path / "out.jsonl", "trl")
    with pytest.raises(ValueError, match="plain-text"):
        export_store(store, tmp_path / "out.jsonl", "scored")


# -- export choices ---------------------------------------------------------------


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


# -- malformed rows ---------------------------------------------------------------

GOOD: dict[str, Any] = {
    "trl": TRL_ROWS[0],
    "trl_conversational": CONVERSATIONAL_ROWS[0],
    "hh": HH_ROWS[0],
    "scored": SCORED_ROWS[1],
}

A1 = {"text": "a", "score": 1}
CHAT_OK = {"prompt": [user("x")], "chosen": [assistant("a")]}

BAD_ROWS: list[tuple[PreferenceFormat, Any, str]] = [
    ("trl", '{"prompt": "x", "chosen": "a",', "<row>"),
    ("trl", "[1, 2]", "<row>"),
    ("trl", {"prompt": "x", "rejected": "b"}, "chosen"),
    ("trl", {"prompt": "x", "chosen": "a"}, "rejected"),
    ("trl", {"prompt": 3, "chosen": "a", "rejected": "b"}, "prompt"),
    ("trl", {"prompt": "x", "chosen": ["a"], "rejected": "b"}, "chosen"),
    ("trl", {"prompt": "x", "chosen": "  ", "rejected": "b"}, "chosen"),
    ("trl", {"prompt": "x", "chosen": "a", "rejected": "a"}, "rejected"),
    ("trl", {"prompt": "x", "chosen": "a", "rejected": "b", "margin": "big"}, "margin"),
    ("trl", {"prompt": "x", "chosen": "a", "rejected": "b", "mu": [0.2, 0.8]}, "mu"),
    ("trl", {"prompt": "x", "chosen": "a", "rejected": "b", "mu": [0.7, 0.7]}, "mu"),
    ("trl_conversational", {"prompt": "x", "chosen": [assistant("a")], "rejected": [assistant("b")]}, "prompt"),
    ("trl_conversational", {"prompt": [user("x")], "chosen": [], "rejected": [assistant("b")]}, "chosen"),
    ("trl_conversational", {"prompt": [user("x")], "chosen": [{"role": "assistant"}]}, "chosen[0].content"),
    ("trl_conversational", {"prompt": [{"role": 1, "content": "x"}], "chosen": []}, "prompt[0].role"),
    ("trl_conversational", {**CHAT_OK}, "rejected"),
    ("trl_conversational", {**CHAT_OK, "rejected": [assistant("a")]}, "rejected"),
    ("hh", {"chosen": hh("q", "a")}, "rejected"),
    ("hh", {"chosen": "no turns here", "rejected": hh("q", "b")}, "chosen"),
    ("hh", {"chosen": hh("q", "a"), "rejected": hh("q", "a", "more?")}, "rejected"),
    ("hh", {"chosen": hh("q", ""), "rejected": hh("q", "b")}, "chosen"),
    ("hh", {"chosen": hh("q", "a"), "rejected": hh("q", "a")}, "rejected"),
    ("hh", {"chosen": hh("q", "a"), "rejected": hh("other q", "b")}, "rejected"),
    ("scored", {"completions": [A1, {"text": "b", "score": 2}]}, "prompt"),
    ("scored", {"prompt": "x", "completions": [A1]}, "completions"),
    ("scored", {"prompt": "x", "completions": "a, b"}, "completions"),
    ("scored", {"prompt": "x", "completions": [A1, {"text": "b"}]}, "completions[1].score"),
    ("scored", {"prompt": "x", "completions": [A1, {"score": 2}]}, "completions[1].text"),
    ("scored", {"prompt": "x", "completions": [A1, {"text": "b", "score": "9"}]}, "completions[1].score"),
    ("scored", {"prompt": "x", "completions": [A1, {"text": "b", "score": math.nan}]}, "completions[1].score"),
    ("scored", {"prompt": "x", "completions": [A1, {"text": "a", "score": 2}]}, "completions[1].text"),
    ("scored", {"prompt": "x", "completions": [{"text": "", "score": 1}, A1]}, "completions[0].text"),
]


@pytest.mark.parametrize(("format", "bad", "field"), BAD_ROWS)
def test_malformed_row_names_file_line_and_field(
    tmp_path: Path, format: PreferenceFormat, bad: Any, field: str
) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [GOOD[format], GOOD[format], bad, GOOD[format]])
    with pytest.raises(DataFormatError) as info:
        read(path, format)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 3, field)
    named = "" if field == "<row>" else f"field {field!r}: "  # a fault of the whole row names no field
    assert str(err).startswith(f"{path}:3: {named}")
    assert str(err) == f"{path}:3: {named}{err.message}"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "x", "chosen": "a", "rejected": "b"', "the line ends before the JSON value does"),
        ('{"prompt": "x" "chosen": "a", "rejected": "b"}', "Expecting ',' delimiter at column 16"),
        ("prompt,chosen,rejected", "Expecting value at column 1"),
    ],
)
def test_a_line_that_is_not_json_says_where_in_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(TRL_ROWS[0]) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_trl(path)
    assert str(info.value).startswith(f"{path}:2: not valid JSON: {message}")


def test_hh_mismatched_prefix_is_an_error(tmp_path: Path) -> None:
    row = {
        "chosen": hh("Hi", "Hello!", "Tell me a joke", "A joke."),
        "rejected": hh("Hi", "Go away.", "Tell me a joke", "No."),
    }
    path = write_jsonl(tmp_path / "hh.jsonl", [row])
    with pytest.raises(DataFormatError, match=r"hh\.jsonl:1: field 'rejected': .*differ from 'chosen' from turn 2"):
        read_hh(path)


def test_skip_bad_rows_counts_them(tmp_path: Path) -> None:
    rows = [TRL_ROWS[0], "not json", TRL_ROWS[1], {"prompt": "x", "chosen": "a"}, TRL_ROWS[2]]
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    report = read_trl(path, skip_bad_rows=True)
    assert isinstance(report, ImportReport)
    assert report.skipped == 2
    assert [r.source_line for r in report.records] == [1, 3, 5]
    assert len(report.errors) == 2
    assert report.errors[0].startswith(f"{path}:2: not valid JSON")
    assert report.errors[1] == f"{path}:4: field 'rejected': missing"


def test_skip_bad_rows_drops_the_whole_scored_row(tmp_path: Path) -> None:
    bad = {"prompt": "x", "completions": [{"text": "a", "score": 1}, {"text": "b", "score": 2}, {"text": "c"}]}
    path = write_jsonl(tmp_path / "data.jsonl", [SCORED_ROWS[1], bad, SCORED_ROWS[2]])
    report = read_scored(path, skip_bad_rows=True)
    assert report.skipped == 1
    assert [r.source_line for r in report.records] == [1, 3, 3, 3]


def test_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("\n" + json.dumps(TRL_ROWS[0]) + "\n\n" + json.dumps(TRL_ROWS[1]) + "\n\n", encoding="utf-8")
    assert [r.source_line for r in read_trl(path)] == [2, 4]


# -- the store ----------------------------------------------------------------------


def test_importing_the_same_file_twice_stores_each_answer_once(tmp_path: Path, store: FeedbackStore) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", TRL_ROWS)
    assert import_into_store(read_trl(path), store, annotator_id="ann") == len(TRL_ROWS)
    counts = (len(store.generations()), len(store.queries()), len(store.comparisons()))
    assert counts == (2 * len(TRL_ROWS), len(TRL_ROWS), len(TRL_ROWS))
    assert import_into_store(read_trl(path), store, annotator_id="ann", round=3, batch_size=2) == 0
    assert (len(store.generations()), len(store.queries()), len(store.comparisons())) == counts
    # The same path given relatively finds the same records.
    assert import_into_store(read_trl(Path(str(path))), store, annotator_id="ann") == 0
    # Another annotator's answers to the same queries are new answers, not new queries.
    assert import_into_store(read_trl(path), store, annotator_id="other") == len(TRL_ROWS)
    assert len(store.queries()) == len(TRL_ROWS)
    assert {a.id: a.kind for a in store.annotators()} == {"ann": "dataset", "other": "dataset"}


def test_scored_pairs_share_generations(tmp_path: Path, store: FeedbackStore) -> None:
    records = read_scored(write_jsonl(tmp_path / "s.jsonl", SCORED_ROWS))
    assert import_into_store(records, store) == len(records) == 6 + 1 + 3
    assert len(store.generations()) == 4 + 2 + 3
    assert import_into_store(read_scored(tmp_path / "s.jsonl"), store) == 0


def test_store_records(tmp_path: Path, store: FeedbackStore) -> None:
    records = read_trl(write_jsonl(tmp_path / "data.jsonl", TRL_ROWS[:4]))
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


# -- scored rows ----------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_all_pairs_count(tmp_path: Path, k: int) -> None:
    row = {"prompt": "p", "completions": [{"text": f"c{i}", "score": (i * 7) % k} for i in range(k)]}
    records = read_scored(write_jsonl(tmp_path / "s.jsonl", [row]))
    assert len(records) == k * (k - 1) // 2
    assert all(r.mu == (1.0, 0.0) and r.scores is not None and r.scores[0] > r.scores[1] for r in records)
    assert len({(r.chosen, r.rejected) for r in records}) == len(records)
    assert len(read_scored(tmp_path / "s.jsonl", mode="best_vs_worst")) == 1


def test_ties_and_best_vs_worst(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", SCORED_ROWS[:1])
    records = read_scored(path)
    assert [(r.chosen, r.rejected, r.mu) for r in records] == [
        ("haiku two", "haiku four", (0.5, 0.5)),
        ("haiku two", "haiku one", (1.0, 0.0)),
        ("haiku two", "haiku three", (1.0, 0.0)),
        ("haiku four", "haiku one", (1.0, 0.0)),
        ("haiku four", "haiku three", (1.0, 0.0)),
        ("haiku one", "haiku three", (1.0, 0.0)),
    ]
    assert records[1].scores == (9.0, 6.5) and records[1].margin is None
    assert len(read_scored(path, keep_ties=False)) == 5
    [best] = read_scored(path, mode="best_vs_worst")
    assert (best.chosen, best.rejected, best.mu) == ("haiku two", "haiku three", (1.0, 0.0))
    tied = write_jsonl(
        tmp_path / "t.jsonl", [{"prompt": "p", "completions": [{"text": "a", "score": 1}, {"text": "b", "score": 1}]}]
    )
    [tie] = read_scored(tied, mode="best_vs_worst")
    assert (tie.chosen, tie.rejected, tie.mu) == ("a", "b", (0.5, 0.5))


def test_graded_mu_by_hand(tmp_path: Path) -> None:
    row = {
        "prompt": "p",
        "completions": [{"text": "a", "score": 1}, {"text": "b", "score": 3}, {"text": "c", "score": 3}],
    }
    path = write_jsonl(tmp_path / "s.jsonl", [row])
    records = read_scored(path, temperature=2.0)
    # b vs c: equal scores, sigmoid(0) = 0.5; b vs a and c vs a: sigmoid((3 - 1) / 2) = 1 / (1 + e^-1).
    expected = 1.0 / (1.0 + math.exp(-1.0))
    assert expected == pytest.approx(0.7310585786300049)
    assert [(r.chosen, r.rejected) for r in records] == [("b", "c"), ("b", "a"), ("c", "a")]
    assert records[0].mu == (0.5, 0.5)
    assert records[1].mu == pytest.approx((0.7310585786300049, 0.2689414213699951))
    assert records[2].mu == records[1].mu
    [wide] = read_scored(path, temperature=0.5, mode="best_vs_worst")  # sigmoid(4) = 0.98201...
    assert wide.mu == pytest.approx((0.9820137900379085, 0.01798620996209155))


def test_scored_field_names(tmp_path: Path) -> None:
    row = {
        "instruction": "p",
        "completions": [{"response": "a", "overall_score": 2}, {"text": "b", "overall_score": 1}],
    }
    path = write_jsonl(tmp_path / "uf.jsonl", [row])
    [record] = read_scored(path, prompt_key="instruction", score_key="overall_score")
    assert (record.prompt, record.chosen, record.rejected) == ("p", "a", "b")


def test_scored_options_are_checked(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", SCORED_ROWS)
    with pytest.raises(ValueError, match="mode"):
        read_scored(path, mode="top_k")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="temperature"):
        read_scored(path, temperature=0.0)


# -- records and in-memory rows ---------------------------------------------------------


def test_record_checks() -> None:
    with pytest.raises(ValueError, match="same completion"):
        PreferenceRecord(prompt="p", chosen="a", rejected="a")
    with pytest.raises(ValueError, match="empty"):
        PreferenceRecord(prompt="p", chosen="", rejected="a")
    with pytest.raises(ValueError, match="share"):
        PreferenceRecord(prompt="p", chosen="a", rejected="b", mu=(0.3, 0.7))
    with pytest.raises(ValueError, match="all be plain text"):
        PreferenceRecord(prompt="p", chosen=(assistant("a"),), rejected=(assistant("b"),))
    record = PreferenceRecord(prompt=[user("p")], chosen=[assistant("a")], rejected=[assistant("b")])  # type: ignore[arg-type]
    assert isinstance(record.prompt, tuple) and record.mu == (1.0, 0.0)
    with pytest.raises(TypeError):
        record.prompt[0]["content"] = "changed"  # type: ignore[index]


def test_read_rows_from_a_datasets_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([HH_ROWS[0], HH_ROWS[1]])
    records = read_rows(ds, "hh", source="hh:train")
    assert records == read_hh(write_jsonl(tmp_path / "hh.jsonl", HH_ROWS[:2]))
    assert all(r.source == "hh:train" for r in records)
    with pytest.raises(DataFormatError, match=r"^mem:2: field 'chosen': missing"):
        read_rows([TRL_ROWS[0], {"rejected": "b"}], "trl", source="mem")
    report = read_rows([TRL_ROWS[0], {"rejected": "b"}], "trl", source="mem", skip_bad_rows=True, first_line=0)
    assert (len(report.records), report.skipped, report.records[0].source_line) == (1, 1, 0)


def test_read_rows_copes_with_datasets_filling_missing_fields(tmp_path: Path) -> None:
    """Rows from ``datasets.load_dataset("json")``, where a column missing from a row reads as None."""
    datasets = pytest.importorskip("datasets")
    scored = write_jsonl(tmp_path / "s.jsonl", SCORED_ROWS)
    ds = datasets.load_dataset("json", data_files=str(scored), split="train", cache_dir=str(tmp_path / "cache"))
    assert read_rows(ds, "scored", source="s") == read_scored(scored)
    plain = write_jsonl(tmp_path / "t.jsonl", [row for row in TRL_ROWS if "mu" not in row])
    ds = datasets.load_dataset("json", data_files=str(plain), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds[0]["margin"] is None and ds[2]["prompt"] is None
    assert read_rows(ds, "trl", source="t") == read_trl(plain)
