"""The one way from a file or rows in memory to records: detection, dispatch, rows from ``datasets``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from formats_helpers import (
    CONVERSATIONAL_ROWS,
    HH_ROWS,
    SCORED_ROWS,
    TRL_ROWS,
    read,
    write_jsonl,
)

from rlhfkit.feedback.formats import (
    DataFormatError,
    PreferenceFormat,
    detect_format,
    preference_file,
    read_hh,
    read_preferences,
    read_rows,
    read_scored,
    read_trl,
)

ROWS: dict[PreferenceFormat, list[Any]] = {
    "trl": TRL_ROWS,
    "trl_conversational": CONVERSATIONAL_ROWS,
    "hh": HH_ROWS,
    "scored": SCORED_ROWS,
}


@pytest.mark.parametrize("format", list(ROWS))
def test_auto_reads_each_format_as_its_own_reader_does(tmp_path: Path, format: PreferenceFormat) -> None:
    path = write_jsonl(tmp_path / f"{format}.jsonl", ROWS[format])
    assert detect_format(path) == format
    report = read_preferences(path)
    assert list(report.records) == read(path, format) and report.skipped == 0 and report.errors == ()
    assert read_preferences(path, format).records == report.records


def test_implicit_prompt_rows_read_as_trl_and_blank_lines_before_the_first_row_are_passed(tmp_path: Path) -> None:
    path = tmp_path / "implicit.jsonl"
    path.write_text("\n\n" + json.dumps(TRL_ROWS[4]) + "\n", encoding="utf-8")
    assert detect_format(path) == "trl"
    [record] = read_preferences(path).records
    assert (record.prompt, record.source_line) == ("", 3)


def test_skip_bad_rows_through_the_dispatch(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [TRL_ROWS[0], {"prompt": "x", "chosen": "a"}, TRL_ROWS[1]])
    with pytest.raises(DataFormatError, match=r"data\.jsonl:2: field 'rejected': missing"):
        read_preferences(path)
    report = read_preferences(path, skip_bad_rows=True)
    assert (len(report.records), report.skipped, report.errors) == (2, 1, (f"{path}:2: field 'rejected': missing",))


def test_what_cannot_be_told_or_read_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"empty\.jsonl: the file holds no rows$"):
        read_preferences(empty)
    listed = write_jsonl(tmp_path / "list.jsonl", [[TRL_ROWS[0]]])
    with pytest.raises(DataFormatError, match=r"list\.jsonl:1: must be a JSON object, got list"):
        detect_format(listed)
    with pytest.raises(ValueError, match="unknown format 'csv'; choose auto, trl, trl_conversational, hh, scored"):
        read_preferences(listed, "csv")  # type: ignore[arg-type]


def test_preference_file_names_the_option(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", TRL_ROWS)
    assert preference_file(str(good), "--data") == str(good)
    with pytest.raises(FileNotFoundError, match=f"^--data {tmp_path / 'missing.jsonl'}: no such file$"):
        preference_file(str(tmp_path / "missing.jsonl"), "--data")
    with pytest.raises(FileNotFoundError, match=f"^--eval-data {tmp_path}: a folder; give a preference file"):
        preference_file(str(tmp_path), "--eval-data")


def test_read_rows_from_a_datasets_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([HH_ROWS[0], HH_ROWS[1]])
    records = read_rows(ds, "hh", source="hh:train").records
    assert records == read_hh(write_jsonl(tmp_path / "hh.jsonl", HH_ROWS[:2])).records
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
    assert read_rows(ds, "scored", source="s").records == read_scored(scored).records
    plain = write_jsonl(tmp_path / "t.jsonl", [row for row in TRL_ROWS if "mu" not in row])
    ds = datasets.load_dataset("json", data_files=str(plain), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds[0]["margin"] is None and ds[2]["prompt"] is None
    assert read_rows(ds, "trl", source="t").records == read_trl(plain).records
