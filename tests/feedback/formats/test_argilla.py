"""Argilla: pending queries out as datasets its package loads, answers back in as the same records.

Argilla's package loads each dataset's settings (``rg.Settings.from_json``), its
dataset model and its records (``rg.Record.from_dict``), and ``datasets`` reads
the flat records, whose columns must be what the settings declare. Both run
offline: Argilla's objects want a client, which here answers only "who am I".
"""

from __future__ import annotations

import base64
import json
import uuid
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from formats_helpers import PROJECTS, WEBM_MAGIC, fake_video

from rlhfkit.feedback.formats import (
    InteropError,
    Scales,
    export_argilla,
    export_label_studio,
    import_argilla,
)
from rlhfkit.feedback.store import FeedbackStore


def test_argilla_round_trip(queries_store: FeedbackStore, tmp_path: Path) -> None:
    from datasets import load_from_disk

    out = tmp_path / "argilla"
    report = export_argilla(queries_store, out, scales=Scales(rating=(1, 5)))
    assert report.projects == {"comparison": 2, "correction": 1, "label": 1, "language": 1, "ranking": 1, "rating": 1}
    settings = json.loads((out / "comparison" / ".argilla" / "settings.json").read_text())
    assert [f["name"] for f in settings["fields"]] == ["prompt", "a", "b"]
    options = settings["questions"][0]["settings"]["options"]
    assert [o["value"] for o in options] == ["A", "B", "equal", "incomparable"]

    # people answer in Argilla; its records come back with their responses
    ds = load_from_disk(str(out / "comparison")).to_dict()
    ds["preference.responses"] = [["A", "B", "equal"], ["incomparable"]]
    ds["preference.responses.users"] = [["u1", "u2", "u3"], ["u1"]]
    ds["preference.responses.status"] = [["submitted", "submitted", "draft"], ["submitted"]]
    ds["confidence.responses"] = [[7], []]
    ds["confidence.responses.users"] = [["u2"], []]
    ds["confidence.responses.status"] = [["submitted"], []]
    answered = tmp_path / "answered"
    _save_like(out / "comparison", answered, ds)
    report = import_argilla(answered, queries_store, user_names={"u1": "olga"})
    assert report.stored == 3 and report.annotators == ("argilla:olga", "argilla:u2")
    got = {
        (f.query_id, f.annotator_id): f.mu for f in queries_store.comparisons() if f.annotator_id.startswith("argilla")
    }
    assert got == {
        ("c0", "argilla:olga"): (1.0, 0.0),
        ("c0", "argilla:u2"): pytest.approx((0.3, 0.7)),  # B, 70% sure
        ("c1", "argilla:olga"): None,
    }
    assert import_argilla(answered, queries_store, user_names={"u1": "olga"}).duplicates == 3

    ranking = load_from_disk(str(out / "ranking")).to_dict()
    ranking["ranking.responses"] = [[["item_3", "item_1", "item_2"]]]
    ranking["ranking.responses.users"] = [["u1"]]
    ranking["ranking.responses.status"] = [["submitted"]]
    _save_like(out / "ranking", tmp_path / "ranked", ranking)
    assert import_argilla(tmp_path / "ranked", queries_store).stored == 1
    (r,) = queries_store.feedback(kind="ranking")
    assert r.ranked == ("g4", "g2", "g3")  # type: ignore[union-attr]

    rating = load_from_disk(str(out / "rating")).to_dict()
    rating["rating.responses"] = [[9]]  # outside the exported 1..5 scale
    rating["rating.responses.users"] = [["u1"]]
    rating["rating.responses.status"] = [["submitted"]]
    _save_like(out / "rating", tmp_path / "bad", rating)
    with pytest.raises(InteropError, match=r"bad \(row 0\): rating\.responses\[0\]: .*outside its scale"):
        import_argilla(tmp_path / "bad", queries_store, scales=Scales(rating=(1, 5)))
    assert queries_store.feedback(kind="rating") == []


def _save_like(exported: Path, target: Path, table: dict) -> None:
    """Write ``table`` as a dataset with the exported dataset's features and settings."""
    import shutil

    from datasets import Dataset, load_from_disk

    features = load_from_disk(str(exported)).features
    Dataset.from_dict(table, features=features).save_to_disk(str(target))
    shutil.copytree(exported / ".argilla", target / ".argilla")


@pytest.fixture(scope="module")
def argilla_client() -> Any:
    """An Argilla client that works offline: it answers who the user is, and refuses everything else."""
    import argilla as rg

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/me":
            return httpx.Response(200, json={"id": str(uuid.uuid4()), "username": "offline", "role": "owner"})
        return httpx.Response(503, json={"detail": "offline test: no server"})

    return rg.Argilla(
        api_url="http://argilla.invalid", api_key="offline", mounts={"all://": httpx.MockTransport(answer)}
    )


def test_argilla_export_loads_with_argilla_and_datasets(
    mixed_store: FeedbackStore, tmp_path: Path, argilla_client: Any
) -> None:
    import argilla as rg
    from argilla._models import DatasetModel
    from argilla.records._io import GenericIO  # how Argilla itself flattens records for `datasets`
    from datasets import load_from_disk

    out = tmp_path / "argilla"
    report = export_argilla(mixed_store, out, scales=Scales(rating=(1, 5)), render=fake_video)
    assert dict(report.projects) == PROJECTS and report.skipped == ("xs",) and report.media == 4
    for name, count in report.projects.items():
        folder = out / name
        settings = rg.Settings.from_json(folder / ".argilla" / "settings.json")
        DatasetModel(**json.loads((folder / ".argilla" / "dataset.json").read_text()))
        dataset = rg.Dataset(name=f"rlhfkit-{name}", settings=settings, client=argilla_client)
        flat = load_from_disk(str(folder))
        assert len(flat) == count
        fields = [f.name for f in settings.fields]
        questions = [q.name for q in settings.questions]
        metadata = [m.name for m in settings.metadata]
        answers = {
            f"{q}.{suffix}" for q in questions for suffix in ("responses", "responses.users", "responses.status")
        }
        suggestions = {
            f"{q}.{suffix}" for q in questions for suffix in ("suggestion", "suggestion.score", "suggestion.agent")
        }
        assert (
            {"id", *fields, *metadata, *answers}
            <= set(flat.column_names)
            <= {"id", *fields, *metadata, *answers, *suggestions}
        )
        assert metadata == ["round"]  # declared, and a column
        records = json.loads((folder / "records.json").read_text())
        for row, stored in zip(flat, records, strict=True):
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a key Argilla does not know would warn
                record = rg.Record.from_dict(stored, dataset=dataset)
                record.api_model()
            (argilla_flat,) = GenericIO.to_list([record], flatten=True)
            assert {k: row[k] for k in argilla_flat if k in row} == {
                k: v for k, v in argilla_flat.items() if k in row
            }  # the `datasets` rows are the records as Argilla flattens them
            for field in settings.fields:
                if row[field.name] is None and field.name not in stored["fields"]:
                    assert not field.required  # a shorter ranking than the project's longest
                elif name.endswith("-control"):
                    assert isinstance(field, rg.CustomField) and "<video" in field.template
                    src = row[field.name]["src"]
                    assert src.startswith("data:video/webm;base64,")
                    assert base64.b64decode(src.split(",", 1)[1]).startswith(WEBM_MAGIC)
                else:
                    assert isinstance(field, rg.TextField) and isinstance(row[field.name], str)
    by_id = {r["id"]: r for r in load_from_disk(str(out / "correction"))}
    assert by_id["x0"]["correction.suggestion"] == "completion 2 <i>x</i>"  # Argilla pre-fills the edit with it
    ranking = rg.Settings.from_json(out / "ranking" / ".argilla" / "settings.json")
    assert ranking.questions["ranking"].values == ["item_1", "item_2", "item_3"]
    assert [(f.name, f.required) for f in ranking.fields][-2:] == [("item_2", True), ("item_3", False)]  # k1 has 2


def test_argilla_refuses_what_it_cannot_show_before_writing(mixed_store: FeedbackStore, tmp_path: Path) -> None:
    with pytest.raises(InteropError, match=r"rating scale 1\.\.100: Argilla's rating question offers whole numbers"):
        export_argilla(mixed_store, tmp_path / "a", scales=Scales(rating=(1, 100)), render=fake_video)
    with pytest.raises(InteropError, match="4 control segments to show, but no renderer"):
        export_argilla(mixed_store, tmp_path / "a")
    with pytest.raises(InteropError, match="4 control segments to show, but no renderer"):
        export_label_studio(mixed_store, tmp_path / "a")
    assert not (tmp_path / "a").exists()
