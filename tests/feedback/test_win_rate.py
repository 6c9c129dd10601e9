"""People's verdict on the policy against the base: read per round, never fitted, shown in the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rlhfkit.config import load_config
from rlhfkit.feedback.answers import read_answers
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.web import WebHuman
from rlhfkit.feedback.win_rate import BASE_POLICY, EVALUATION_PREFIX, read_win_rates, win_rates
from rlhfkit.feedback_records import Comparison
from rlhfkit.loop import Run
from rlhfkit.report import write_report
from rlhfkit.types import Generation, Query, Text


def _pair(store: FeedbackStore, qid: str, round_: int, policy_first: bool) -> None:
    mine = Generation(f"{qid}-p", round_, f"round-{round_}", Text("p", "mine"))
    base = Generation(f"{qid}-b", round_, BASE_POLICY, Text("p", "base"))
    a, b = (mine, base) if policy_first else (base, mine)
    store.add_generations([a, b])
    store.add_queries([Query(qid, (a.id, b.id), round_)])


def test_the_policy_side_is_found_whichever_side_it_was_shown_on(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.sqlite'}")
    e = EVALUATION_PREFIX
    for qid, first in ((f"{e}1", True), (f"{e}2", False), (f"{e}3", True), (f"{e}4", False), (f"{e}5", True)):
        _pair(store, qid, 1, first)
    _pair(store, f"{e}6", 2, True)  # asked, not answered yet
    _pair(store, "train", 1, True)  # a training query: not a verdict
    store.record(Comparison.make(f"{e}1", "A", "ann"))  # policy shown as A, A wins: 1
    store.record(Comparison.make(f"{e}2", "A", "ann"))  # policy shown as B, A (the base) wins: 0
    store.record(Comparison.make(f"{e}3", "equal", "ann"))  # 0.5
    store.record(Comparison.make(f"{e}4", "graded", "ann", mu_a=0.2))  # policy is B: 0.8
    store.record(Comparison.make(f"{e}5", "incomparable", "ann"))  # left out
    store.record(Comparison.make("train", "A", "ann"))
    rates = win_rates(store)
    assert [(r.round, r.answers) for r in rates] == [(1, 4), (2, 0)]
    assert rates[0].win_rate == pytest.approx((1 + 0 + 0.5 + 0.8) / 4)
    assert math.isnan(rates[1].win_rate)
    # the fit's read and the web loop's count leave the verdicts out
    assert [f.query_id for f in read_answers(store).feedback] == ["train"]
    assert WebHuman(store, min_answers=1).usable_answers() == 1


RUN = """
task = "text:describe"
rounds = 1
seed = 0

[text]
steps_per_round = 2
eval_per_prompt = 2
max_new_tokens = 8
people_win_rate = 6

[text.group]
n_per_prompt = 2
prompts_per_step = 2

[text.base]
pretrain_steps = 30

[feedback]
initial_comparisons = 8

[reward]
epochs = 1
"""


def test_a_run_asks_its_verdicts_after_the_evaluation_and_never_fits_them(tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text(RUN, encoding="utf-8")
    run = Run.create(load_config(tmp_path / "run.toml"), tmp_path / "run", progress=False)
    history = run.run()
    verdicts = [q for q in run.store.queries() if q.id.startswith(EVALUATION_PREFIX)]
    assert len(verdicts) == 6 and {q.round for q in verdicts} == {1}
    rates = read_win_rates(tmp_path / "run")
    assert [(r.round, r.answers) for r in rates] == [(1, 6)]  # the simulated human answers at once
    assert history[-1]["people_win_rate_vs_base"] == pytest.approx(rates[0].win_rate)
    assert run.store.count_feedback() == 8 + 6 and len(read_answers(run.store)) == 8
    # a restarted round asks no second set
    assert run.ask_evaluation(1, now=True)["people_win_rate_vs_base"] == pytest.approx(rates[0].win_rate)
    assert len([q for q in run.store.queries() if q.id.startswith(EVALUATION_PREFIX)]) == 6
    report = write_report(tmp_path / "run").read_text(encoding="utf-8")
    assert "Judged by people against the base" in report
    assert json.loads((tmp_path / "run" / "win_rates.json").read_text())[0]["answers"] == 6
