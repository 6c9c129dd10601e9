"""The text RLHF loop end to end with tiny budgets, through the CLI, and resume."""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from rlhfkit.cli import main
from rlhfkit.config import ConfigError, config_to_toml
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.loop_text import TextRun, load_text_config
from rlhfkit.samples import TEXT_SAMPLES, read_samples
from rlhfkit.tasks import text as describe_task

TINY_TEXT = """
task = "text:describe"
rounds = 2
seed = 0
steps_per_round = 3
eval_per_prompt = 2

[feedback]
initial_comparisons = 10
comparisons_per_round = 6
max_new_tokens = 12

[reward]
epochs = 1

[optim]
n_per_prompt = 2
prompts_per_step = 2
max_new_tokens = 12

[base]
pretrain_steps = 40
"""


@pytest.fixture
def text_config(tmp_path: Path) -> Path:
    path = tmp_path / "text.toml"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


def test_text_run_end_to_end_and_resume(text_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # One round, as if the process had stopped there; then the CLI resumes to round 2.
    cfg = load_text_config(text_config)
    first = TextRun.create(cfg.__class__(**{**cfg.__dict__, "rounds": 1}), out, progress=False)
    first.run()
    store = FeedbackStore.in_dir(out)
    before = {c.query_id: c for c in store.comparisons()}
    assert len(before) == 10
    # The folder's config says 2 rounds again, as the user's file does.
    (out / "config.toml").write_text((out / "config.toml").read_text().replace("rounds = 1", "rounds = 2"))
    assert main(["run", "--resume", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2]
    for key in ("true_return", "learned_return", "kl_to_base", "rm_accuracy", "length_words", "proxy_return"):
        assert key in rows[-1]
    for key in ("round", "n_feedback", "generated_tokens", "rm_train_pairs"):  # counts are written as ints
        assert all(type(r[key]) is int for r in rows if key in r), key
    # Each round, the resumed one included, kept its completions of the same prompts for the report.
    samples = read_samples(out)
    assert sorted(samples) == [0, 1, 2]
    prompts = [[s["prompt"] for s in samples[k]["samples"]] for k in (0, 1, 2)]
    assert prompts[0] == prompts[1] == prompts[2] == describe_task.prompts()[:TEXT_SAMPLES]
    base, latest = ([s["completion"] for s in samples[k]["samples"]] for k in (0, 2))
    assert base != latest  # the policy moved
    for k in (0, 2):
        for s in samples[k]["samples"]:
            assert s["true_reward"] == describe_task.true_reward(s["completion"])
    page = (out / "report.html").read_text()
    assert "<th>base policy (round 0)</th><th>latest (round 2)</th>" in page
    assert html.escape(base[0]) in page and html.escape(latest[0]) in page
    after = {c.query_id: c for c in store.comparisons()}
    assert len(after) == 16 and all(after[q] == c for q, c in before.items())
    assert rows[-1]["kl_to_base"] != 0.0  # the policy moved off the base model
    assert (out / "report.html").exists() and (out / "base_model" / "config.json").exists()
    texts = [g.text for g in store.generations().values()]
    assert texts and all(t.prompt.startswith("the ") for t in texts if isinstance(t.prompt, str))


def test_text_config_errors_name_the_field(
    text_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text_config.read_text().replace("steps_per_round", "steps_per_rnd"))
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "steps_per_rnd" in err and "steps_per_round" in err


@pytest.mark.parametrize("section", ["optim", "ppo"])
def test_an_older_learning_rate_gets_one_line_naming_lr(
    section: str, text_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.toml"
    text = text_config.read_text()
    if section == "optim":
        old.write_text(text.replace("[optim]\n", "[optim]\nlearning_rate = 1e-3\n"))
    else:
        old.write_text(text + "\n[ppo]\nlearning_rate = 1e-3\n")
    assert main(["run", str(old), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"rlhfkit: error: {old}: {section}.learning_rate: renamed to {section}.lr"]
    assert not (tmp_path / "o").exists()


def test_text_run_with_ppo_keeps_its_adaptive_beta_across_a_resume(text_config: Path, tmp_path: Path) -> None:
    ppo = """
optimizer = "ppo"

[ppo]
prompts_per_step = 4
minibatch_size = 4
update_epochs = 2
max_new_tokens = 12
lr = 1e-3
adaptive_kl = true
kl_target = 0.5
kl_horizon = 20.0
"""
    path = tmp_path / "ppo.toml"
    text = text_config.read_text()
    path.write_text(
        text.replace('task = "text:describe"', 'task = "text:describe"' + ppo.split("[ppo]")[0])
        + "[ppo]"
        + ppo.split("[ppo]")[1]
    )
    cfg = load_text_config(path)
    assert cfg.optimizer == "ppo" and cfg.ppo.adaptive_kl
    out = tmp_path / "run"
    first = TextRun.create(cfg.__class__(**{**cfg.__dict__, "rounds": 1}), out, progress=False)
    assert first.policy.value_head is not None
    first.run()
    beta_after_1 = first.beta
    assert beta_after_1 != cfg.ppo.beta  # the controller moved it (3 steps of 4 completions, horizon 20)
    (out / "config.toml").write_text((out / "config.toml").read_text().replace("rounds = 1", "rounds = 2"))
    resumed = TextRun.resume(out, progress=False)
    assert resumed.beta == beta_after_1 and resumed.trainer.steps == 3
    resumed.run()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[1]["beta"] == beta_after_1 and rows[2]["beta"] != beta_after_1
    assert rows[-1]["kl_to_base"] != 0.0


def test_the_optimizer_is_named_once_and_older_configs_still_load(text_config: Path, tmp_path: Path) -> None:
    cfg = load_text_config(text_config)
    assert cfg.optimizer == "grpo"
    resolved = config_to_toml(cfg)
    assert 'optimizer = "grpo"' in resolved and "algorithm" not in resolved and "group" not in resolved

    def load(head: str, optim: str) -> str:
        path = tmp_path / "old.toml"
        path.write_text(text_config.read_text().replace('task = "text:describe"', head).replace("[optim]", optim))
        return load_text_config(path).optimizer

    # Run folders written before: optimizer = "group" beside [optim] algorithm.
    assert load('task = "text:describe"\noptimizer = "group"', '[optim]\nalgorithm = "rloo"') == "rloo"
    assert load('task = "text:describe"\noptimizer = "group"', "[optim]") == "grpo"
    assert load('task = "text:describe"', '[optim]\nalgorithm = "rloo"') == "rloo"
    assert load('task = "text:describe"\noptimizer = "ppo"', '[optim]\nalgorithm = "grpo"') == "ppo"
    assert load('task = "text:describe"\noptimizer = "rloo"', "[optim]") == "rloo"
    with pytest.raises(ConfigError, match=r"old\.toml: optim\.algorithm = 'rloo' contradicts optimizer = 'grpo'"):
        load('task = "text:describe"\noptimizer = "grpo"', '[optim]\nalgorithm = "rloo"')


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_building_a_text_run_prints_no_transformers_warnings(text_config: Path, tmp_path: Path) -> None:
    """Neither "loss_type=None ... unrecognized" (pre-training) nor "num_labels=1 ... incompatible" (reward model)."""
    from transformers.utils import logging as hf_logging

    hf_logging.warning_once.cache_clear()  # a warning another test already raised would otherwise stay silent
    records = _Records()
    hf_root = logging.getLogger("transformers")
    hf_root.addHandler(records)
    try:
        TextRun.create(load_text_config(text_config), tmp_path / "run", progress=False)
    finally:
        hf_root.removeHandler(records)
    assert not [m for m in records.messages if "loss_type" in m or "num_labels" in m], records.messages


def test_the_text_fit_takes_the_configured_holdout_share_and_batch_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Comparisons and ratings (once a separate route with its own 0.15 held out and 32 a step): the [reward] values."""
    from rlhfkit import loop_text
    from rlhfkit.feedback.answers import AnswerSet, is_heldout

    text = TINY_TEXT.replace("[reward]\nepochs = 1", "[reward]\nepochs = 2\nholdout_frac = 0.5\nbatch_size = 2")
    text = text.replace("max_new_tokens = 12\n", "max_new_tokens = 12\nkinds = {comparison = 0.5, rating = 0.5}\n", 1)
    path = tmp_path / "text.toml"
    path.write_text(text, encoding="utf-8")
    run = TextRun.create(load_text_config(path), tmp_path / "run", progress=False)
    run.ask(run.sample_queries(1))
    split: list[AnswerSet] = []
    fit = loop_text.fit_reward

    def spy(model: Any, train: AnswerSet, heldout: AnswerSet, config: Any, *args: Any, **kwargs: Any) -> Any:
        split.extend((train, heldout))
        return fit(model, train, heldout, config, *args, **kwargs)

    monkeypatch.setattr(loop_text, "fit_reward", spy)
    rm = run.fit()
    train, held = split
    assert all(is_heldout(f.query_id, 0.5) for f in held.feedback)
    assert not any(is_heldout(f.query_id, 0.5) for f in train.feedback)
    assert len(train) + len(held) == 10 and rm.n_heldout == len(held)
    assert {f.kind for f in (*train.feedback, *held.feedback)} == {"comparison", "rating"}
    assert rm.steps >= 2 * -(-max(rm.counts.values()) // 2)  # at most 2 answers of a kind a step, 2 epochs
