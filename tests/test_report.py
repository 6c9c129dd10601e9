"""Tests for rlhfkit.report: the HTML report and its plots, and the errors on bad metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rlhfkit.domains.control import policy_rollout
from rlhfkit.domains.samples import rollout_samples, text_samples, write_samples
from rlhfkit.models.control import ActorCritic, SpaceSpec
from rlhfkit.report import ReportError, learned_outruns_true, report_figures, write_report
from rlhfkit.tasks import get_task

CONFIG = 'name = "demo <script>alert(1)</script>"\nseed = 0\n'


def _rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for k in range(4):
        rows.append(
            {
                "round": k,
                "n_feedback": 50 * k,
                "env_steps": 10_000 * (k + 1),
                "true_return": 10.0 + 5.123456 * k,
                "true_return_std": 1.5,
                "learned_return": 0.1 * k,
                "kl_to_base": 0.01 * k,
                "beta": 0.1,
                "rm_accuracy": None if k == 0 else 0.6 + 0.05 * k,
                "rm_true_accuracy": None if k == 0 else 0.7,
                "rm_ece": None if k == 0 else 0.05,
            }
        )
    return rows


def _make_run(tmp_path: Path, lines: list[str] | None = None) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    if lines is None:
        lines = [json.dumps(r) for r in _rows()]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run / "config.toml").write_text(CONFIG)
    return run


def test_report_written(tmp_path: Path) -> None:
    run = _make_run(tmp_path)
    report = write_report(run)
    assert report == run / "report.html"
    assert report.exists()
    text = report.read_text(encoding="utf-8")
    for name in ("returns", "kl", "reward_model"):
        assert f'src="plots/{name}.png"' in text
        png = run / "plots" / f"{name}.png"
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(data) > 5_000
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text
    tbody = text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert len(re.findall(r"<tr>", tbody)) == 4
    assert "—" in tbody  # round 0's null reward-model metrics
    assert "25.4" in tbody  # 10 + 3 * 5.123456 to 3 significant digits
    assert not list(run.rglob("*.tmp"))


def test_report_accepts_str_path_and_rewrites(tmp_path: Path) -> None:
    run = _make_run(tmp_path)
    first = write_report(str(run))
    second = write_report(str(run))
    assert first == second and second.exists()


def test_bad_json_line_names_line(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in _rows()]
    lines[2] = "{not json"
    run = _make_run(tmp_path, lines)
    with pytest.raises(ReportError, match="line 3"):
        write_report(run)


def test_line_without_round_names_line(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in _rows()]
    lines[1] = json.dumps({"true_return": 1.0})
    run = _make_run(tmp_path, lines)
    with pytest.raises(ReportError, match=r"line 2.*round"):
        write_report(run)


def test_missing_metrics_file(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="not found"):
        write_report(tmp_path)


def test_empty_metrics_file(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(ReportError, match="empty"):
        write_report(tmp_path)


def test_single_round_run(tmp_path: Path) -> None:
    run = _make_run(tmp_path, [json.dumps(_rows()[0])])
    (run / "config.toml").unlink()
    text = write_report(run).read_text(encoding="utf-8")
    assert "Rounds done: 0" in text
    assert all((run / "plots" / f"{n}.png").stat().st_size > 1_000 for n in ("returns", "kl", "reward_model"))


def test_text_runs_get_the_overoptimisation_plot(tmp_path: Path) -> None:
    rows = [
        {"round": 0, "true_return": -0.5, "proxy_return": 1.4, "length_words": 4.7, "kl_to_base": 0.0},
        {"round": 1, "true_return": 0.2, "proxy_return": 0.6, "length_words": 2.4, "kl_to_base": 4.4},
        {"round": 2, "true_return": -1.0, "proxy_return": 5.8, "length_words": 11.2, "kl_to_base": 68.6},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = write_report(tmp_path).read_text()
    assert 'src="plots/overoptimisation.png"' in page
    assert (tmp_path / "plots" / "overoptimisation.png").read_bytes().startswith(b"\x89PNG")
    # A control run has no proxy or length columns, so no such plot.
    control = tmp_path / "control"
    control.mkdir()
    (control / "metrics.jsonl").write_text(json.dumps({"round": 0, "true_return": -1000.0}) + "\n")
    assert "overoptimisation" not in write_report(control).read_text()


# -- what a first user reads -------------------------------------------------------------


def _text_rows() -> list[dict[str, object]]:
    """Rows as a text run wrote them before counts were ints: no env steps, no ECE, floats for counts."""
    return [
        {"round": float(k), "n_feedback": 75.0 * k, "generated_tokens": 2271.0 * k, "true_return": 0.1 * k,
         "learned_return": 0.05 * k, "kl_to_base": 0.3 * k, "proxy_return": 1.4, "length_words": 4.7,
         "rm_accuracy": None if k == 0 else 0.6, "beta": 0.3}
        for k in range(3)
    ]  # fmt: skip


def test_summary_and_table_numbers_are_readable(tmp_path: Path) -> None:
    rows = _rows()
    rows[0]["true_return"] = -1062.2216
    rows[-1]["true_return"] = -180.44
    rows[-1]["env_steps"] = 163_840
    page = write_report(_make_run(tmp_path, [json.dumps(r) for r in rows])).read_text()
    summary = page.split("<h2>Summary</h2>", 1)[1].split("</ul>", 1)[0]
    assert "Final true return: -180.4 vs -1,062 at round 0 (+881.8)" in summary
    assert "Env steps: 163,840" in summary
    assert not re.search(r"\de[+-]\d", summary + page.split("<tbody>", 1)[1].split("</tbody>", 1)[0])


def test_text_run_summary_and_table_show_counts_as_counts(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _text_rows()))
    page = write_report(tmp_path).read_text()
    summary = page.split("<h2>Summary</h2>", 1)[1].split("</ul>", 1)[0]
    assert "Env steps" not in summary
    assert "Rounds done: 2" in summary and "Total feedback: 150 answers" in summary
    assert "Tokens generated while optimising: 4,542" in summary
    tbody = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert "<td>4,542</td>" in tbody and "<td>150</td>" in tbody and "e+03" not in tbody


def test_metrics_table_scrolls_inside_the_page(tmp_path: Path) -> None:
    page = write_report(_make_run(tmp_path)).read_text()
    assert re.search(r"\.wide\{[^}]*overflow-x:auto", page)
    table = page.split("<h2>Metrics</h2>", 1)[1]
    assert table.lstrip().startswith('<div class="wide">')
    assert "<th>true_<wbr>return_<wbr>std</th>" in table  # long headers may wrap at underscores


def _legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()] + [
        t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()
    ]


def test_legends_list_only_series_with_data() -> None:
    figs = report_figures(_text_rows())  # type: ignore[arg-type]
    assert _legend_texts(figs["reward_model"]) == ["accuracy vs human labels"]
    assert _legend_texts(figs["returns"]) == ["true return", "learned return (right axis)"]
    control = report_figures(_rows())  # type: ignore[arg-type]
    assert len(_legend_texts(control["reward_model"])) == 3
    assert "true return ± std" in _legend_texts(control["returns"])


@pytest.mark.parametrize("rows", [_rows(), _text_rows()], ids=["control", "text"])
def test_legends_sit_outside_the_plotting_area(rows: list[dict[str, object]]) -> None:
    for name, fig in report_figures(rows).items():  # type: ignore[arg-type]
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        assert fig.legends, name
        renderer = canvas.get_renderer()
        for legend in fig.legends:
            box = legend.get_window_extent(renderer)
            for ax in fig.axes:
                assert not box.overlaps(ax.get_window_extent(renderer)), f"{name}: legend over the data"


def test_both_accuracy_lines_stay_visible_where_they_coincide() -> None:
    fig = report_figures(_rows())["reward_model"]  # type: ignore[arg-type]
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    human, true = lines["accuracy vs human labels"], lines["accuracy vs true ordering"]
    assert human.get_linestyle() != true.get_linestyle() and human.get_marker() != true.get_marker()
    # The one underneath is drawn larger and hollow, so it rings the other where they coincide.
    below, above = sorted((human, true), key=lambda line: line.get_zorder())
    assert below.get_markersize() > above.get_markersize() and below.get_markerfacecolor() == "none"


def _learned_vs_true(true: list[float], learned: list[float]) -> list[dict[str, object]]:
    return [
        {"round": k, "true_return": t, "learned_return": lr}
        for k, (t, lr) in enumerate(zip(true, learned, strict=True))
    ]


def test_note_when_the_learned_return_outruns_a_flat_true_return(tmp_path: Path) -> None:
    flat = _learned_vs_true([-1100, -600, -250, -200, -195, -198, -196], [0, 5, 9, 14, 20, 27, 35])
    note = learned_outruns_true(flat)  # type: ignore[arg-type]
    # Rounds 4-6 show it; it began at round 3, where the true return had already flattened.
    assert note is not None and "From round 3 to round 6" in note and "stayed about flat" in note
    assert "(-200.0 → -196.0)" in note and "(14 → 35)" in note
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in flat))
    assert 'class="note"' in write_report(tmp_path).read_text()
    # Both still rising together, or the learned one flat: nothing to explain.
    rising = _learned_vs_true([-1100, -900, -700, -500, -300, -200, -100], [0, 5, 9, 14, 20, 27, 35])
    assert learned_outruns_true(rising) is None  # type: ignore[arg-type]
    assert learned_outruns_true(_learned_vs_true([-1100, -600, -250, -200, -195, -198, -196], [0] * 7)) is None  # type: ignore[arg-type]
    assert learned_outruns_true(flat[:3]) is None  # type: ignore[arg-type]  # too few rounds to call a trend
    falling = _learned_vs_true([-1100, -600, -250, -300, -400, -500], [0, 5, 9, 14, 20, 27])
    assert "true return fell (-300.0 → -500.0)" in (learned_outruns_true(falling) or "")  # type: ignore[arg-type]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rising))
    assert 'class="note"' not in write_report(tmp_path).read_text()


# -- what the policy does ------------------------------------------------------------------


def test_text_samples_of_base_and_latest_side_by_side(tmp_path: Path) -> None:
    run = _make_run(tmp_path)  # rounds 0..3
    prompts = ["the cat is", "the <b>fox</b> is"]
    write_samples(run, 0, text_samples(prompts, ["sad and dull .", "rude"], [-2.0, -2.0], [0.0, 0.0]))
    write_samples(run, 2, text_samples(prompts, ["kind .", "warm ."], [1.0, 1.0], [0.3, 0.2]))
    write_samples(run, 3, text_samples(prompts, ["happy and kind .", "calm ."], [2.0, 1.0], [0.5, 0.4]))
    page = write_report(run).read_text()
    section = page.split("<h2>What the policy does</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<th>base policy (round 0)</th><th>latest (round 3)</th>" in section
    rows = section.split("<tbody>", 1)[1].split("</tbody>", 1)[0].strip().split("\n")
    assert len(rows) == 2
    assert rows[0].startswith("<tr><td>the cat is</td><td>sad and dull .")
    assert "true reward -2" in rows[0] and "happy and kind ." in rows[0] and "true reward 2" in rows[0]
    assert "the &lt;b&gt;fox&lt;/b&gt; is" in rows[1] and "<b>fox" not in page
    assert "kind .</td>" not in section  # round 2 is neither the base nor the latest


def test_control_rollouts_of_base_and_latest_are_drawn_side_by_side(tmp_path: Path) -> None:
    run = _make_run(tmp_path)
    task = get_task("pendulum")
    env = task.make_env()
    spec = SpaceSpec.of(env.observation_space, env.action_space)
    env.close()
    for k, seed in [(0, 0), (3, 1)]:
        torch.manual_seed(seed)
        policy = ActorCritic(spec, (16,), 0.0, False)
        write_samples(run, k, rollout_samples(policy_rollout(policy, task.make_env, 10_000, 30, task.env_id)))
    page = write_report(run).read_text()
    section = page.split("<h2>What the policy does</h2>", 1)[1].split("<h2>", 1)[0]
    assert '<div class="pair">' in section
    base, latest = section.split("<figure>")[1:3]
    assert "base policy (round 0): true return" in base and 'src="samples/round_0000.gif"' in base
    assert "latest policy (round 3): true return" in latest and 'src="samples/round_0003-frames.png"' in latest
    assert "observation traces" not in section  # Pendulum is redrawn from its observations
    gif = run / "samples" / "round_0003.gif"
    assert gif.read_bytes().startswith(b"GIF89a")
    assert (run / "samples" / "round_0000-frames.png").read_bytes().startswith(b"\x89PNG")
    # Drawn once: a second report reuses the files.
    stamp = gif.stat().st_mtime_ns
    write_report(run)
    assert gif.stat().st_mtime_ns == stamp


def test_a_rollout_that_cannot_be_drawn_is_named_and_the_report_still_written(tmp_path: Path) -> None:
    run = _make_run(tmp_path)
    data = {"domain": "control", "env_id": "NoSuchEnv-v0", "observations": [[0.0, 1.0]] * 3, "actions": [[0.0]] * 3}
    write_samples(run, 0, {**data, "true_rewards": [-1.0, -1.0, -1.0]})
    page = write_report(run).read_text()
    assert "base policy (round 0): true return -3 over its first 3 steps" in page
    assert "could not draw this rollout: cannot render: unknown env id &#x27;NoSuchEnv-v0&#x27;" in page
