"""An HTML report for a finished (or running) run folder.

``write_report(run_dir)`` reads ``metrics.jsonl`` (one JSON object per round; round 0
is the base policy) and ``config.toml``, draws three PNG plots into ``plots/`` and
writes ``report.html`` next to them. Plots use matplotlib's object API (``Figure``),
which renders with the Agg canvas without touching pyplot or the process-wide backend.
"""

from __future__ import annotations

import html
import io
import json
import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rlhfkit.files import atomic_write_bytes

_COLUMNS = [
    "round",
    "n_feedback",
    "env_steps",
    "true_return",
    "true_return_std",
    "learned_return",
    "kl_to_base",
    "beta",
    "rm_accuracy",
    "rm_true_accuracy",
    "rm_ece",
]


class ReportError(ValueError):
    """The run folder cannot be turned into a report (missing or malformed metrics)."""


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ReportError(f"{path}: metrics file not found")
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ReportError(f"{path}, line {n}: not valid JSON ({e.msg})") from e
        if not isinstance(row, dict) or "round" not in row:
            raise ReportError(f"{path}, line {n}: expected a JSON object with a 'round' key")
        if math.isnan(_num(row["round"])):
            raise ReportError(f"{path}, line {n}: 'round' must be a number, got {row['round']!r}")
        rows.append(row)
    if not rows:
        raise ReportError(f"{path}: metrics file is empty")
    return sorted(rows, key=lambda r: r["round"])


def _num(v: Any) -> float:
    """A float for plotting; null, missing or non-numeric values become NaN (a gap)."""
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def _series(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [_num(r.get(key)) for r in rows]


def _has(rows: list[dict[str, Any]], key: str) -> bool:
    return any(not math.isnan(v) for v in _series(rows, key))


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)  # counts (round, feedback, env steps) are shown exactly
    if isinstance(v, float):
        return f"{v:.3g}"
    return html.escape(str(v))


def _save(fig: Figure, path: Path) -> None:
    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())


def _plot_returns(rows: list[dict[str, Any]], path: Path) -> None:
    x = _series(rows, "round")
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    mean, std = _series(rows, "true_return"), _series(rows, "true_return_std")
    ax.plot(x, mean, "o-", color="C0", label="true return")
    if _has(rows, "true_return_std"):
        ax.fill_between(
            x,
            [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)],
            color="C0",
            alpha=0.2,
            label="± std",
        )
    ax.set(xlabel="round", ylabel="true return", title="Returns")
    ax2 = ax.twinx()
    ax2.plot(x, _series(rows, "learned_return"), "s--", color="C1", label="learned return")
    ax2.set_ylabel("learned return")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="best")
    _save(fig, path)


def _plot_kl(rows: list[dict[str, Any]], path: Path) -> None:
    x = _series(rows, "round")
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, _series(rows, "kl_to_base"), "o-", color="C2", label="KL to base")
    if _has(rows, "beta"):
        ax.plot(x, _series(rows, "beta"), "^--", color="C3", label="beta")
    ax.set(xlabel="round", ylabel="value", title="KL to the base policy")
    ax.legend(loc="best")
    _save(fig, path)


def _plot_reward_model(rows: list[dict[str, Any]], path: Path) -> None:
    x = _series(rows, "round")
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for key, label, style in [
        ("rm_accuracy", "accuracy vs human labels", "o-"),
        ("rm_true_accuracy", "accuracy vs true ordering", "s-"),
        ("rm_ece", "ECE", "^--"),
    ]:
        ax.plot(x, _series(rows, key), style, label=label)
    ax.set(xlabel="round", ylabel="held-out metric", title="Reward model", ylim=(0.0, 1.0))
    ax.legend(loc="best")
    _save(fig, path)


def _plot_overoptimisation(rows: list[dict[str, Any]], path: Path) -> None:
    """Text runs: the task's gameable proxy and the completion length beside the true reward.

    A proxy that keeps rising while the true reward falls, with the length
    growing, is reward over-optimisation made visible.
    """
    x = _series(rows, "round")
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, _series(rows, "true_return"), "o-", color="C0", label="true reward")
    ax.plot(x, _series(rows, "proxy_return"), "s--", color="C1", label="proxy reward")
    ax.set(xlabel="round", ylabel="reward", title="True reward vs the gameable proxy")
    length = ax.twinx()
    length.plot(x, _series(rows, "length_words"), "^:", color="C2", label="length (words)")
    length.set_ylabel("completion length (words)")
    handles = ax.get_legend_handles_labels()
    more = length.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="best")
    _save(fig, path)


def _summary(rows: list[dict[str, Any]]) -> str:
    first, last = rows[0], rows[-1]
    r0, rn = _num(first.get("true_return")), _num(last.get("true_return"))
    change = f" ({rn - r0:+.3g})" if math.isfinite(r0) and math.isfinite(rn) else ""
    items = [
        f"Rounds done: {_fmt(last['round'])}",
        f"Final true return: {_fmt(last.get('true_return'))} vs {_fmt(first.get('true_return'))}"
        f" at round {_fmt(first['round'])}{change}",
        f"Total feedback: {_fmt(last.get('n_feedback'))}",
        f"Env steps: {_fmt(last.get('env_steps'))}",
    ]
    return "<ul>\n" + "".join(f"<li>{i}</li>\n" for i in items) + "</ul>"


def _table(rows: list[dict[str, Any]]) -> str:
    cols = [c for c in _COLUMNS if any(c in r for r in rows)]
    cols += sorted({k for r in rows for k in r} - set(cols))
    head = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
    body = "\n".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table>\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def write_report(run_dir: str | Path) -> Path:
    """Write ``plots/*.png`` and ``report.html`` into ``run_dir``; returns the report's path."""
    run_dir = Path(run_dir)
    rows = _read_metrics(run_dir / "metrics.jsonl")
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    _plot_returns(rows, plots / "returns.png")
    _plot_kl(rows, plots / "kl.png")
    _plot_reward_model(rows, plots / "reward_model.png")
    names = ["returns", "kl", "reward_model"]
    if _has(rows, "proxy_return") and _has(rows, "length_words"):
        _plot_overoptimisation(rows, plots / "overoptimisation.png")
        names.append("overoptimisation")
    cfg_path = run_dir / "config.toml"
    config = cfg_path.read_text(encoding="utf-8") if cfg_path.is_file() else "(no config.toml in the run folder)"
    title = f"rlhfkit run report: {html.escape(run_dir.resolve().name)}"
    figs = "\n".join(f'<figure><img src="plots/{name}.png" alt="{name}"></figure>' for name in names)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}img{{max-width:100%}}
pre{{background:#f4f4f4;padding:1em}}</style></head><body>
<h1>{title}</h1>
<h2>Summary</h2>
{_summary(rows)}
<h2>Plots</h2>
{figs}
<h2>Metrics</h2>
{_table(rows)}
<h2>Config</h2>
<pre>{html.escape(config)}</pre>
</body></html>
"""
    report = run_dir / "report.html"
    atomic_write_bytes(report, page.encode("utf-8"))
    return report
