"""`rlhfkit export` and `rlhfkit import`: pending queries out to Label Studio / Argilla, answers back in the store."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from apphelpers import fill
from datasets import load_from_disk

from rlhfkit.cli import main
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback_records import Rating
from rlhfkit.types import Query


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder with four pending comparisons (three text, one control) and a text rating query."""
    run = tmp_path / "run"
    store = FeedbackStore.in_dir(run)
    fill(store, n_text=3, n_control=1)
    store.add_queries([Query("r0", ("t1a",), 1, kind="rating", created_at=3000.0)])
    store.close()
    return run


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command; its exit code, stdout and stderr (what came before, such as progress bars, left out)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _count(run_dir: Path) -> int:
    store = FeedbackStore.in_dir(run_dir)
    try:
        return store.count_feedback()
    finally:
        store.close()


WEBM_MAGIC = b"\x1a\x45\xdf\xa3"  # the EBML header every WebM file starts with


def _ls_answered(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The exported tasks of every project as Label Studio's JSON export gives them back, answered by user 7."""
    out = tmp_path / "ls"
    code, stdout, _ = _cli(
        capsys, "export", str(run_dir), "--format", "labelstudio", "--out", str(out), "--rating-scale", "1,5"
    )
    projects = f"{out / 'comparison'} (3), {out / 'comparison-control'} (1), {out / 'rating'} (1)"
    assert code == 0 and f"wrote 5 Label Studio tasks, one project per folder: {projects}" in stdout, stdout
    assert f"2 videos in {out / 'media'}, referred to as 'media/<generation id>.webm'" in stdout, stdout
    tasks = [
        t
        for p in ("comparison", "comparison-control", "rating")
        for t in json.loads((out / p / "tasks.json").read_text())
    ]
    choices = iter(["A", "B", "equal", "incomparable"])
    for t in tasks:
        if t["data"]["kind"] == "rating":
            result = [{"from_name": "rating", "to_name": "item", "type": "rating", "value": {"rating": 4}}]
        else:
            result = [
                {"from_name": "preference", "to_name": "a", "type": "choices", "value": {"choices": [next(choices)]}}
            ]
        t["annotations"] = [{"completed_by": 7, "result": result}]
    return tasks


def test_label_studio_export_renders_every_video_its_tasks_show(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ls"
    code, stdout, _ = _cli(capsys, "export", str(run_dir), "--format", "labelstudio", "--out", str(out))
    assert code == 0, stdout
    (task,) = json.loads((out / "comparison-control" / "tasks.json").read_text())
    assert (task["data"]["a"], task["data"]["b"]) == ("media/c0a.webm", "media/c0b.webm")
    for video in (out / task["data"]["a"], out / task["data"]["b"]):  # paths resolve from the export folder
        assert video.read_bytes().startswith(WEBM_MAGIC) and video.stat().st_size > 1000
    assert (run_dir / "media" / "c0a.webm").read_bytes() == (out / "media" / "c0a.webm").read_bytes()  # the app's cache

    url = "/data/local-files/?d=export/media/"
    code, stdout, _ = _cli(
        capsys, "export", str(run_dir), "--format", "labelstudio", "--out", str(out), "--media-url", url
    )
    (task,) = json.loads((out / "comparison-control" / "tasks.json").read_text())
    assert code == 0 and task["data"]["a"] == f"{url}c0a.webm" and f"'{url}<generation id>.webm'" in stdout


def test_label_studio_round_trip_and_duplicates(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = _ls_answered(run_dir, tmp_path, capsys)
    assert [t["data"]["query_id"] for t in tasks] == ["q0", "q1", "q2", "k0", "r0"]
    answered = tmp_path / "answered.json"
    answered.write_text(json.dumps(tasks, indent=1), encoding="utf-8")
    args = ["import", str(run_dir), "--format", "labelstudio", "--data", str(answered), "--rating-scale", "1,5"]

    code, out, err = _cli(capsys, *args)
    assert code == 0 and err == ""
    assert "stored 5 answers, 0 duplicates" in out and "labelstudio:7" in out, out
    store = FeedbackStore.in_dir(run_dir)
    mu = {f.query_id: f.mu for f in store.comparisons()}
    assert mu == {"q0": (1.0, 0.0), "q1": (0.0, 1.0), "q2": (0.5, 0.5), "k0": None}
    (rating,) = store.feedback(kind="rating")
    assert isinstance(rating, Rating) and rating.value == 4.0 and rating.scale == (1.0, 5.0)
    assert rating.annotator_id == "labelstudio:7"
    store.close()

    code, out, _ = _cli(capsys, *args)  # the same file again: every answer is a duplicate
    assert code == 0 and "stored 0 answers, 5 duplicates" in out, out
    assert _count(run_dir) == 5
    code, out, _ = _cli(capsys, "export", str(run_dir), "--format", "labelstudio", "--out", str(tmp_path / "ls2"))
    assert code == 0 and "no pending queries: nothing written" in out  # nothing is pending any more


def test_label_studio_bad_row_is_named_and_nothing_is_stored(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = _ls_answered(run_dir, tmp_path, capsys)
    tasks[2]["annotations"][0]["result"][0]["value"]["choices"] = ["C"]  # q2: not an answer; q0, q1 are fine
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tasks, indent=1), encoding="utf-8")

    code, out, err = _cli(capsys, "import", str(run_dir), "--format", "labelstudio", "--data", str(bad))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"rlhfkit: error: {bad}:"), err
    line = int(err.removeprefix(f"rlhfkit: error: {bad}:").split()[0])
    assert bad.read_text(encoding="utf-8").splitlines()[line - 1].strip() == "{"  # where task 2 starts
    assert "(task 2): annotations[0].result: 'C' is not one of" in err, err
    assert _count(run_dir) == 0

    missing = tmp_path / "missing.json"
    code, _, err = _cli(capsys, "import", str(run_dir), "--format", "labelstudio", "--data", str(missing))
    assert code == 2 and f"{missing}: no such file" in err
    code, _, err = _cli(capsys, "import", str(tmp_path / "typo"), "--format", "labelstudio", "--data", str(bad))
    assert code == 2 and "not a run folder" in err


def _argilla_answer(exported: Path, target: Path, responses: dict[str, list[list[Any]]]) -> None:
    """The exported dataset ``exported`` as Argilla gives it back, with user u1's responses: ``to_datasets()`` saved
    to ``target`` (no settings beside it)."""
    from datasets import Dataset

    ds = load_from_disk(str(exported))
    table = ds.to_dict()
    for question, values in responses.items():
        table[f"{question}.responses"] = values
        table[f"{question}.responses.users"] = [["u1"] * len(v) for v in values]
        table[f"{question}.responses.status"] = [["submitted"] * len(v) for v in values]
    Dataset.from_dict(table, features=ds.features).save_to_disk(str(target))


def test_argilla_round_trip_all_or_nothing_over_the_folder(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "argilla"
    code, stdout, _ = _cli(
        capsys, "export", str(run_dir), "--format", "argilla", "--out", str(out), "--rating-scale", "1,5"
    )
    projects = f"{out / 'comparison'} (3), {out / 'comparison-control'} (1), {out / 'rating'} (1)"
    assert code == 0 and f"wrote 5 Argilla records, one project per folder: {projects}" in stdout, stdout
    assert "2 videos embedded in the records" in stdout
    (control,) = load_from_disk(str(out / "comparison-control"))
    for side in ("a", "b"):
        src = control[side]["src"]
        assert src.startswith("data:video/webm;base64,") and base64.b64decode(src.split(",")[1]).startswith(WEBM_MAGIC)
    comparisons = {"preference": [["A"], ["B"], ["equal"]]}

    # a rating outside the 1..5 scale in one dataset: the other datasets' good answers are not stored either
    bad = tmp_path / "bad"
    _argilla_answer(out / "comparison", bad / "comparison", comparisons)
    _argilla_answer(out / "comparison-control", bad / "comparison-control", {"preference": [["incomparable"]]})
    _argilla_answer(out / "rating", bad / "rating", {"rating": [[9]]})
    code, stdout, err = _cli(
        capsys, "import", str(run_dir), "--format", "argilla", "--data", str(bad), "--rating-scale", "1,5"
    )
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert f"{bad / 'rating'} (row 0): rating.responses[0]: " in err and "outside its scale" in err, err
    assert _count(run_dir) == 0

    good = tmp_path / "good"
    _argilla_answer(out / "comparison", good / "comparison", comparisons)
    _argilla_answer(out / "comparison-control", good / "comparison-control", {"preference": [["incomparable"]]})
    _argilla_answer(out / "rating", good / "rating", {"rating": [[4]]})
    args = ["import", str(run_dir), "--format", "argilla", "--data", str(good), "--rating-scale", "1,5"]
    code, stdout, _ = _cli(capsys, *args)
    assert code == 0 and "stored 5 answers, 0 duplicates" in stdout and "argilla:u1" in stdout, stdout
    store = FeedbackStore.in_dir(run_dir)
    assert {f.query_id: f.mu for f in store.comparisons()}["q1"] == (0.0, 1.0)
    (rating,) = store.feedback(kind="rating")
    assert isinstance(rating, Rating) and rating.value == 4.0 and rating.annotator_id == "argilla:u1"
    store.close()

    code, stdout, _ = _cli(capsys, *args)
    assert code == 0 and "stored 0 answers, 5 duplicates" in stdout, stdout
    code, stdout, _ = _cli(capsys, "import", str(run_dir), "--format", "argilla", "--data", str(good / "rating"))
    assert code == 0 and "stored 0 answers, 1 duplicate " in stdout, stdout  # one dataset on its own
    assert _count(run_dir) == 5
