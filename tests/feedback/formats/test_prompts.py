"""A text run's own prompts: the JSON Lines and datasets readers, their errors, and the held-out split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhfkit.errors import ConfigError
from rlhfkit.feedback.formats.common import DataFormatError
from rlhfkit.feedback.formats.prompts import is_heldout_prompt, read_prompts, split_prompts

CHAT = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Describe the fox."}]


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_plain_and_chat_prompts_are_read_in_order(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "the cat is", "id": 7}, {"prompt": CHAT}])
    assert read_prompts(path) == ["the cat is", tuple(CHAT)]


def test_a_datasets_folder_with_a_prompt_column(tmp_path: Path) -> None:
    from datasets import Dataset

    Dataset.from_dict({"prompt": ["the owl is", "the bear is"], "other": [1, 2]}).save_to_disk(str(tmp_path / "ds"))
    assert read_prompts(tmp_path / "ds") == ["the owl is", "the bear is"]
    Dataset.from_dict({"text": ["x"]}).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(DataFormatError, match=r"has no column 'prompt' \(columns: \['text'\]\)"):
        read_prompts(tmp_path / "bad")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "ok"', r":2: not valid JSON: the line ends before the JSON value does"),
        ("[1, 2]", r":2: must be a JSON object, got list"),
        ('{"text": "no prompt"}', r":2: field 'prompt': missing"),
        ('{"prompt": "  "}', r":2: field 'prompt': is empty"),
        ('{"prompt": 3}', r":2: field 'prompt': must be a list of chat messages, got int"),
        ('{"prompt": [{"role": "user"}]}', r":2: field 'prompt\[0\]\.content': missing"),
    ],
)
def test_a_bad_line_is_one_error_naming_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    """The preference files' row readers and their words (feedback/formats/rows.py)."""
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=message) as e:
        read_prompts(path)
    assert str(e.value).startswith(f"{path}:2: ")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"text\.prompts: .*nope\.jsonl: no such file or folder"):
        read_prompts(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"empty\.jsonl: holds no prompts"):
        read_prompts(tmp_path / "empty.jsonl")


def test_the_heldout_split_is_by_prompt_not_by_order() -> None:
    prompts = [f"prompt number {i}" for i in range(400)]
    train, held = split_prompts(prompts, 0.25)
    assert len(train) + len(held) == 400 and not set(train) & set(held)
    assert 70 <= len(held) <= 130  # about a quarter
    again_train, again_held = split_prompts(list(reversed(prompts)), 0.25)
    assert set(again_held) == set(held) and set(again_train) == set(train)
    assert is_heldout_prompt(tuple(CHAT), 0.5) == is_heldout_prompt(tuple(dict(m) for m in CHAT), 0.5)
    with pytest.raises(ConfigError, match="both need at least one"):
        split_prompts(["only one"], 0.5)
