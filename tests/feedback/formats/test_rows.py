"""Rows of a preference file: a bad row is named by file, line and field, or skipped and counted."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from formats_helpers import (
    CONVERSATIONAL_ROWS,
    HH_ROWS,
    SCORED_ROWS,
    TRL_ROWS,
    assistant,
    hh,
    read,
    user,
    write_jsonl,
)

from rlhfkit.feedback.formats import (
    DataFormatError,
    ImportReport,
    PreferenceFormat,
    read_trl,
)

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


def test_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("\n" + json.dumps(TRL_ROWS[0]) + "\n\n" + json.dumps(TRL_ROWS[1]) + "\n\n", encoding="utf-8")
    assert [r.source_line for r in read_trl(path).records] == [2, 4]
