"""Loop-control state as typed store methods (rlhfkit.feedback.store.control), on SQLite and PostgreSQL.

The loop and the app share three values through the store: the pause, the loop's
status and the annotation settings. They are read and written only through the
store's typed methods, under the keys earlier versions wrote (so older run
folders keep their state), and no other module names those keys.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_backends import BACKENDS, backend_store

import rlhfkit
from rlhfkit.feedback.store import AnnotationSettings, FeedbackStore, LoopStatus


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeedbackStore]:
    with backend_store(request.param, tmp_path / "feedback.sqlite") as s:
        yield s


def test_nothing_is_set_in_a_new_store(store: FeedbackStore) -> None:
    assert store.paused() is False
    assert store.loop_status() is None
    assert store.read_annotation_settings() is None


def test_the_pause_is_the_value_older_versions_wrote(store: FeedbackStore) -> None:
    store.set_paused(True)
    assert store.paused() is True and store.control("paused") is True
    store.set_paused(False)
    assert store.paused() is False and store.control("paused") is False
    store.set_control("paused", True)  # as a store written before the typed methods holds it
    assert store.paused() is True


def test_the_loop_status_round_trips_and_reads_what_older_versions_wrote(store: FeedbackStore) -> None:
    status = LoopStatus(3, "waiting for answers", updated_at=12.5, answers=4, needed=10)
    store.set_loop_status(status)
    assert store.loop_status() == status
    assert store.control("loop_status") == {
        "round": 3,
        "phase": "waiting for answers",
        "updated_at": 12.5,
        "answers": 4,
        "needed": 10,
    }
    store.set_loop_status(LoopStatus(4, "optimising", updated_at=13.0))
    assert store.control("loop_status") == {"round": 4, "phase": "optimising", "updated_at": 13.0}
    store.set_control("loop_status", {"round": 2, "phase": "paused", "updated_at": 1})
    assert store.loop_status() == LoopStatus(2, "paused", 1.0)
    for not_a_status in ["busy", {"round": "2", "phase": "x", "updated_at": 1.0}, {"phase": "x"}, [1, 2]]:
        store.set_control("loop_status", not_a_status)
        assert store.loop_status() is None, not_a_status


def test_the_annotation_settings_round_trip_and_malformed_ones_name_the_field(store: FeedbackStore) -> None:
    settings = AnnotationSettings("Be brief.", (0.0, 10.0), ("poor", "fine", "great"), label_ordinal=False, task="t")
    store.write_annotation_settings(settings)
    assert store.read_annotation_settings() == settings
    assert store.control("annotation_settings")["label_choices"] == ["poor", "fine", "great"]
    store.set_control("annotation_settings", {"rating_scale": [1, 7]})
    with pytest.raises(ValueError, match="annotation_settings: missing field 'label_choices'"):
        store.read_annotation_settings()


def _calls_outside_the_store(names: set[str]) -> list[str]:
    src = Path(rlhfkit.__file__).parent
    found = []
    for path in sorted(src.rglob("*.py")):
        if path.is_relative_to(src / "feedback" / "store"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names:
                found.append(f"{path.relative_to(src)}:{node.lineno} {node.func.attr}")
    return found


def test_only_the_store_reads_and_writes_loop_control_by_key() -> None:
    """The loop and the app use the typed methods; the keys are the store's own."""
    assert _calls_outside_the_store({"set_control", "control"}) == []
