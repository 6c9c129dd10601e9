"""The exports load with the tools' own packages, with every video they refer to in place.

Label Studio's SDK (``label_studio_sdk.label_interface.LabelInterface``) parses
and validates each project's labelling config and checks each task against it;
Argilla's package loads each dataset's settings (``rg.Settings.from_json``), its
dataset model and its records (``rg.Record.from_dict``), and ``datasets`` reads
the flat records, whose columns must be what the settings declare. Both run
offline: Argilla's objects want a client, which here answers only "who am I".
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from rlhfkit.feedback.formats import InteropError, Scales, export_argilla, export_label_studio
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.types import Generation, Query, Segment, Text

WEBM_MAGIC = b"\x1a\x45\xdf\xa3"  # the EBML header every WebM file starts with


def fake_video(g: Generation) -> bytes:
    """A stand-in renderer: bytes that name the generation (the real one is tested through the command line)."""
    return WEBM_MAGIC + f"video of {g.id}".encode()


def _segment(seed: int) -> Segment:
    rng = np.random.default_rng(seed)
    return Segment(rng.normal(size=(5, 3)), rng.normal(size=(5, 1)), rng.normal(size=5), info={"env_id": "Pendulum-v1"})


@pytest.fixture
def store(tmp_path: Path) -> FeedbackStore:
    """Text queries of every kind (completions of one prompt per query) and control ones of three kinds."""
    s = FeedbackStore.in_dir(tmp_path / "run")
    texts = [Generation(f"g{i}", 1, "r", Text(f"prompt {i // 3}", f"completion {i} <i>x</i>")) for i in range(6)]
    s.add_generations([*texts, *(Generation(f"s{i}", 1, "r", _segment(i)) for i in range(4))])
    s.add_queries(
        [
            Query("c0", ("g0", "g1"), 1, created_at=1.0),
            Query("r0", ("g0",), 1, kind="rating", created_at=2.0),
            Query("l0", ("g1",), 1, kind="label", created_at=3.0),
            Query("k0", ("g3", "g4", "g5"), 1, kind="ranking", created_at=4.0),
            Query("k1", ("g0", "g1"), 1, kind="ranking", created_at=4.5),
            Query("t0", ("g3", "g4"), 1, kind="language", created_at=5.0),
            Query("x0", ("g2",), 1, kind="correction", created_at=6.0),
            Query("cs", ("s0", "s1"), 2, created_at=7.0),
            Query("rs", ("s2",), 2, kind="rating", created_at=8.0),
            Query("ks", ("s1", "s2", "s3"), 2, kind="ranking", created_at=9.0),
            Query("xs", ("s3",), 2, kind="correction", created_at=10.0),  # no tool can answer it: left out
        ]
    )
    return s


PROJECTS = {
    "comparison": 1,
    "comparison-control": 1,
    "correction": 1,
    "label": 1,
    "language": 1,
    "ranking": 2,
    "ranking-control": 1,
    "rating": 1,
    "rating-control": 1,
}


def test_label_studio_export_loads_with_its_sdk_and_every_video_is_there(store: FeedbackStore, tmp_path: Path) -> None:
    from label_studio_sdk.label_interface import LabelInterface

    out = tmp_path / "ls"
    report = export_label_studio(store, out, scales=Scales(labels=('"quoted"', "a & b")), render=fake_video)
    assert dict(report.projects) == PROJECTS and report.skipped == ("xs",) and report.media == 4
    referenced: set[str] = set()
    for name, count in report.projects.items():
        config = (out / name / "label_config.xml").read_text(encoding="utf-8")
        interface = LabelInterface(config)
        interface.validate()  # the config's schema, unique names, every toName
        tasks = json.loads((out / name / "tasks.json").read_text(encoding="utf-8"))
        assert len(tasks) == count
        for task in tasks:
            assert interface.validate_task(task), (name, task)  # every $variable the config shows is in the data
            data = task["data"]
            videos = [v for v in data.values() if isinstance(v, str) and v.endswith(".webm")]
            videos += [m for item in data.get("items", []) for m in re.findall(r'src="([^"]+)"', item.get("html", ""))]
            assert bool(videos) == name.endswith("-control")
            referenced.update(videos)
        assert config.count('name="prompt"') == (0 if name.endswith("-control") else 1)  # the prompt shows once
    for path in referenced:  # every video a task refers to resolves from the export folder, and is the render
        assert (out / path).read_bytes() == fake_video(store.generations([Path(path).stem])[Path(path).stem])
    assert {p.name for p in (out / "media").iterdir()} == {"s0.webm", "s1.webm", "s2.webm", "s3.webm"}
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "media" / "s0.webm").stat().st_mode & 0o777 == 0o666 & ~umask  # a web server may read them

    ranking = LabelInterface((out / "ranking" / "label_config.xml").read_text())
    assert ranking.get_control("ranking").tag == "Ranker" and ranking.get_object("items").tag == "List"
    k0, _k1 = json.loads((out / "ranking" / "tasks.json").read_text())
    assert [i["id"] for i in k0["data"]["items"]] == ["g3", "g4", "g5"] and k0["data"]["prompt"] == "prompt 1"
    assert k0["data"]["items"][0]["body"] == "completion 3 <i>x</i>"
    correction = (out / "correction" / "label_config.xml").read_text()
    assert re.search(r'<TextArea name="correction"[^>]* value="\$item"', correction)  # pre-filled with the completion
    (x0,) = json.loads((out / "correction" / "tasks.json").read_text())
    assert x0["data"]["item"] == "completion 2 <i>x</i>"
    label = LabelInterface((out / "label" / "label_config.xml").read_text())
    assert label.get_control("label").labels == ['"quoted"', "a & b", "none of these"]


def test_label_studio_rating_config_follows_the_scale(store: FeedbackStore, tmp_path: Path) -> None:
    from label_studio_sdk.label_interface import LabelInterface

    for scale, tag in (((1, 5), "Rating"), ((-2, 2), "Number")):
        out = tmp_path / f"ls{scale[0]}"
        export_label_studio(store, out, kinds=["rating"], scales=Scales(rating=scale), render=fake_video)
        interface = LabelInterface((out / "rating" / "label_config.xml").read_text())
        interface.validate()
        assert interface.get_control("rating").tag == tag


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
    store: FeedbackStore, tmp_path: Path, argilla_client: Any
) -> None:
    import argilla as rg
    from argilla._models import DatasetModel
    from argilla.records._io import GenericIO  # how Argilla itself flattens records for `datasets`
    from datasets import load_from_disk

    out = tmp_path / "argilla"
    report = export_argilla(store, out, scales=Scales(rating=(1, 5)), render=fake_video)
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


def test_argilla_refuses_what_it_cannot_show_before_writing(store: FeedbackStore, tmp_path: Path) -> None:
    with pytest.raises(InteropError, match=r"rating scale 1\.\.100: Argilla's rating question offers whole numbers"):
        export_argilla(store, tmp_path / "a", scales=Scales(rating=(1, 100)), render=fake_video)
    with pytest.raises(InteropError, match="4 control segments to show, but no renderer"):
        export_argilla(store, tmp_path / "a")
    with pytest.raises(InteropError, match="4 control segments to show, but no renderer"):
        export_label_studio(store, tmp_path / "a")
    assert not (tmp_path / "a").exists()
