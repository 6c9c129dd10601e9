"""End-to-end runs of the loop with tiny budgets, resume after a kill, and bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rlhfkit.cli import main
from rlhfkit.config import load_config
from rlhfkit.domains.samples import ROLLOUT_STEPS, read_samples
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.teacher import RewardValueError, TeacherConfig
from rlhfkit.loop import Run
from rlhfkit.reward.fit import NoUsableFeedbackError
from rlhfkit.types import Segment

REQUIRED = {"round", "n_feedback", "true_return", "learned_return", "kl_to_base", "rm_accuracy"}


def _metrics(run_dir: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_end_to_end_through_the_cli(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", str(tiny_config), "--out", str(out)]) == 0
    rows = _metrics(out)
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert all(set(r) >= REQUIRED for r in rows)
    assert [r["n_feedback"] for r in rows] == [0, 12, 18]
    for name in ("config.toml", "feedback.sqlite", "report.html", "plots/returns.png", "checkpoints/round-0002.pt"):
        assert (out / name).exists(), name
    store = FeedbackStore.in_dir(out)
    assert len(store.comparisons()) == 18 and len(store.queries()) == 18
    # Something changed for the better: the policy moved off the base, and under the
    # final learned reward the final policy scores higher than the base policy did.
    run = Run.resume(out, progress=False)
    assert rows[-1]["kl_to_base"] > 0.0
    base_eval = run.domain.policy.frozen_copy()
    base_eval.load_state_dict(run.domain.base.state_dict())
    from rlhfkit.domains.control import evaluate_policy, policy_rollout

    task = run.domain.task
    learned_base = evaluate_policy(base_eval, task.make_env, 4, 10_000, reward_fn=run.domain.learned_reward)[
        "learned_return"
    ]
    learned_new = evaluate_policy(run.domain.policy, task.make_env, 4, 10_000, reward_fn=run.domain.learned_reward)
    assert learned_new["learned_return"] > learned_base
    assert main(["report", str(out)]) == 0
    for key in ("round", "n_feedback", "env_steps"):  # counts are written as ints
        assert all(type(r[key]) is int for r in rows), key
    # Each round kept the opening of its first evaluation episode: round 0 is the base policy's.
    samples = read_samples(out)
    assert sorted(samples) == [0, 1, 2]
    base_rollout = policy_rollout(base_eval, task.make_env, 10_000, ROLLOUT_STEPS, task.env_id)
    assert np.allclose(samples[0]["actions"], base_rollout.actions, atol=1e-5)
    assert len(samples[2]["observations"]) == ROLLOUT_STEPS and samples[2]["env_id"] == "Pendulum-v1"
    assert not np.allclose(samples[2]["actions"], samples[0]["actions"])  # the policy moved
    page = (out / "report.html").read_text()
    assert 'src="samples/round_0000.gif"' in page and 'src="samples/round_0002.gif"' in page


def test_seeded_runs_store_identical_answers(tiny_config: Path, tmp_path: Path) -> None:
    cfg = dataclasses.replace(load_config(tiny_config), rounds=1)
    answers, metrics = [], []
    for name in ("a", "b"):
        run = Run.create(cfg, tmp_path / name, progress=False)
        history = run.run()
        answers.append([(c.query_id, c.answer, c.mu) for c in run.store.comparisons()])
        metrics.append([json.dumps({k: v for k, v in row.items() if k != "seconds"}) for row in history])
    assert answers[0] == answers[1]
    assert metrics[0] == metrics[1]


def test_resume_after_kill_loses_and_repeats_no_answer(tiny_config: Path, tmp_path: Path) -> None:
    text = tiny_config.read_text().replace("comparisons_per_round = 6", "comparisons_per_round = 6\nlatency_s = 0.15")
    cfg_path = tmp_path / "slow.toml"
    cfg_path.write_text(text)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "rlhfkit", "run"]
    log = open(tmp_path / "run.log", "w")  # noqa: SIM115  # closed after the process ends
    proc = subprocess.Popen([*cmd, str(cfg_path), "--out", str(out)], stderr=log, stdout=log)
    try:
        # Kill in round 2, after it stored its queries and some (not all) of their answers.
        deadline = time.time() + 240
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the run exited early: {(tmp_path / 'run.log').read_text()[-2000:]}")
            if (out / "feedback.sqlite").exists():
                n = FeedbackStore.in_dir(out).count_feedback()
                if n >= 14:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the run never reached round 2")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    store = FeedbackStore.in_dir(out)
    before = {c.query_id: c for c in store.comparisons()}
    queries_before = {q.id for q in store.queries()}
    assert 14 <= len(before) < 18, "the kill must land mid-round"
    assert _metrics(out)[-1]["round"] == 1

    done = subprocess.run([*cmd, "--resume", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    after = store.comparisons()
    by_query = {c.query_id: c for c in after}
    assert len(after) == len(by_query) == 18, "an answer was repeated or lost"
    assert {q.id for q in store.queries()} == queries_before, "round 2's stored queries were not reused"
    for qid, c in before.items():
        assert by_query[qid] == c, "a stored answer changed"
    assert [r["round"] for r in _metrics(out)] == [0, 1, 2]
    assert sorted(read_samples(out)) == [0, 1, 2], "the resumed run must keep the samples of its rounds"


def test_unknown_field_is_named_and_nothing_is_created(
    tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_config.read_text().replace("comparisons_per_round", "comparisons_per_rond"))
    out = tmp_path / "run"
    assert main(["run", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "feedback.comparisons_per_rond" in err and "comparisons_per_round" in err and "bad.toml" in err
    assert not out.exists()


def test_unknown_env_id_is_named(tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_config.read_text().replace('task = "pendulum"', 'task = "env:Pendulm-v1"'))
    assert main(["run", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert "Pendulm-v1" in (err := capsys.readouterr().err) and "Pendulum-v1" in err


def test_unsupported_action_space_is_named(
    tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import gymnasium as gym

    class MultiDiscreteEnv(gym.Env[np.ndarray, np.ndarray]):
        observation_space = gym.spaces.Box(-1, 1, (2,))
        action_space = gym.spaces.MultiDiscrete([2, 3])

    gym.register("RlhfkitTestMultiDiscrete-v0", entry_point=lambda: MultiDiscreteEnv())
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_config.read_text().replace('task = "pendulum"', 'task = "env:RlhfkitTestMultiDiscrete-v0"'))
    assert main(["run", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "MultiDiscrete" in err and "not supported" in err
    assert not (tmp_path / "run").exists()


def test_nan_from_a_custom_reward_stops_with_a_clear_error_and_keeps_answers(tiny_config: Path, tmp_path: Path) -> None:
    run = Run.create(load_config(tiny_config), tmp_path / "run", progress=False)
    calls = {"n": 0}

    def flaky(segment: Segment) -> np.ndarray:
        calls["n"] += 1
        r = np.asarray(segment.true_rewards, dtype=np.float64).copy()
        if calls["n"] > 10:  # 5 answers go through, the 6th query hits a NaN
            r[3] = np.nan
        return r

    run.human.reward_fn = flaky
    with pytest.raises(RewardValueError, match=r"flaky.*nan.*step 3"):
        run.run()
    reopened = FeedbackStore.in_dir(tmp_path / "run")
    assert len(reopened.comparisons()) == 5
    assert len(reopened.queries()) == 12


def test_no_usable_answers_is_a_clear_error_and_keeps_them(tiny_config: Path, tmp_path: Path) -> None:
    cfg = load_config(tiny_config)
    cfg = dataclasses.replace(
        cfg, feedback=dataclasses.replace(cfg.feedback, teacher=TeacherConfig(skip_threshold=1e9))
    )
    run = Run.create(cfg, tmp_path / "run", progress=False)
    with pytest.raises(NoUsableFeedbackError, match=r"no usable answers.*12 stored, 12 incomparable"):
        run.run()
    assert [c.mu for c in FeedbackStore.in_dir(tmp_path / "run").comparisons()] == [None] * 12


def test_existing_run_folder_is_not_overwritten(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = dataclasses.replace(load_config(tiny_config), rounds=1)
    Run.create(cfg, out, progress=False).run()
    with pytest.raises(FileExistsError, match="--resume"):
        Run.create(cfg, out, progress=False)


def test_base_policy_from_checkpoint(tiny_config: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    cfg = dataclasses.replace(load_config(tiny_config), rounds=1)
    Run.create(cfg, first, progress=False).run()
    ckpt = first / "checkpoints" / "round-0001.pt"
    assert cfg.control is not None
    base = dataclasses.replace(cfg.control.base, kind="checkpoint", path=str(ckpt))
    cfg2 = dataclasses.replace(cfg, control=dataclasses.replace(cfg.control, base=base))
    run = Run.create(cfg2, tmp_path / "second", progress=False)
    trained = torch.load(ckpt, weights_only=False)["policy"]
    for k, v in run.domain.base.state_dict().items():
        assert torch.equal(v, trained[k]), k


OLD_LAYOUT = """task = "pendulum"
rounds = 2
seed = 0
env_steps_per_round = 2048
eval_episodes = 2

[feedback]
initial_comparisons = 12
comparisons_per_round = 6
segment_length = 25

[reward]
ensemble_size = 2
epochs = 10

[ppo]
n_envs = 2
n_steps = 256
"""
"""tiny_config as a run folder written before the one loop holds it (its config.toml)."""


def test_a_run_folder_of_the_older_layout_resumes_with_a_note(
    tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    Run.create(dataclasses.replace(load_config(tiny_config), rounds=1), out, progress=False).run()
    (out / "config.toml").write_text(OLD_LAYOUT, encoding="utf-8")  # as an older rlhfkit wrote it
    capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 0
    err = capsys.readouterr().err
    assert "written for the layout before the one loop" in err and "ppo -> control.ppo" in err
    assert [r["round"] for r in _metrics(out)] == [0, 1, 2]
    assert FeedbackStore.in_dir(out).count_feedback() == 18
