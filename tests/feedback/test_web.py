"""human = "web": the loop posts queries, people answer in the app, the loop fits on what has arrived."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import rlhfkit
from rlhfkit.app.auth import add_annotator
from rlhfkit.app.bot import WebBot
from rlhfkit.app.client import AnnotationClient
from rlhfkit.app.server import AppConfig, create_app, run_in_thread
from rlhfkit.config import ConfigError, load_config
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.teacher import SimulatedHuman, TeacherConfig
from rlhfkit.feedback.web import WebHuman
from rlhfkit.feedback_records import Comparison
from rlhfkit.loop import Run
from rlhfkit.types import Generation, Query, Text


def _store_with_queries(tmp_path: Path, n: int) -> FeedbackStore:
    store = FeedbackStore.in_dir(tmp_path)
    gens = [Generation(f"g{i}", 1, "p", Text("p", f"c{i}")) for i in range(2 * n)]
    store.add_generations(gens)
    store.add_queries([Query(f"q{i}", (f"g{2 * i}", f"g{2 * i + 1}"), 1, created_at=float(i)) for i in range(n)])
    return store


def test_wait_for_answers_returns_once_enough_usable_answers_arrived(tmp_path: Path) -> None:
    store = _store_with_queries(tmp_path, 5)
    arrivals = iter(
        [
            Comparison.make("q0", "incomparable", "ann"),  # stored, but not usable: does not count
            Comparison.make("q1", "A", "ann"),
            Comparison.make("q2", "graded", "ann", mu_a=0.6),
            Comparison.make("q3", "B", "ann"),
        ]
    )
    sleeps: list[float] = []

    def people_answer(seconds: float) -> None:  # each poll, one more answer has arrived
        sleeps.append(seconds)
        store.record(next(arrivals))

    web = WebHuman(store, min_answers=3, poll_s=0.5, sleep=people_answer)
    assert web.answer(Query("q4", ("g8", "g9"), 1), {}) is None
    assert web.wait_for_answers(round_=1) == 3
    assert sleeps == [0.5] * 4
    status = store.loop_status()
    assert status is not None
    assert status.round == 1 and status.phase == "fitting the reward" and status.answers == 3


def _phase(store: FeedbackStore) -> str | None:
    status = store.loop_status()
    return None if status is None else status.phase


def test_hold_waits_while_paused(tmp_path: Path) -> None:
    store = _store_with_queries(tmp_path, 1)
    store.set_paused(True)
    seen: list[str] = []

    def admin_resumes_later(seconds: float) -> None:
        seen.append(_phase(store))
        if len(seen) == 3:
            store.set_paused(False)

    WebHuman(store, sleep=admin_resumes_later).hold(2, "optimising")
    assert seen == ["paused"] * 3
    assert _phase(store) == "optimising"


def test_web_config_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('task = "pendulum"\n[feedback]\nhuman = "web"\nweb_min_answers = 0\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="web_min_answers"):
        load_config(path)
    path.write_text('task = "pendulum"\n[feedback]\nhuman = "people"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="'simulated', 'web'"):
        load_config(path)


WEB_TINY = """
task = "pendulum"
rounds = 2
seed = 0

[control]
env_steps_per_round = 2048
eval_episodes = 2
segment_length = 25

[control.ppo]
n_envs = 2
n_steps = 256

[feedback]
human = "web"
web_min_answers = 6
web_poll_s = 0.05
initial_comparisons = 12
comparisons_per_round = 6

[reward]
ensemble_size = 2
epochs = 10
"""


def _wait(predicate: Any, timeout: float = 60.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_the_waiting_loop_says_how_to_let_people_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A web run that waits for answers names the commands that add an annotator and start the app, with its
    run folder, once."""
    path = tmp_path / "web.toml"
    path.write_text(WEB_TINY, encoding="utf-8")
    run_dir = tmp_path / "my run"
    run = Run.create(load_config(path), run_dir, progress=True)
    assert isinstance(run.human, WebHuman)
    queries = run.sample_queries(1)  # round 1's queries, posted as the loop posts them
    polls: list[float] = []

    def people_answer(seconds: float) -> None:  # on the third look, six answers have arrived
        polls.append(seconds)
        if len(polls) == 3:
            for q in queries[:6]:
                run.store.record(Comparison.make(q.id, "A", "carol"))

    run.human.sleep = people_answer
    capsys.readouterr()
    assert run.human.wait_for_answers(1) == 6
    out = capsys.readouterr().out
    assert out.count("rlhfkit annotators add NAME --run") == 1, out  # said once, not at every look
    assert f"rlhfkit annotators add NAME --run '{run_dir}'" in out
    assert f"rlhfkit serve '{run_dir}'" in out
    assert "0 of 6 usable answers stored" in out


def test_a_run_writes_what_people_are_asked_for_the_app(tmp_path: Path) -> None:
    """The run's config is the one source of the instructions, rating scale and label choices: the loop writes
    them to the store, where `rlhfkit serve` (on any machine) reads them."""
    from rlhfkit.tasks import get_task

    path = tmp_path / "web.toml"
    path.write_text(WEB_TINY, encoding="utf-8")
    run = Run.create(load_config(path), tmp_path / "default", progress=False)
    settings = run.store.read_annotation_settings()
    assert settings is not None and settings.task == "pendulum"
    assert settings.instructions == get_task("pendulum").instructions  # the task's default
    assert settings.rating_scale == (1.0, 7.0) and settings.label_choices == ("bad", "ok", "good")  # the teacher's

    custom = WEB_TINY.replace(
        "[reward]",
        'instructions = "Upright and still wins."\n\n[feedback.teacher]\nrating_scale = [0, 10]\n'
        'label_choices = ["poor", "fine", "great", "superb"]\nlabel_thresholds = [-0.5, 0.0, 0.5]\n\n[reward]',
    )
    path.write_text(custom, encoding="utf-8")
    run = Run.create(load_config(path), tmp_path / "custom", progress=False)
    settings = run.store.read_annotation_settings()
    assert settings is not None and settings.instructions == "Upright and still wins."
    assert settings.rating_scale == (0.0, 10.0) and settings.label_choices == ("poor", "fine", "great", "superb")

    path.write_text(custom.replace('"superb"]', '"none of these"]'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"teacher\.label_choices"):
        load_config(path)


def test_the_loop_goes_on_while_people_answer_through_the_app(tmp_path: Path) -> None:
    """The loop fits round 1 on the first 6 of 12 answers, keeps optimising while the rest
    arrive over HTTP, holds while an admin pauses it, and the app restarts without losing one."""
    path = tmp_path / "web.toml"
    path.write_text(WEB_TINY, encoding="utf-8")
    run = Run.create(load_config(path), tmp_path / "run", progress=False)
    store = run.store
    token = add_annotator(store, "carol")
    admin_token = add_annotator(store, "boss", admin=True)
    app_config = AppConfig(store_url=store.url, media_dir=tmp_path / "run" / "media", prerender=False)
    server, thread, port = run_in_thread(create_app(app_config))
    url = f"http://127.0.0.1:{port}"
    teacher = SimulatedHuman(TeacherConfig(), seed=1, annotator_id="carol")
    events: dict[str, Any] = {}
    errors: list[BaseException] = []

    def people() -> None:
        try:
            with AnnotationClient(url, token) as client, AnnotationClient(url, admin_token) as admin:
                bot = WebBot(client, teacher, store)
                assert _wait(lambda: client.queue().pending == 12)  # round 1's queries are posted
                events["first"] = bot.answer_pending(max_answers=6)
                # nothing more until the loop is optimising round 2: round 1 was fitted on 6 answers
                assert _wait(lambda: getattr(store.loop_status(), "round", None) == 2)
                assert _wait(lambda: _phase(store) == "optimising")
                events["late"] = bot.answer_pending()  # round 1's other 6 and round 2's 6
                admin.pause()
                assert _wait(lambda: _phase(store) == "paused", 30)
                events["paused_round"] = getattr(store.loop_status(), "round", None)
                time.sleep(0.3)
                events["still_paused"] = _phase(store) == "paused"
                admin.resume()
        except BaseException as e:
            errors.append(e)
            store.set_paused(False)
            with AnnotationClient(url, token) as client:  # let the loop finish whatever happened
                WebBot(client, teacher, store).answer_pending()

    worker = threading.Thread(target=people, daemon=True)
    worker.start()
    try:
        history = run.run()
    finally:
        worker.join(timeout=60)
        server.should_exit = True
        thread.join(timeout=30)
    assert not errors, errors
    assert events["first"] == 6 and events["late"] == 12
    assert events["paused_round"] == 2 and events["still_paused"]
    assert [h["round"] for h in history] == [0, 1, 2]
    assert history[1]["n_feedback"] == 6  # round 1 fitted and finished on the answers that had arrived
    assert history[2]["n_feedback"] == 18
    stored = store.comparisons()
    assert len(stored) == 18 and {c.annotator_id for c in stored} == {"carol"}
    assert {a.id: a.kind for a in store.annotators()}["carol"] == "person"

    # The app restarts over the same store: nothing is lost, nothing is asked again.
    server2, thread2, port2 = run_in_thread(create_app(app_config))
    try:
        with AnnotationClient(f"http://127.0.0.1:{port2}", token) as client:
            queue = client.queue()
            assert queue.pending == 0 and queue.answered == 18
            assert len(client.answers()) == 18
    finally:
        server2.should_exit = True
        thread2.join(timeout=30)


WEB_TEXT = """
task = "text:describe"
rounds = 1
seed = 0

[text]
steps_per_round = 2
eval_per_prompt = 2
max_new_tokens = 8

[text.group]
n_per_prompt = 2
prompts_per_step = 2

[text.base]
pretrain_steps = 20

[feedback]
human = "web"
web_min_answers = 4
web_poll_s = 0.05
initial_comparisons = 8

[reward]
epochs = 1
"""


def test_the_text_loop_fits_on_answers_given_over_http(tmp_path: Path) -> None:
    import numpy as np

    from rlhfkit.tasks import text as describe_task

    path = tmp_path / "text.toml"
    path.write_text(WEB_TEXT, encoding="utf-8")
    run = Run.create(load_config(path), tmp_path / "run", progress=False)
    token = add_annotator(run.store, "dana")
    app_config = AppConfig(store_url=run.store.url, media_dir=tmp_path / "media", prerender=False)
    server, thread, port = run_in_thread(create_app(app_config))
    teacher = SimulatedHuman(
        TeacherConfig(beta=4.0), lambda t: np.array(describe_task.true_reward(t.completion)), 1, "dana"
    )
    answered: list[int] = []

    def people() -> None:
        with AnnotationClient(f"http://127.0.0.1:{port}", token) as client:
            assert _wait(lambda: client.queue().pending == 8)
            answered.append(WebBot(client, teacher, run.store).answer_pending(max_answers=5))

    worker = threading.Thread(target=people, daemon=True)
    worker.start()
    try:
        history = run.run()
    finally:
        worker.join(timeout=60)
        server.should_exit = True
        thread.join(timeout=30)
    assert answered == [5]
    assert [h["round"] for h in history] == [0, 1]
    assert history[1]["n_feedback"] == 5 and history[1]["rm_train_pairs"] >= 1
    assert {c.annotator_id for c in run.store.comparisons()} == {"dana"}


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (``TYPE_CHECKING`` blocks and function bodies included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
    return found


def test_the_feedback_layer_never_imports_the_app() -> None:
    """Imports run one way (feedback -> ... -> app): the simulated web annotator is the app's (rlhfkit.app.bot)."""
    feedback = Path(rlhfkit.__file__).parent / "feedback"
    upward = {
        f"{path.relative_to(feedback)}: {module}"
        for path in sorted(feedback.rglob("*.py"))
        for module in _imported_modules(path)
        if module == "rlhfkit.app" or module.startswith("rlhfkit.app.")
    }
    assert upward == set()
