"""The one way from a file or rows in memory to records: detection, dispatch, rows from ``datasets``."""

from __future__ import annotations

from pathlib import Path

import pytest
from formats_helpers import (
    HH_ROWS,
    SCORED_ROWS,
    TRL_ROWS,
    write_jsonl,
)

from rlhfkit.feedback.formats import (
    DataFormatError,
    read_hh,
    read_rows,
    read_scored,
    read_trl,
)


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
