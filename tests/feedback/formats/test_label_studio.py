"""Label Studio: pending queries out as projects its SDK loads, answers back in as the same records.

Label Studio's SDK (``label_studio_sdk.label_interface.LabelInterface``) parses
and validates each project's labelling config and checks each task against it;
a bad row of its export stops the import, named, with nothing stored.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from formats_helpers import PROJECTS, fake_video

from rlhfkit.feedback.formats import (
    InteropError,
    Scales,
    export_label_studio,
    import_label_studio,
)
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback_records import Correction, Label, Language, Ranking, Rating


def _ls_annotations(task: dict) -> list[dict]:
    """Label Studio's export of each exported task, answered by users 7 and 9 (regions as it writes them)."""
    d = task["data"]
    kind = d["kind"]

    def region(from_name: str, to_name: str, type_: str, value: dict) -> dict:
        return {"from_name": from_name, "to_name": to_name, "type": type_, "value": value}

    if kind == "comparison":
        first = [region("preference", "a", "choices", {"choices": ["B"]})]
        second = [
            region("preference", "a", "choices", {"choices": ["A"]}),
            region("confidence", "a", "number", {"number": 0.8}),
        ]
        return [{"completed_by": 7, "result": first}, {"completed_by": {"id": 9, "email": "nina@x"}, "result": second}]
    result = {
        "rating": [region("rating", "item", "rating", {"rating": 6})],
        "label": [region("label", "item", "choices", {"choices": ["good"]})],
        "ranking": [region("ranking", "items", "ranker", {"ranker": {"ranking": ["g4", "g2", "g3"]}})],
        "language": [region("comment", "a", "textarea", {"text": ["less <b>shouting</b>"]})],
        "correction": [region("correction", "prompt", "textarea", {"text": ["a better completion"]})],
    }[kind]
    return [{"completed_by": 7, "result": result}, {"completed_by": 9, "was_cancelled": True, "result": []}]


def _ls_tasks(out: Path) -> list[dict]:
    """Every exported task, project by project (``OUT/KIND/tasks.json``), in query order."""
    tasks = [t for p in sorted(out.glob("*/tasks.json")) for t in json.loads(p.read_text(encoding="utf-8"))]
    return sorted(tasks, key=lambda t: ["c0", "c1", "r0", "l0", "k0", "t0", "x0"].index(t["data"]["query_id"]))


def test_label_studio_round_trip(queries_store: FeedbackStore, tmp_path: Path) -> None:
    from label_studio_sdk.label_interface import LabelInterface

    out = tmp_path / "ls"
    report = export_label_studio(queries_store, out)
    assert report.total == 7 and report.media == 0 and report.skipped == ()
    assert report.projects == {"comparison": 2, "correction": 1, "label": 1, "language": 1, "ranking": 1, "rating": 1}
    assert {p.name for p in out.iterdir()} == set(report.projects)  # one project per kind; no media for text
    tasks = _ls_tasks(out)
    assert tasks[0]["data"]["a"] == "completion 0 <script>x</script>"
    assert tasks[0]["data"]["prompt"] == "[a] prompt <0>\n\n[b] prompt <1>"  # two prompts: each shown once, named
    assert tasks[2]["data"]["scale"] == [1.0, 7.0] and tasks[3]["data"]["choices"] == ["bad", "good"]
    config = (out / "comparison" / "label_config.xml").read_text()
    assert '<Choices name="preference"' in config and '<Number name="confidence"' in config

    # the answers below are in the shape Label Studio writes for these interfaces: its SDK accepts every region
    for t in tasks:
        interface = LabelInterface((out / t["data"]["kind"] / "label_config.xml").read_text())
        for annotation in _ls_annotations(t):
            if not annotation.get("was_cancelled"):
                assert interface.validate_prediction(annotation, return_errors=True) == [], annotation
    answered = out / "export.json"
    answered.write_text(
        json.dumps([{**t, "id": i, "annotations": _ls_annotations(t)} for i, t in enumerate(tasks)], indent=2)
    )
    report = import_label_studio(answered, queries_store)
    assert report.stored == 9 and report.duplicates == 0
    assert len(report.records) == 9 and {f.annotator_id for f in report.records} == set(report.annotators)
    assert report.annotators == ("labelstudio:7", "labelstudio:nina@x")
    c = {(f.query_id, f.annotator_id): f for f in queries_store.feedback(kind="comparison")}
    assert c[("c0", "labelstudio:7")].mu == (0.0, 1.0)
    assert c[("c0", "labelstudio:nina@x")].answer.value == "graded"
    assert c[("c0", "labelstudio:nina@x")].mu == pytest.approx((0.8, 0.2))
    (rating,) = queries_store.feedback(kind="rating")
    assert isinstance(rating, Rating) and rating.value == 6.0 and rating.scale == (1.0, 7.0)
    (label,) = queries_store.feedback(kind="label")
    assert isinstance(label, Label) and label.label == "good"
    (ranking,) = queries_store.feedback(kind="ranking")
    assert isinstance(ranking, Ranking) and ranking.ranked == ("g4", "g2", "g3")
    (comment,) = queries_store.feedback(kind="language")
    assert isinstance(comment, Language) and comment.utterance == "less <b>shouting</b>"
    (fix,) = queries_store.feedback(kind="correction")
    assert isinstance(fix, Correction) and fix.corrected.completion == "a better completion"  # type: ignore[union-attr]
    assert fix.corrected.prompt == "prompt <3>"  # type: ignore[union-attr]
    assert {a.id: a.kind for a in queries_store.annotators()}["labelstudio:7"] == "person"

    again = import_label_studio(answered, queries_store)  # the same file twice stores nothing new
    assert again.stored == 0 and again.duplicates == 9
    assert sorted(f.query_id for f in again.records) == sorted(f.query_id for f in report.records)
    assert export_label_studio(queries_store, tmp_path / "ls2").total == 0  # nothing is pending any more
    assert not (tmp_path / "ls2").exists()


def _answered_export(store: FeedbackStore, tmp_path: Path) -> list[dict]:
    out = tmp_path / "ls"
    export_label_studio(store, out, kinds=["comparison", "rating"])
    return [{**t, "annotations": _ls_annotations(t)} for t in _ls_tasks(out)]


@pytest.mark.parametrize(
    ("damage", "where"),
    [
        (lambda rows: rows[1]["annotations"][0]["result"][0]["value"].update(choices=["C"]), "task 1"),
        (lambda rows: rows[2]["data"].update(query_id="gone"), "data.query_id"),
        (lambda rows: rows[2]["annotations"][0]["result"][0]["value"].update(rating=9), "outside its scale"),
        (lambda rows: rows[0]["annotations"][1]["result"][1]["value"].update(number=0.2), "confidence"),
        (lambda rows: rows[1]["annotations"][0].pop("completed_by"), "completed_by"),
        (lambda rows: rows[1]["annotations"][0].update(result=[]), "holds no answer"),
    ],
)
def test_label_studio_bad_row_names_file_line_field_and_stores_nothing(
    queries_store: FeedbackStore, tmp_path: Path, damage: object, where: str
) -> None:
    rows = _answered_export(queries_store, tmp_path)
    damage(rows)  # type: ignore[operator]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(rows, indent=2))
    before = queries_store.count_feedback()
    with pytest.raises(InteropError) as e:
        import_label_studio(path, queries_store)
    message = str(e.value)
    assert message.startswith(f"{path}:") and where in message, message
    line = int(message.split(":")[1].split()[0])
    assert path.read_text().splitlines()[line - 1].strip() == "{"  # the line where that task starts
    assert queries_store.count_feedback() == before


def test_label_studio_broken_json_names_the_line(queries_store: FeedbackStore, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n {"data": {"query_id": "c0"}, "annotations": []},\n {"data": \n')
    with pytest.raises(InteropError, match=r"broken\.json:\d+: not valid JSON"):
        import_label_studio(path, queries_store)


def test_label_studio_export_loads_with_its_sdk_and_every_video_is_there(
    mixed_store: FeedbackStore, tmp_path: Path
) -> None:
    from label_studio_sdk.label_interface import LabelInterface

    out = tmp_path / "ls"
    report = export_label_studio(mixed_store, out, scales=Scales(labels=('"quoted"', "a & b")), render=fake_video)
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
        assert (out / path).read_bytes() == fake_video(mixed_store.generations([Path(path).stem])[Path(path).stem])
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


def test_label_studio_rating_config_follows_the_scale(mixed_store: FeedbackStore, tmp_path: Path) -> None:
    from label_studio_sdk.label_interface import LabelInterface

    for scale, tag in (((1, 5), "Rating"), ((-2, 2), "Number")):
        out = tmp_path / f"ls{scale[0]}"
        export_label_studio(mixed_store, out, kinds=["rating"], scales=Scales(rating=scale), render=fake_video)
        interface = LabelInterface((out / "rating" / "label_config.xml").read_text())
        interface.validate()
        assert interface.get_control("rating").tag == tag
