"""`rlhfkit fit-reward` on files the tests write: formats, held-out accuracy, saved models, bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rlhfkit.cli import main
from rlhfkit.feedback.formats import detect_format, read_preferences
from rlhfkit.reward.fit_files import records_to_answers
from rlhfkit.reward.transformer import (
    RewardModelScorer,
    SequenceRewardModel,
    completion_token_ids,
    load_reward_model,
    plain_rewards,
    prompt_token_ids,
    render,
)
from rlhfkit.tasks import text as text_task


def _pairs(n: int, seed: int) -> list[dict[str, str]]:
    """Pairs of task completions, chosen by the task's true reward (ties left out)."""
    rng = np.random.default_rng(seed)
    corpus = text_task.corpus(4 * n, seed=seed)
    rows = []
    while len(rows) < n:
        a, b = (corpus[int(i)] for i in rng.integers(0, len(corpus), 2))
        subject = rng.choice(text_task.SUBJECTS)
        ca, cb = a.split(" is", 1)[1], b.split(" is", 1)[1]
        ra, rb = text_task.true_reward(ca), text_task.true_reward(cb)
        if ra == rb:
            continue
        chosen, rejected = (ca, cb) if ra > rb else (cb, ca)
        rows.append({"prompt": f"the {subject} is", "chosen": chosen, "rejected": rejected})
    return rows


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_fit_reward_cli_learns_the_task_preference_and_saves_a_loadable_model(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.jsonl", _pairs(600, seed=0))
    held = _write(tmp_path / "eval.jsonl", _pairs(200, seed=1))
    out = tmp_path / "rm"
    args = ["fit-reward", "--data", str(train), "--eval-data", str(held), "--model", "tiny", "--out", str(out)]
    assert main([*args, "--epochs", "3", "--lr", "1e-3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"accuracy", "n_train", "n_eval", "pairs_per_second"}
    assert metrics["n_train"] == 600 and metrics["n_eval"] == 200
    assert metrics["accuracy"] >= 0.8, metrics
    assert (out / "model.safetensors").exists()

    # The saved folder loads back as --model and scores exactly as before.
    model, tok = load_reward_model(str(out), [])
    answers = records_to_answers(read_preferences(held).records[:8], tok)
    texts = [g.content for g in answers.generations.values()]
    again, _ = load_reward_model(str(out), [])
    with torch.no_grad():
        r1 = SequenceRewardModel(model.eval(), tok).returns(SequenceRewardModel(model, tok).encode(texts))
        r2 = SequenceRewardModel(again.eval(), tok).returns(SequenceRewardModel(again, tok).encode(texts))
    assert torch.equal(r1, r2)


def test_scored_completions_are_grouped_by_prompt(tmp_path: Path) -> None:
    rows = [
        {
            "prompt": "the cat is",
            "completions": [
                {"text": " kind .", "score": 2},
                {"text": " sad .", "score": 0},
                {"text": " warm .", "score": 1},
                {"text": " rude .", "score": -1},
            ],
        },
        {"prompt": "the dog is", "completions": [{"text": " calm .", "score": 1}, {"text": " dull .", "score": 0}]},
    ]
    path = _write(tmp_path / "scored.jsonl", rows)
    assert detect_format(path) == "scored"
    _, tok = load_reward_model("tiny", ["the cat is kind sad warm rude dog calm dull ."] * 20)
    answers = records_to_answers(read_preferences(path).records, tok)
    by_prompt: dict[object, tuple[set[str], int]] = {}
    for f in answers.feedback:
        shown = answers.queries[f.query_id].generation_ids
        prompt = answers.generations[shown[0]].text.prompt
        seen, n = by_prompt.get(prompt, (set(), 0))
        by_prompt[prompt] = (seen | set(shown), n + 1)
    assert [len(seen) for seen, _ in by_prompt.values()] == [4, 2]  # each distinct completion one generation
    assert [n for _, n in by_prompt.values()] == [6, 1]  # every pair of four completions, scored with one prompt


def test_bad_row_is_named_or_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows: list[dict[str, object]] = list(_pairs(30, seed=2))
    rows[4] = {"prompt": "the cat is", "chosen": " kind ."}  # no rejected
    path = _write(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "rm"
    assert main(["fit-reward", "--data", str(path), "--model", "tiny", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and ":5" in err and "rejected" in err
    assert not out.exists()
    assert main(["fit-reward", "--data", str(path), "--model", "tiny", "--out", str(out), "--skip-bad-rows"]) == 0
    assert json.loads((out / "metrics.json").read_text())["skipped_rows"] == 1


def test_missing_model_folder_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "d.jsonl", list(_pairs(5, seed=3)))
    assert (
        main(["fit-reward", "--data", str(path), "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    )
    assert "nope" in capsys.readouterr().err


def test_dpo_cli_trains_a_tiny_policy_on_the_task_preferences(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.jsonl", _pairs(200, seed=4))
    held = _write(tmp_path / "eval.jsonl", _pairs(100, seed=5))
    out = tmp_path / "dpo"
    args = ["dpo", "--data", str(train), "--eval-data", str(held), "--model", "tiny", "--out", str(out)]
    assert main([*args, "--lr", "1e-3", "--epochs", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_train"] == 200 and metrics["n_eval"] == 100
    assert metrics["eval_reward_accuracy"] >= 0.7, metrics  # a fresh policy equals its reference: accuracy 0
    assert (out / "model.safetensors").exists()


def test_reward_model_scorer_equals_scoring_each_pair_alone() -> None:
    prompts = ["the cat is", "a chat:", "the cat is", "the dog is", "a chat:"]
    chats = [[{"role": "user", "content": "be nice"}], [{"role": "user", "content": "be brief"}]]
    completions = [" nice and calm", " ok", " nice", " warm and kind and good", " short"]
    model, tokenizer = load_reward_model("tiny", [*prompts, *completions, "be nice", "be brief"], seed=1)
    scorer = RewardModelScorer(model, tokenizer, max_tokens=16)  # a small budget: several length batches
    all_prompts = [*prompts, *chats]
    all_completions = [*completions, " yes", " no"]
    got = scorer(all_prompts, all_completions)
    with torch.no_grad():
        alone = [
            float(
                plain_rewards(
                    model,
                    [
                        prompt_token_ids(tokenizer, render(tokenizer, p if isinstance(p, str) else tuple(p), True))
                        + completion_token_ids(tokenizer, c)
                    ],
                    int(tokenizer.pad_token_id),
                )[0]
            )
            for p, c in zip(all_prompts, all_completions, strict=True)
        ]
    assert got.shape == (7,)
    np.testing.assert_allclose(got, alone, atol=1e-5)
    assert len(set(np.round(got, 6))) == 7  # distinct scores: a mix-up of rows would show
    with pytest.raises(ValueError, match="one prompt per completion"):
        scorer(prompts, completions[:2])


@pytest.mark.parametrize("command", ["fit-reward", "dpo"])
def test_a_missing_or_folder_data_file_names_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    good = _write(tmp_path / "d.jsonl", list(_pairs(5, seed=3)))
    out = ["--model", "tiny", "--out", str(tmp_path / "o")]
    missing = tmp_path / "nope.jsonl"
    for args, said in (
        (["--data", str(missing)], f"--data {missing}: no such file"),
        (["--data", str(tmp_path)], f"--data {tmp_path}: a folder"),
        (["--data", str(good), "--eval-data", str(missing)], f"--eval-data {missing}: no such file"),
    ):
        assert main([command, *args, *out]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"rlhfkit: error: {said}") and "Errno" not in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["fit-reward", "dpo"])
@pytest.mark.parametrize("bad_line", [1, 3])  # the first row (format detection) or a later one (the reader)
def test_a_line_that_is_not_json_is_named_by_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, bad_line: int
) -> None:
    lines = [json.dumps(r) for r in _pairs(4, seed=2)]
    lines[bad_line - 1] = lines[bad_line - 1][:-1]  # the closing brace lost
    path = tmp_path / "cut.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main([command, "--data", str(path), "--model", "tiny", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"rlhfkit: error: {path}:{bad_line}: not valid JSON: the line ends before the JSON value does; "
        "each line must hold one whole JSON object"
    )


@pytest.mark.parametrize("command", ["fit-reward", "dpo"])
def test_nothing_held_out_is_a_warning_not_a_nan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    train = _write(tmp_path / "train.jsonl", list(_pairs(40, seed=6)))
    held = tmp_path / "held.jsonl"
    held.write_text('{"prompt": "the cat is", "chosen": " kind ."}\nnot json\n', encoding="utf-8")
    args = [command, "--data", str(train), "--eval-data", str(held), "--model", "tiny", "--out", str(tmp_path / "o")]
    assert main([*args, "--skip-bad-rows"]) == 0
    captured = capsys.readouterr()
    assert "nan" not in captured.out and "not measured" in captured.out
    assert f"skipped 2 bad rows of --eval-data {held}" in captured.err
    assert f"warning: held-out {'' if command == 'fit-reward' else 'implicit-reward '}accuracy not measured: " in (
        captured.err
    )
    assert f"--eval-data {held} holds no usable pairs (its 2 bad rows were skipped)" in captured.err


def test_fit_reward_with_no_prompt_held_out_says_which_option_to_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = _write(tmp_path / "train.jsonl", list(_pairs(20, seed=7)))  # 10 prompts at most
    assert (
        main(["fit-reward", "--data", str(train), "--model", "tiny", "--out", str(tmp_path / "o"), "--eval-frac", "0"])
        == 0
    )
    captured = capsys.readouterr()
    assert "nan" not in captured.out
    assert "--eval-frac 0 held out none of the prompts; give --eval-data FILE or a larger --eval-frac" in captured.err
