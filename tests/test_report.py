"""Tests for rlhfkit.report: the HTML report and its plots, and the errors on bad metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rlhfkit.report import ReportError, write_report

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
