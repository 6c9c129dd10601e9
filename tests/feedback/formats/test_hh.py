"""HH-RLHF transcripts: read, stored, exported byte for byte, and a prompt that differs between the two."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from formats_helpers import (
    HH_ROWS,
    assistant,
    hh,
    roundtrip,
    user,
    write_jsonl,
)

from rlhfkit.feedback.formats import (
    DataFormatError,
    read_hh,
)
from rlhfkit.feedback.store import FeedbackStore


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


def test_hh_mismatched_prefix_is_an_error(tmp_path: Path) -> None:
    row = {
        "chosen": hh("Hi", "Hello!", "Tell me a joke", "A joke."),
        "rejected": hh("Hi", "Go away.", "Tell me a joke", "No."),
    }
    path = write_jsonl(tmp_path / "hh.jsonl", [row])
    with pytest.raises(DataFormatError, match=r"hh\.jsonl:1: field 'rejected': .*differ from 'chosen' from turn 2"):
        read_hh(path)
