"""Every kind of feedback in the loop: tiny mixed-kind runs of both domains, a resume mid-round, config errors."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from rlhfkit.cli import main
from rlhfkit.config import ConfigError, load_config
from rlhfkit.feedback.effort import EffortConfig
from rlhfkit.feedback.mix import split_queries
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.teacher import SimulatedHuman, TeacherConfig
from rlhfkit.feedback_records import Correction, Language
from rlhfkit.loop import Run
from rlhfkit.types import Segment, Text

ALL_KINDS = "{comparison = 0.25, ranking = 0.2, rating = 0.15, label = 0.15, correction = 0.1, language = 0.15}"

CONTROL = f"""
task = "pendulum"
rounds = 2
seed = 0

[control]
env_steps_per_round = 1024
eval_episodes = 2
segment_length = 25

[control.ppo]
n_envs = 2
n_steps = 256

[feedback]
initial_comparisons = 20
comparisons_per_round = 10
kinds = {ALL_KINDS}

[feedback.teacher]
beta = 0.1
mistake_prob = 0.05

[feedback.effort]
rating = 6.0

[reward]
ensemble_size = 2
epochs = 10
"""

TEXT = f"""
task = "text:describe"
rounds = 2
seed = 0

[text]
steps_per_round = 2
eval_per_prompt = 2
max_new_tokens = 12

[text.group]
n_per_prompt = 2
prompts_per_step = 2

[text.base]
pretrain_steps = 40

[feedback]
initial_comparisons = 12
comparisons_per_round = 8
kinds = {ALL_KINDS}

[feedback.teacher]
beta = 4.0

[reward]
epochs = 2
"""


def _metrics(run_dir: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _minutes(store: FeedbackStore, effort: EffortConfig) -> float:
    return sum(effort.seconds(f.kind) for f in store.feedback()) / 60


def _stop_mid_round(run: Run, k: int, answered: int) -> tuple[dict[str, object], set[str]]:
    """As if the process stopped in round ``k``: its queries stored, only ``answered`` of them answered."""
    queries = run.sample_queries(k)
    run.ask(queries[:answered])
    return {f.query_id: f for f in run.store.feedback()}, {q.id for q in run.store.queries()}


def _check_resumed(store: FeedbackStore, before: dict[str, object], queries_before: set[str], total: int) -> None:
    after = store.feedback()
    by_query = {f.query_id: f for f in after}
    assert len(after) == len(by_query) == total, "an answer was repeated or lost"
    assert {q.id for q in store.queries()} == queries_before, "the stopped round's stored queries were not reused"
    assert all(by_query[q] == f for q, f in before.items()), "a stored answer changed"


def test_mixed_kinds_control_run_and_resume_mid_round(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "kinds.toml", CONTROL))
    assert cfg.feedback.effort.rating == 6.0 and cfg.feedback.effort.comparison == 5.0
    out = tmp_path / "run"
    first = Run.create(dataclasses.replace(cfg, rounds=1), out, progress=False)
    first.run()
    before, queries_before = _stop_mid_round(first, 2, answered=4)
    (out / "config.toml").write_text((out / "config.toml").read_text().replace("rounds = 1", "rounds = 2"))
    assert main(["run", "--resume", str(out)]) == 0

    store = FeedbackStore.in_dir(out)
    _check_resumed(store, before, queries_before, total=30)
    asked = Counter(q.kind for q in store.queries())
    expected = Counter(split_queries(20, cfg.feedback.kinds)) + Counter(split_queries(10, cfg.feedback.kinds))
    assert asked == expected and set(asked) == set(cfg.feedback.kinds)
    assert Counter(f.kind for f in store.feedback()) == asked  # the simulated human answered every kind
    correction = next(f for f in store.feedback() if isinstance(f, Correction))
    assert isinstance(correction.corrected, Segment) and len(correction.corrected) == 25
    assert all(isinstance(f.utterance, str) and f.utterance for f in store.feedback(kind=Language.kind))

    rows = _metrics(out)
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert [r["n_feedback"] for r in rows] == [0, 20, 30]
    assert rows[0]["human_minutes"] == 0.0 and rows[1]["human_minutes"] < rows[2]["human_minutes"]
    assert rows[2]["human_minutes"] == pytest.approx(_minutes(store, cfg.feedback.effort))
    assert all(r["rm_loss"] == r["rm_loss"] for r in rows[1:])  # a finite mixed-fit loss, not NaN
    assert rows[2]["kl_to_base"] > 0.0  # the policy moved on the learned reward


def test_mixed_kinds_text_run_and_resume_mid_round(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "text-kinds.toml", TEXT))
    out = tmp_path / "run"
    first = Run.create(dataclasses.replace(cfg, rounds=1), out, progress=False)
    first.run()
    before, queries_before = _stop_mid_round(first, 2, answered=3)
    (out / "config.toml").write_text((out / "config.toml").read_text().replace("rounds = 1", "rounds = 2"))
    assert main(["run", "--resume", str(out)]) == 0

    store = FeedbackStore.in_dir(out)
    _check_resumed(store, before, queries_before, total=20)
    asked = Counter(q.kind for q in store.queries())
    assert asked == Counter(split_queries(12, cfg.feedback.kinds)) + Counter(split_queries(8, cfg.feedback.kinds))
    gens = store.generations()
    for q in store.queries():  # each query shows completions of one prompt; a ranking four of them
        prompts = {gens[g].text.prompt for g in q.generation_ids}
        assert len(prompts) == 1 and len(q.generation_ids) == {"ranking": 4, "comparison": 2, "language": 2}.get(
            q.kind, 1
        )
    correction = next(f for f in store.feedback() if isinstance(f, Correction))
    original = gens[next(q for q in store.queries() if q.id == correction.query_id).generation_ids[0]].text
    assert isinstance(correction.corrected, Text) and correction.corrected.prompt == original.prompt

    rows = _metrics(out)
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[2]["human_minutes"] == pytest.approx(_minutes(store, cfg.feedback.effort))
    assert rows[1]["rm_train_pairs"] > 0 and rows[2]["kl_to_base"] != 0.0


def test_a_kind_the_task_cannot_support_is_a_config_error_and_nothing_is_written(tmp_path: Path) -> None:
    text = CONTROL.replace('task = "pendulum"', 'task = "cartpole"')
    cfg = load_config(_write(tmp_path, "cartpole.toml", text))
    with pytest.raises(ConfigError, match=r"feedback\.kinds: correction needs an editor, which task 'cartpole'"):
        Run.create(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("kinds = {", "kinds = {labels = 0.0, "), "unknown feedback kind"),
        (("comparison = 0.25", "comparison = 0.35"), "add up to 1, got 1.1"),
        (("[feedback]\n", '[feedback]\nhuman = "web"\n'), "cannot take control correction"),
        (("rating = 6.0", "rating = -1.0"), "feedback.effort"),
        (("kinds = {", 'interpreter = "regex"\nkinds = {'), "feedback.interpreter"),
    ],
)
def test_kind_config_errors_name_the_field(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = _write(tmp_path, "bad.toml", CONTROL.replace(*edit, 1))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_config_help_documents_kinds_and_effort(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config-help"]) == 0
    out = capsys.readouterr().out
    for line in (
        "feedback.kinds = {'comparison': 1.0}  # Share of each round's queries per feedback kind",
        "feedback.interpreter = 'keyword'  # How language answers become training signal",
        "feedback.effort.ranking = 12.5  # Seconds per ranking of 4",
        "feedback.effort.correction = 22.0  # Seconds per correction",
    ):
        assert line in out, line


def test_web_humans_answer_every_posted_kind_and_the_loop_fits_on_them(tmp_path: Path) -> None:
    """human = "web" with three kinds: people's answers (recorded in the store, as the app does) of every
    kind count towards web_min_answers, and the round's reward is fitted on all of them."""
    text = (
        CONTROL.replace("rounds = 2", "rounds = 1")
        .replace("[feedback]\n", '[feedback]\nhuman = "web"\nweb_min_answers = 8\nweb_poll_s = 0.05\n')
        .replace(ALL_KINDS, "{comparison = 0.5, ranking = 0.25, rating = 0.25}")
        .replace("initial_comparisons = 20", "initial_comparisons = 12")
    )
    run = Run.create(load_config(_write(tmp_path, "web.toml", text)), tmp_path / "run", progress=False)
    person = SimulatedHuman(TeacherConfig(return_range=(-200.0, -50.0)), seed=3, annotator_id="dana")
    errors: list[BaseException] = []

    def people() -> None:
        try:
            store = FeedbackStore(run.store.url)
            deadline = time.time() + 120
            while len(store.queries()) < 12 and time.time() < deadline:
                time.sleep(0.05)
            queries = store.queries()
            gens = store.generations([g for q in queries for g in q.generation_ids])
            for q in sorted(queries, key=lambda q: q.kind != "rating"):  # ratings first: 3 of them, then the rest
                store.record(person.answer(q, gens))
        except BaseException as e:
            errors.append(e)

    worker = threading.Thread(target=people, daemon=True)
    worker.start()
    history: list[dict[str, float]] = []
    # 6 comparisons alone are fewer than web_min_answers: counted by comparisons only, the loop would wait for ever.
    loop = threading.Thread(target=lambda: history.extend(run.run()), daemon=True)
    loop.start()
    loop.join(timeout=180)
    worker.join(timeout=10)
    assert not errors, errors
    assert not loop.is_alive(), "the loop still waits for answers: answers of other kinds were not counted"
    kinds = Counter(f.kind for f in run.store.feedback())
    assert kinds == {"comparison": 6, "ranking": 3, "rating": 3}
    assert history[1]["n_feedback"] >= 8 and history[1]["human_minutes"] > 0
    assert {f.annotator_id for f in run.store.feedback()} == {"dana"}


SCALE = '[feedback.teacher]\nrating_scale = [0, 10]\nlabel_choices = ["poor", "fine", "great"]\n'


def test_people_answer_every_kind_of_a_text_run_over_http(tmp_path: Path) -> None:
    """The text loop with human = "web" and all six kinds; a bot answers each kind through the app's API."""
    from rlhfkit.app.auth import add_annotator
    from rlhfkit.app.bot import WebBot
    from rlhfkit.app.client import AnnotationClient
    from rlhfkit.app.server import AppConfig, create_app, run_in_thread
    from rlhfkit.feedback.edits import editor
    from rlhfkit.tasks import text as describe_task
    from rlhfkit.tasks.features import feature_set, return_range

    text = (
        TEXT.replace("rounds = 2", "rounds = 1")
        .replace("[feedback]\n", '[feedback]\nhuman = "web"\nweb_min_answers = 10\nweb_poll_s = 0.05\n')
        # the run's config is the one source of the scale and the choices: the app reads them from the store
        .replace("[feedback.teacher]\nbeta = 4.0\n", SCALE)
    )
    run = Run.create(load_config(_write(tmp_path, "web-text.toml", text)), tmp_path / "run", progress=False)
    token = add_annotator(run.store, "erin")
    app = AppConfig(run.store.url, tmp_path / "media", prerender=False)  # no scale or labels given to the app
    server, thread, port = run_in_thread(create_app(app))

    def person(**scale: object) -> SimulatedHuman:
        return SimulatedHuman(
            TeacherConfig(beta=4.0, return_range=return_range("describe"), **scale),  # type: ignore[arg-type]
            reward_fn=lambda t: describe_task.true_reward(t.completion),
            seed=2,
            annotator_id="erin",
            features=feature_set("describe"),
            editor=editor("describe"),
        )

    answered: list[int | str] = []

    def people() -> None:
        with AnnotationClient(f"http://127.0.0.1:{port}", token) as client:
            deadline = time.time() + 120
            while client.queue().pending < 12 and time.time() < deadline:
                time.sleep(0.05)
            try:  # a bot on another scale than the run's is refused before it sends anything
                WebBot(client, person(), run.store).answer_pending()
            except ValueError as e:
                answered.append(str(e))
            bot = WebBot(client, person(rating_scale=(0.0, 10.0), label_choices=("poor", "fine", "great")), run.store)
            answered.append(bot.answer_pending())

    worker = threading.Thread(target=people, daemon=True)
    worker.start()
    history: list[dict[str, float]] = []
    loop = threading.Thread(target=lambda: history.extend(run.run()), daemon=True)
    try:
        loop.start()
        loop.join(timeout=180)
        worker.join(timeout=30)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not loop.is_alive(), "the loop still waits for answers"
    assert len(answered) == 2 and "the app on [0.0, 10.0] with labels ['poor', 'fine', 'great']" in str(answered[0])
    assert answered[1] == 12
    assert {f.choices for f in run.store.feedback(kind="label")} == {("poor", "fine", "great")}  # type: ignore[union-attr]
    stored = Counter(f.kind for f in run.store.feedback())
    assert stored == Counter(split_queries(12, load_config(tmp_path / "web-text.toml").feedback.kinds))
    assert {f.annotator_id for f in run.store.feedback()} == {"erin"}
    assert history[1]["n_feedback"] >= 10 and history[1]["human_minutes"] > 0
