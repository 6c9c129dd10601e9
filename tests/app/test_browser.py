"""End to end in headless Chromium (Playwright driving Debian's chromium, installed by .ci/run).

An annotator logs in, answers one comparison with the keyboard and one with the
confidence slider, and the answers reach the store with the right mu; model
output holding <script> and <img onerror=...> is shown as literal text and
never runs; a control pair plays as two videos in sync; an admin pauses the loop.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from apphelpers import HOSTILE, Env, app_config

from rlhfkit.app.server import create_app, run_in_thread

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian chromium is not installed (.ci/run installs it: apt-get install chromium)",
)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency (pip install -e .[test])")


@pytest.fixture
def base_url(env: Env) -> Iterator[str]:
    server, thread, port = run_in_thread(create_app(app_config(env.run_dir, env.store)))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS, timeout=30_000)
        try:
            yield b
        finally:
            b.close()


def _login(
    browser: object, base_url: str, token: str, hold: tuple[str, list[object]] | None = None
) -> tuple[object, list[str]]:
    """A fresh page signed in with ``token``; ``hold`` = (URL glob, list) holds back matching
    requests in the list, routed before the first navigation so none can slip past."""
    page = browser.new_page()  # type: ignore[attr-defined]
    if hold is not None:
        pattern, held = hold
        page.route(pattern, lambda route: held.append(route))  # type: ignore[attr-defined]
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(base_url + "/")
    page.fill("#token", token)
    page.click("#login-button")
    return page, problems


def test_annotator_answers_with_keyboard_and_slider_and_model_output_stays_text(
    browser: object, base_url: str, env: Env
) -> None:
    page, problems = _login(browser, base_url, env.alice)
    page.wait_for_url(base_url + "/annotate")
    page.wait_for_selector("body[data-ready='1']")
    assert page.text_content("#who") == "alice"
    assert page.get_attribute("body", "data-query-id") == "q0"
    assert page.text_content("#progress") == "0 answered · 5 to go"

    # the hostile completion is shown as the literal characters, nothing of it runs or parses
    assert page.text_content("#completion-a") == HOSTILE
    assert page.locator("#content-a img, #content-a script, #pair img, #pair script").count() == 0
    assert page.title() == "rlhfkit · annotate"
    assert "<b>bold?</b>" in (page.text_content("#shared-prompt") or "")
    assert page.locator("#shared-prompt b").count() == 0

    # keyboard: "1" answers A
    page.keyboard.press("1")
    page.wait_for_selector("body[data-query-id='q1']")
    assert page.text_content("#progress") == "1 answered · 4 to go"
    # slider: four steps right from 50% is 70% that A is better, sent with "g"
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    assert page.text_content("#confidence-value") == "70%"
    page.keyboard.press("g")
    page.wait_for_selector("body[data-query-id='q2']")
    # the slider by mouse too: drag it to the B end and send with the button
    page.fill("#confidence", "20")
    assert page.text_content("#confidence-value") == "20%"
    page.click("#answer-graded")
    page.wait_for_selector("body[data-query-id='q3']")
    page.keyboard.press("x")  # can't compare
    page.wait_for_selector("body[data-query-id='k0']")

    stored = {c.query_id: c for c in env.store.comparisons("alice")}
    assert stored["q0"].answer.value == "A" and stored["q0"].mu == (1.0, 0.0)
    assert stored["q1"].answer.value == "graded" and stored["q1"].mu == pytest.approx((0.7, 0.3))
    assert stored["q2"].answer.value == "graded" and stored["q2"].mu == pytest.approx((0.2, 0.8))
    assert stored["q3"].answer.value == "incomparable" and stored["q3"].mu is None

    # the control pair: two videos rendered from the env, playing in step
    page.wait_for_function(
        "() => ['video-a', 'video-b'].every(id => { const v = document.getElementById(id);"
        " return v && v.readyState >= 3 && v.currentTime > 0.1; })",
        timeout=60_000,
    )
    times = page.evaluate("() => ['video-a', 'video-b'].map(id => document.getElementById(id).currentTime)")
    assert abs(times[0] - times[1]) < 0.1, times
    page.keyboard.press("3")  # about equal
    page.wait_for_selector("#empty:not([hidden])")
    assert env.store.comparisons("alice")[-1].mu == (0.5, 0.5)
    assert page.text_content("#progress") == "5 answered · 0 to go"
    assert not [p for p in problems if "Content Security Policy" in p or "dialog" in p], problems
    page.close()


def test_admin_pauses_the_loop_and_sees_agreement(browser: object, base_url: str, env: Env) -> None:
    import json

    from rlhfkit.feedback_records import Comparison

    env.store.record(Comparison.make("q0", "A", "alice"))
    env.store.record(Comparison.make("q0", "A", "bob"))
    rows = [{"round": 0, "true_return": -900.0, "learned_return": 0.5}, {"round": 1, "true_return": -300.0}]
    (env.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = '<title>run report</title><style>p{color:red}</style><p id="note">plots</p>'
    (env.run_dir / "report.html").write_text(report, encoding="utf-8")
    page, problems = _login(browser, base_url, env.admin)
    page.wait_for_url(base_url + "/admin")
    page.wait_for_selector("body[data-ready='1']")
    assert page.text_content("#loop-state") == "running"
    assert page.text_content("#pairwise") == "100.0%"
    rows = page.locator("#progress-table tbody tr").all_text_contents()
    assert any("alice" in r and "1" in r for r in rows)
    assert not any("boss" in r for r in rows), rows  # the admin is not one of the people who answer
    # progress per round: answers to each round's queries, the true and learned return, and the report
    charts = page.locator("#charts svg")
    assert [charts.nth(i).get_attribute("data-title") for i in range(charts.count())] == [
        "Answers per round",
        "True return",
        "Learned return",
    ]
    assert charts.nth(0).locator("rect").count() == 2 and charts.nth(1).locator("circle").count() == 2
    assert page.locator("#rounds-table tbody tr").all_text_contents() == [
        "000-900.0000.500",
        "152-300.000n/a",
    ]
    assert page.is_visible("#report-link")
    with page.expect_navigation():
        page.click("#report-link")
    assert page.title() == "run report"
    # the report's own inline style applies: it is served under its own policy (no script at all)
    assert page.evaluate("getComputedStyle(document.getElementById('note')).color") == "rgb(255, 0, 0)"
    page.go_back()
    page.wait_for_selector("body[data-ready='1']")
    page.click("#pause-toggle")
    page.wait_for_function("() => document.getElementById('loop-state').textContent === 'paused'")
    assert env.store.paused() is True
    page.click("#pause-toggle")
    page.wait_for_function("() => document.getElementById('loop-state').textContent === 'running'")
    assert env.store.paused() is False
    assert not [p for p in problems if "Content Security Policy" in p], problems
    page.close()


def test_a_wrong_token_does_not_get_in(browser: object, base_url: str, env: Env) -> None:
    page, _ = _login(browser, base_url, env.alice[:-2] + "zz")
    page.wait_for_function("() => document.getElementById('error').textContent.length > 0")
    assert page.text_content("#error") == "That token is not valid."
    assert page.url == base_url + "/"
    page.goto(base_url + "/annotate")  # without a session the page sends you back to sign in
    page.wait_for_url(base_url + "/")
    page.close()


def test_forms_for_every_other_kind(browser: object, base_url: str, env: Env) -> None:
    from rlhfkit.feedback_records import Comparison
    from rlhfkit.types import Query

    for q in env.queries:  # answered already: only the new queries are pending for alice
        env.store.record(Comparison.make(q.id, "A", "alice"))
    env.store.add_queries(
        [
            Query("r0", ("t0a",), 2, kind="rating", created_at=3000.0),
            Query("l0", ("t1a",), 2, kind="label", created_at=3001.0),
            Query("k1", ("t1a", "t1b", "t2a"), 2, kind="ranking", created_at=3002.0),
            Query("z0", ("t2a", "t2b"), 2, kind="language", created_at=3003.0),
            Query("x0", ("t0a",), 2, kind="correction", created_at=3004.0),
        ]
    )
    page, problems = _login(browser, base_url, env.alice)
    page.wait_for_selector("body[data-ready='1']")
    assert page.get_attribute("body", "data-kind") == "rating"
    assert page.locator("#rating-buttons button").all_text_contents() == [str(v) for v in range(1, 8)]
    page.keyboard.press("6")
    page.wait_for_selector("body[data-query-id='l0']")
    page.keyboard.press("3")  # the third label: "good" (bad, ok, good: the fallback, a default run's choices)
    page.wait_for_selector("body[data-query-id='k1']")
    assert page.locator("#pair article").count() == 3
    page.click("#ranking-list li:nth-child(1) button:has-text('↓')")  # A below B
    page.click("#ranking-list li:nth-child(3) button:has-text('↑')")  # C above A
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-query-id='z0']")
    page.fill("#utterance", "B says <b>more</b>")
    page.press("#utterance", "Control+Enter")
    page.wait_for_selector("body[data-query-id='x0']")
    assert page.input_value("#corrected") == HOSTILE  # the hostile completion, as editable text only
    assert page.locator("#pair img, #pair script").count() == 0
    page.fill("#corrected", "a calm answer")
    page.click("#send-correction")
    page.wait_for_selector("#empty:not([hidden])")
    got = {f.query_id: f for f in env.store.feedback(annotator_id="alice") if f.kind != "comparison"}
    assert got["r0"].value == 6.0  # type: ignore[union-attr]
    assert got["l0"].label == "good"  # type: ignore[union-attr]
    assert got["k1"].ranked == ("t1b", "t2a", "t1a")  # type: ignore[union-attr]
    assert got["z0"].utterance == "B says <b>more</b>"  # type: ignore[union-attr]
    assert got["x0"].corrected.completion == "a calm answer"  # type: ignore[union-attr]
    assert not [p for p in problems if "Content Security Policy" in p or "dialog" in p], problems
    page.close()


def test_answers_wait_for_both_clips_and_the_saved_line_does_not_follow(
    browser: object, base_url: str, env: Env
) -> None:
    from rlhfkit.feedback_records import Comparison

    for qid in ("q0", "q1"):
        env.store.record(Comparison.make(qid, "A", "alice"))
    held: list[object] = []  # clip B of the control pair is held back until released below
    page, problems = _login(browser, base_url, env.alice, hold=("**/api/media/webm/c0b", held))
    page.wait_for_selector("body[data-ready='1']")
    assert page.get_attribute("body", "data-query-id") == "q2"
    page.keyboard.press("1")
    page.wait_for_selector("body[data-query-id='q3']")
    # the confirmation names the query it was about, in the header; nothing is left under the new query
    assert page.text_content("#saved") == "Saved q2: A."
    assert page.text_content("#status") == ""
    page.keyboard.press("2")
    page.wait_for_selector("body[data-query-id='k0']")
    assert page.text_content("#status") == "" and page.text_content("#saved") == "Saved q3: B."

    # clip A can play, clip B has not arrived: no answer can be given yet, by button or key
    page.wait_for_function("() => document.getElementById('video-a').readyState >= 3", timeout=60_000)
    state = page.evaluate(  # what to read if the wait line has gone: an error event, or clip B arriving
        "() => ({status: document.getElementById('status').textContent,"
        " media: ['video-a', 'video-b'].map(id => { const v = document.getElementById(id);"
        " return [v.currentSrc, v.readyState, v.networkState, v.error && v.error.code]; })})"
    )
    assert page.is_visible("#media-wait"), (state, len(held))
    assert all(page.is_disabled(f"#answer-{a}") for a in ("A", "B", "equal", "incomparable"))
    assert page.is_disabled("#answer-graded")
    page.keyboard.press("1")
    page.wait_for_timeout(300)
    assert page.get_attribute("body", "data-query-id") == "k0"
    assert env.store.answer_of("k0", "alice") is None
    assert held, "the page never asked for clip B"
    for route in held:
        route.continue_()  # type: ignore[attr-defined]
    page.wait_for_selector("#answer-A:not([disabled])", timeout=60_000)
    ready = page.evaluate("() => ['video-a', 'video-b'].map(id => document.getElementById(id).readyState)")
    assert min(ready) >= 3, ready  # unlocked only once both clips can play
    assert not page.is_visible("#media-wait")
    page.keyboard.press("2")
    page.wait_for_selector("#empty:not([hidden])")
    stored = env.store.answer_of("k0", "alice")
    assert isinstance(stored, Comparison) and stored.answer.value == "B"
    assert not [p for p in problems if "Content Security Policy" in p or "dialog" in p], problems
    page.close()


def test_the_page_shows_the_runs_instructions_and_label_choices(browser: object, env: Env) -> None:
    from rlhfkit.feedback.store import AnnotationSettings
    from rlhfkit.feedback_records import Comparison
    from rlhfkit.types import Query

    for q in env.queries:
        env.store.record(Comparison.make(q.id, "A", "alice"))
    env.store.add_queries([Query("l0", ("t1a",), 2, kind="label"), Query("r0", ("t0a",), 2, kind="rating")])
    instructions = "Prefer calm answers.\nA <script>kind</script> word counts."
    # what the loop writes when it starts, from the run's config (feedback.instructions, feedback.teacher)
    env.store.write_annotation_settings(
        AnnotationSettings(instructions=instructions, rating_scale=(1, 5), label_choices=("poor", "fine", "great"))
    )
    server, thread, port = run_in_thread(create_app(app_config(env.run_dir, env.store)))
    try:
        base_url = f"http://127.0.0.1:{port}"
        page, problems = _login(browser, base_url, env.alice)
        page.wait_for_selector("body[data-ready='1']")
        assert page.text_content("#instructions") == instructions  # as text: nothing of it parsed
        assert page.locator("#instructions script").count() == 0
        assert page.is_visible("#instructions")
        assert page.get_attribute("body", "data-kind") == "label"
        assert page.locator("#label-buttons button").all_text_contents() == [
            "poor 1",
            "fine 2",
            "great 3",
            "none of these 0",
        ]
        assert page.is_visible("#form-label .help")
        page.keyboard.press("3")
        page.wait_for_selector("body[data-query-id='r0']")
        assert page.locator("#rating-buttons button").all_text_contents() == ["1", "2", "3", "4", "5"]
        page.keyboard.press("5")
        page.wait_for_selector("#empty:not([hidden])")
        labels = {f.query_id: f for f in env.store.feedback(annotator_id="alice") if f.kind != "comparison"}
        assert labels["l0"].label == "great" and labels["l0"].choices == ("poor", "fine", "great")  # type: ignore[union-attr]
        assert labels["r0"].value == 5.0 and labels["r0"].scale == (1.0, 5.0)  # type: ignore[union-attr]
        assert not [p for p in problems if "Content Security Policy" in p], problems
        page.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
