"""The one loop on the text domain end to end with tiny budgets, through the CLI, and resume."""

from __future__ import annotations

import dataclasses
import html
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from rlhfkit.cli import main
from rlhfkit.config import ConfigError, config_to_toml, load_config
from rlhfkit.domains.samples import TEXT_SAMPLES, read_samples
from rlhfkit.domains.text import TextDomain
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.loop import Run
from rlhfkit.tasks import text as describe_task

TINY_TEXT = """
task = "text:describe"
rounds = 2
seed = 0

[text]
steps_per_round = 3
eval_per_prompt = 2
max_new_tokens = 12

[text.group]
n_per_prompt = 2
prompts_per_step = 2

[text.base]
pretrain_steps = 40

[feedback]
initial_comparisons = 10
comparisons_per_round = 6

[reward]
epochs = 1
"""

OLD_TINY_TEXT = """
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
"""TINY_TEXT as text runs were configured before the one loop (their run folders still hold this layout)."""


def _domain(run: Run) -> TextDomain:
    assert isinstance(run.domain, TextDomain)
    return run.domain


@pytest.fixture
def text_config(tmp_path: Path) -> Path:
    path = tmp_path / "text.toml"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


def test_text_run_end_to_end_and_resume(text_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # One round, as if the process had stopped there; then the CLI resumes to round 2.
    cfg = load_config(text_config)
    first = Run.create(dataclasses.replace(cfg, rounds=1), out, progress=False)
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
    assert "text.steps_per_rnd: unknown field (did you mean steps_per_round?)" in err


@pytest.mark.parametrize(
    ("section", "field", "expected"),
    [
        ("group", "learning_rate", "text.group.learning_rate: renamed to text.group.lr"),
        ("ppo", "learning_rate", "text.ppo.learning_rate: renamed to text.ppo.lr"),
        ("group", "beta", "text.group.beta: moved to kl.beta"),
        ("ppo", "kl_estimator", "text.ppo.kl_estimator: moved to kl.estimator"),
        ("ppo", "kl_target", "text.ppo.kl_target: moved to kl.target (now nats per token)"),
    ],
)
def test_a_field_that_moved_gets_one_line_naming_where(
    section: str, field: str, expected: str, text_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.toml"
    text = text_config.read_text()
    value = '"k1"' if field == "kl_estimator" else "1e-3"
    if section == "group":
        old.write_text(text.replace("[text.group]\n", f"[text.group]\n{field} = {value}\n"))
    else:
        old.write_text(text + f"\n[text.ppo]\n{field} = {value}\n")
    assert main(["run", str(old), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"rlhfkit: error: {old}: {expected}"]
    assert not (tmp_path / "o").exists()


def test_a_text_config_of_the_older_layout_reads_as_the_same_run_with_a_note(tmp_path: Path) -> None:
    new, old = tmp_path / "new.toml", tmp_path / "old.toml"
    new.write_text(TINY_TEXT)
    old.write_text(OLD_TINY_TEXT)
    notes: list[str] = []
    assert load_config(old, notes=notes) == load_config(new)
    assert len(notes) == 1 and "optim -> text.group" in notes[0] and "optim.max_new_tokens" in notes[0]
    # PPO's KL fields move to [kl], its per-completion target and horizon now per token.
    ppo = OLD_TINY_TEXT.replace("seed = 0\n", 'seed = 0\noptimizer = "ppo"\n') + (
        "\n[ppo]\nmax_new_tokens = 12\nbeta = 0.2\nkl_estimator = 'k3'\nadaptive_kl = true\n"
        "kl_target = 6.0\nkl_horizon = 100.0\n"
    )
    old.write_text(ppo)
    cfg = load_config(old)
    assert cfg.text is not None and cfg.text.optimizer == "ppo"
    assert (cfg.kl.beta, cfg.kl.estimator, cfg.kl.adaptive) == (0.2, "k3", True)
    assert cfg.kl.target == pytest.approx(6.0 / 12) and cfg.kl.horizon == pytest.approx(100.0 * 12)
    # Two completion lengths cannot be one: the error names both.
    old.write_text(OLD_TINY_TEXT.replace("max_new_tokens = 12\n\n[reward]", "max_new_tokens = 16\n\n[reward]"))
    with pytest.raises(ConfigError, match=r"feedback\.max_new_tokens = 16, optim\.max_new_tokens = 12"):
        load_config(old)


def test_text_run_with_ppo_keeps_its_adaptive_beta_across_a_resume(text_config: Path, tmp_path: Path) -> None:
    ppo = """
[text.ppo]
prompts_per_step = 4
minibatch_size = 4
update_epochs = 2
lr = 1e-3

[kl]
beta = 0.05
adaptive = true
target = 0.04
horizon = 240.0
"""
    path = tmp_path / "ppo.toml"
    text = text_config.read_text().replace("max_new_tokens = 12\n", 'max_new_tokens = 12\noptimizer = "ppo"\n')
    path.write_text(text + ppo)
    cfg = load_config(path)
    assert cfg.text is not None and cfg.text.optimizer == "ppo" and cfg.kl.adaptive and cfg.kl.estimator == "k1"
    out = tmp_path / "run"
    first = Run.create(dataclasses.replace(cfg, rounds=1), out, progress=False)
    assert _domain(first).policy.value_head is not None
    first.run()
    beta_after_1 = first.domain.beta
    assert beta_after_1 != cfg.kl.beta  # the controller moved it (3 steps of 4 completions, horizon 240 tokens)
    (out / "config.toml").write_text((out / "config.toml").read_text().replace("rounds = 1", "rounds = 2"))
    resumed = Run.resume(out, progress=False)
    assert resumed.domain.beta == beta_after_1 and _domain(resumed).trainer.steps == 3
    resumed.run()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[1]["beta"] == beta_after_1 and rows[2]["beta"] != beta_after_1
    assert rows[-1]["kl_to_base"] != 0.0


def test_the_optimizer_is_named_once_and_older_configs_still_load(text_config: Path, tmp_path: Path) -> None:
    cfg = load_config(text_config)
    assert cfg.text is not None and cfg.text.optimizer == "grpo"
    resolved = config_to_toml(cfg)
    assert resolved.count("optimizer = ") == 1 and 'optimizer = "grpo"' in resolved and "algorithm" not in resolved

    def load(head: str, optim: str) -> str:
        path = tmp_path / "old.toml"
        path.write_text(OLD_TINY_TEXT.replace('task = "text:describe"', head).replace("[optim]", optim))
        text = load_config(path).text
        assert text is not None
        return text.optimizer

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
        Run.create(load_config(text_config), tmp_path / "run", progress=False)
    finally:
        hf_root.removeHandler(records)
    assert not [m for m in records.messages if "loss_type" in m or "num_labels" in m], records.messages


def test_the_text_fit_takes_the_configured_holdout_share_and_batch_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Comparisons and ratings (once a separate route with its own 0.15 held out and 32 a step): the [reward] values."""
    from rlhfkit import loop
    from rlhfkit.feedback.answers import AnswerSet, is_heldout

    text = TINY_TEXT.replace("[reward]\nepochs = 1", "[reward]\nepochs = 2\nholdout_frac = 0.5\nbatch_size = 2")
    text = text.replace(
        "comparisons_per_round = 6\n", "comparisons_per_round = 6\nkinds = {comparison = 0.5, rating = 0.5}\n"
    )
    path = tmp_path / "text.toml"
    path.write_text(text, encoding="utf-8")
    run = Run.create(load_config(path), tmp_path / "run", progress=False)
    run.ask(run.sample_queries(1))
    split: list[AnswerSet] = []
    fit = loop.fit_reward

    def spy(model: Any, train: AnswerSet, heldout: AnswerSet, config: Any, *args: Any, **kwargs: Any) -> Any:
        split.extend((train, heldout))
        return fit(model, train, heldout, config, *args, **kwargs)

    monkeypatch.setattr(loop, "fit_reward", spy)
    rm = run.fit()
    train, held = split
    assert all(is_heldout(f.query_id, 0.5) for f in held.feedback)
    assert not any(is_heldout(f.query_id, 0.5) for f in train.feedback)
    assert len(train) + len(held) == 10 and rm.n_heldout == len(held)
    assert {f.kind for f in (*train.feedback, *held.feedback)} == {"comparison", "rating"}
    assert rm.steps >= 2 * -(-max(rm.counts.values()) // 2)  # at most 2 answers of a kind a step, 2 epochs
