"""Label Studio and Argilla: pending queries out, answers back in as the same records; bad rows stop everything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhfkit.feedback.formats import (
    InteropError,
    Scales,
    export_argilla,
    export_label_studio,
    import_argilla,
    import_label_studio,
)
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.types import Comparison, Correction, Generation, Label, Language, Query, Ranking, Rating, Text


@pytest.fixture
def store(tmp_path: Path) -> FeedbackStore:
    s = FeedbackStore.in_dir(tmp_path / "run")
    gens = [
        Generation(f"g{i}", 1, "round-0", Text(f"prompt <{i}>", f"completion {i} <script>x</script>")) for i in range(6)
    ]
    s.add_generations(gens)
    s.add_queries(
        [
            Query("c0", ("g0", "g1"), 1, created_at=1.0),
            Query("c1", ("g2", "g3"), 1, created_at=2.0),
            Query("c2", ("g4", "g5"), 1, created_at=3.0),
            Query("r0", ("g0",), 1, kind="rating", created_at=4.0),
            Query("l0", ("g1",), 1, kind="label", created_at=5.0),
            Query("k0", ("g2", "g3", "g4"), 1, kind="ranking", created_at=6.0),
            Query("t0", ("g0", "g5"), 1, kind="language", created_at=7.0),
            Query("x0", ("g3",), 1, kind="correction", created_at=8.0),
        ]
    )
    s.record(Comparison.make("c2", "A", "someone"))  # answered already: not exported
    return s


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


def test_label_studio_round_trip(store: FeedbackStore, tmp_path: Path) -> None:
    from label_studio_sdk.label_interface import LabelInterface

    out = tmp_path / "ls"
    report = export_label_studio(store, out)
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
    report = import_label_studio(answered, store)
    assert report.stored == 9 and report.duplicates == 0
    assert report.annotators == ("labelstudio:7", "labelstudio:nina@x")
    c = {(f.query_id, f.annotator_id): f for f in store.feedback(kind="comparison")}
    assert c[("c0", "labelstudio:7")].mu == (0.0, 1.0)
    assert c[("c0", "labelstudio:nina@x")].answer.value == "graded"
    assert c[("c0", "labelstudio:nina@x")].mu == pytest.approx((0.8, 0.2))
    (rating,) = store.feedback(kind="rating")
    assert isinstance(rating, Rating) and rating.value == 6.0 and rating.scale == (1.0, 7.0)
    (label,) = store.feedback(kind="label")
    assert isinstance(label, Label) and label.label == "good"
    (ranking,) = store.feedback(kind="ranking")
    assert isinstance(ranking, Ranking) and ranking.ranked == ("g4", "g2", "g3")
    (comment,) = store.feedback(kind="language")
    assert isinstance(comment, Language) and comment.utterance == "less <b>shouting</b>"
    (fix,) = store.feedback(kind="correction")
    assert isinstance(fix, Correction) and fix.corrected.completion == "a better completion"  # type: ignore[union-attr]
    assert fix.corrected.prompt == "prompt <3>"  # type: ignore[union-attr]
    assert {a.id: a.kind for a in store.annotators()}["labelstudio:7"] == "person"

    again = import_label_studio(answered, store)  # the same file twice stores nothing new
    assert again.stored == 0 and again.duplicates == 9
    assert export_label_studio(store, tmp_path / "ls2").total == 0  # nothing is pending any more
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
    store: FeedbackStore, tmp_path: Path, damage: object, where: str
) -> None:
    rows = _answered_export(store, tmp_path)
    damage(rows)  # type: ignore[operator]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(rows, indent=2))
    before = store.count_feedback()
    with pytest.raises(InteropError) as e:
        import_label_studio(path, store)
    message = str(e.value)
    assert message.startswith(f"{path}:") and where in message, message
    line = int(message.split(":")[1].split()[0])
    assert path.read_text().splitlines()[line - 1].strip() == "{"  # the line where that task starts
    assert store.count_feedback() == before


def test_label_studio_broken_json_names_the_line(store: FeedbackStore, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n {"data": {"query_id": "c0"}, "annotations": []},\n {"data": \n')
    with pytest.raises(InteropError, match=r"broken\.json:\d+: not valid JSON"):
        import_label_studio(path, store)


def test_argilla_round_trip(store: FeedbackStore, tmp_path: Path) -> None:
    from datasets import load_from_disk

    out = tmp_path / "argilla"
    report = export_argilla(store, out, scales=Scales(rating=(1, 5)))
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
    report = import_argilla(answered, store, user_names={"u1": "olga"})
    assert report.stored == 3 and report.annotators == ("argilla:olga", "argilla:u2")
    got = {(f.query_id, f.annotator_id): f.mu for f in store.comparisons() if f.annotator_id.startswith("argilla")}
    assert got == {
        ("c0", "argilla:olga"): (1.0, 0.0),
        ("c0", "argilla:u2"): pytest.approx((0.3, 0.7)),  # B, 70% sure
        ("c1", "argilla:olga"): None,
    }
    assert import_argilla(answered, store, user_names={"u1": "olga"}).duplicates == 3

    ranking = load_from_disk(str(out / "ranking")).to_dict()
    ranking["ranking.responses"] = [[["item_3", "item_1", "item_2"]]]
    ranking["ranking.responses.users"] = [["u1"]]
    ranking["ranking.responses.status"] = [["submitted"]]
    _save_like(out / "ranking", tmp_path / "ranked", ranking)
    assert import_argilla(tmp_path / "ranked", store).stored == 1
    (r,) = store.feedback(kind="ranking")
    assert r.ranked == ("g4", "g2", "g3")  # type: ignore[union-attr]

    rating = load_from_disk(str(out / "rating")).to_dict()
    rating["rating.responses"] = [[9]]  # outside the exported 1..5 scale
    rating["rating.responses.users"] = [["u1"]]
    rating["rating.responses.status"] = [["submitted"]]
    _save_like(out / "rating", tmp_path / "bad", rating)
    with pytest.raises(InteropError, match=r"bad \(row 0\): rating\.responses\[0\]: .*outside its scale"):
        import_argilla(tmp_path / "bad", store, scales=Scales(rating=(1, 5)))
    assert store.feedback(kind="rating") == []


def _save_like(exported: Path, target: Path, table: dict) -> None:
    """Write ``table`` as a dataset with the exported dataset's features and settings."""
    import shutil

    from datasets import Dataset, load_from_disk

    features = load_from_disk(str(exported)).features
    Dataset.from_dict(table, features=features).save_to_disk(str(target))
    shutil.copytree(exported / ".argilla", target / ".argilla")
