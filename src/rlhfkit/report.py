"""An HTML report for a finished (or running) run folder.

``write_report(run_dir)`` reads ``metrics.jsonl`` (one JSON object per round; round 0
is the base policy), ``config.toml`` and the per-round samples (``samples/``), draws
the plots into ``plots/`` and writes ``report.html`` next to them: a summary, a note
when the learned return runs away from the true one, what the base and the latest
policy do side by side, the plots, the metrics table and the config.

Plots use matplotlib's object API (``Figure``), which renders with the Agg canvas
without touching pyplot or the process-wide backend. Legends sit below the axes, so
they never cover data, and list only series that have data.
"""

from __future__ import annotations

import html
import io
import itertools
import json
import math
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rlhfkit.feedback.win_rate import WinRate, read_win_rates
from rlhfkit.files import atomic_write_bytes

_COLUMNS = [
    "round",
    "n_feedback",
    "human_minutes",
    "env_steps",
    "generated_tokens",
    "true_return",
    "true_return_std",
    "learned_return",
    "objective_return",
    "win_rate_vs_base",
    "kl_to_base",
    "beta",
    "rm_accuracy",
    "rm_true_accuracy",
    "rm_ece",
]
_COUNTS = frozenset({"round", "n_feedback", "env_steps", "generated_tokens", "rm_train_pairs", "n_incomparable"})
"""Columns that count things: shown as whole numbers even when an older run wrote them as floats."""

Row = dict[str, Any]


class ReportError(ValueError):
    """The run folder cannot be turned into a report (missing or malformed metrics)."""


def _read_metrics(path: Path) -> list[Row]:
    if not path.is_file():
        raise ReportError(f"{path}: metrics file not found")
    rows: list[Row] = []
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


def _series(rows: list[Row], key: str) -> list[float]:
    return [_num(r.get(key)) for r in rows]


def _has(rows: list[Row], key: str) -> bool:
    return any(math.isfinite(v) for v in _series(rows, key))


def number(v: float, signed: bool = False) -> str:
    """A number as a person reads it: ``-1,062``, ``-180.4``, ``12.3``, ``0.0584``; never ``-1.06e+03``.

    Whole numbers (ints) are shown exactly, with thousands separators.
    """
    sign = "+" if signed else ""
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:{sign},}"
    a = abs(v)
    if a >= 1000:
        return f"{v:{sign},.0f}"
    if a >= 100:
        return f"{v:{sign}.1f}"
    return f"{v:{sign}.3g}"


def _fmt(v: Any, key: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return html.escape(str(v))
    if key in _COUNTS and float(v).is_integer():
        return number(int(v))  # older runs wrote counts as floats (60.0)
    return number(v)


# -- plots ----------------------------------------------------------------------------


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    return fig, fig.add_subplot()


def _legend(fig: Figure, *axes: Axes) -> None:
    """One legend for all the figure's axes, below them (never over the data); nothing if nothing is drawn."""
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)


def _plot(ax: Axes, rows: list[Row], key: str, style: str, **kwargs: Any) -> None:
    """Draw ``key`` against the round if any round has a value for it (else no line, no legend entry)."""
    if _has(rows, key):
        ax.plot(_series(rows, "round"), _series(rows, key), style, **kwargs)


def _returns(rows: list[Row]) -> Figure:
    fig, ax = _figure()
    x, mean = _series(rows, "round"), _series(rows, "true_return")
    _plot(ax, rows, "true_return", "o-", color="C0", label="true return")
    if _has(rows, "true_return_std"):
        std = _series(rows, "true_return_std")
        low = [m - s for m, s in zip(mean, std, strict=True)]
        high = [m + s for m, s in zip(mean, std, strict=True)]
        ax.fill_between(x, low, high, color="C0", alpha=0.2, label="true return ± std")
    ax.set(xlabel="round", ylabel="true return", title="Returns")
    axes = [ax]
    if _has(rows, "learned_return"):
        learned = ax.twinx()
        _plot(learned, rows, "learned_return", "s--", color="C1", label="learned return (right axis)")
        learned.set_ylabel("learned return (reward model's scale)")
        axes.append(learned)
    _legend(fig, *axes)
    return fig


def _kl(rows: list[Row]) -> Figure:
    fig, ax = _figure()
    _plot(ax, rows, "kl_to_base", "o-", color="C2", label="KL to base")
    _plot(ax, rows, "beta", "^--", color="C3", label="beta (KL penalty weight)")
    ax.set(xlabel="round", ylabel="value", title="KL to the base policy")
    _legend(fig, ax)
    return fig


def _reward_model(rows: list[Row]) -> Figure:
    """Held-out accuracy against the people's labels and against the true ordering, and the ECE.

    With a noise-free simulated human the two accuracies are equal: the true ordering is
    drawn underneath with larger hollow markers, so both stay visible where they coincide.
    """
    fig, ax = _figure()
    _plot(ax, rows, "rm_true_accuracy", "s--", color="C1", label="accuracy vs true ordering", ms=10, mfc="none")
    _plot(ax, rows, "rm_accuracy", "o-", color="C0", label="accuracy vs human labels", ms=5, zorder=3)
    _plot(ax, rows, "rm_ece", "^:", color="C2", label="ECE (calibration error)")
    ax.set(xlabel="round", ylabel="held-out metric", title="Reward model on held-out answers", ylim=(0.0, 1.05))
    _legend(fig, ax)
    return fig


def _overoptimisation(rows: list[Row]) -> Figure:
    """Text runs: the task's gameable proxy and the completion length beside the true reward.

    A proxy that keeps rising while the true reward falls, with the length
    growing, is reward over-optimisation made visible.
    """
    fig, ax = _figure()
    _plot(ax, rows, "true_return", "o-", color="C0", label="true reward")
    _plot(ax, rows, "proxy_return", "s--", color="C1", label="proxy reward")
    ax.set(xlabel="round", ylabel="reward", title="True reward vs the gameable proxy")
    length = ax.twinx()
    _plot(length, rows, "length_words", "^:", color="C2", label="length in words (right axis)")
    length.set_ylabel("completion length (words)")
    _legend(fig, ax, length)
    return fig


def report_figures(rows: list[Row]) -> dict[str, Figure]:
    """The report's plots by file stem (``returns``, ``kl``, ``reward_model``, and for text runs
    ``overoptimisation``), drawn from the metrics rows."""
    figs = {"returns": _returns(rows), "kl": _kl(rows), "reward_model": _reward_model(rows)}
    if _has(rows, "proxy_return") and _has(rows, "length_words"):
        figs["overoptimisation"] = _overoptimisation(rows)
    for fig in figs.values():
        for ax in fig.axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figs


def _save(fig: Figure, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())


# -- text -------------------------------------------------------------------------------


def learned_outruns_true(rows: list[Row]) -> str | None:
    """A plain-words note when the learned return keeps rising while the true return does not; else None.

    Looks at the last half of the rounds after round 0 (at least 3 rounds): the learned
    return must rise over that stretch (in at least two thirds of its steps, by at least a
    fifth of its whole range) while the true return gains less than a tenth of its own
    range, or falls. The stretch named then reaches back over earlier rounds while the
    learned return was rising into it and the true return was already within a twentieth
    of its range of where it ends (where it flattened).
    """
    pts = [
        (int(r["round"]), t, lr)
        for r in rows
        if _num(r["round"]) >= 1
        for t, lr in [(_num(r.get("true_return")), _num(r.get("learned_return")))]
        if math.isfinite(t) and math.isfinite(lr)
    ]
    if len(pts) < 3:
        return None
    start = len(pts) - max(3, len(pts) // 2)
    window = pts[start:]
    (_, t0, l0), (k1, t1, l1) = window[0], window[-1]
    steps = [b[2] - a[2] for a, b in itertools.pairwise(window)]
    learned_range = max(p[2] for p in pts) - min(p[2] for p in pts)
    true_all = [v for v in _series(rows, "true_return") if math.isfinite(v)]
    true_range = max(true_all) - min(true_all)
    rising = l1 - l0 > 0.2 * learned_range > 0 and sum(d > 0 for d in steps) >= 2 * len(steps) / 3
    if not rising or t1 - t0 > 0.1 * true_range:
        return None
    while start > 0 and abs(t1 - pts[start - 1][1]) <= 0.05 * true_range and pts[start - 1][2] < pts[start][2]:
        start -= 1
    k0, t0, l0 = pts[start]
    went = "fell" if t1 < t0 - 0.1 * true_range else "stayed about flat"
    return (
        f"From round {k0} to round {k1} the learned return kept rising ({number(l0)} → {number(l1)}) while the "
        f"true return {went} ({number(t0)} → {number(t1)}). A rising learned return is not progress by itself: "
        "each round's learned return is measured with that round's reward model, whose scale grows as it is "
        "refitted on more answers, and a policy optimised against a learned reward finds behaviour the reward "
        "model rates higher than the task does (reward over-optimisation). Judge progress by the true return "
        "and by what the policy does (below); feedback on the latest policy's behaviour, or a larger KL "
        "penalty (beta), keeps the learned reward honest."
    )


def _summary(rows: list[Row]) -> str:
    first, last = rows[0], rows[-1]
    # a run without a true reward (your own chatbot) is summed up by what its policy maximises
    key = "true_return" if _has(rows, "true_return") or not _has(rows, "objective_return") else "objective_return"
    r0, rn = _num(first.get(key)), _num(last.get(key))
    change = f" ({number(rn - r0, signed=True)})" if math.isfinite(r0) and math.isfinite(rn) else ""
    feedback = f"Total feedback: {_fmt(last.get('n_feedback'), 'n_feedback')} answers"
    if math.isfinite(_num(last.get("human_minutes"))):
        feedback += f" ({_fmt(last.get('human_minutes'))} human-minutes)"
    items = [
        f"Rounds done: {_fmt(last['round'], 'round')}",
        f"Final {key.replace('_', ' ')}: {_fmt(last.get(key))} vs {_fmt(first.get(key))}"
        f" at round {_fmt(first['round'], 'round')}{change}",
        feedback,
    ]
    if math.isfinite(_num(last.get("win_rate_vs_base"))):
        items.append(f"Win rate against the base policy (the run's judge): {_fmt(last.get('win_rate_vs_base'))}")
    if _has(rows, "env_steps"):
        items.append(f"Env steps: {_fmt(last.get('env_steps'), 'env_steps')}")
    if _has(rows, "generated_tokens"):
        items.append(f"Tokens generated while optimising: {_fmt(last.get('generated_tokens'), 'generated_tokens')}")
    return "<ul>\n" + "".join(f"<li>{i}</li>\n" for i in items) + "</ul>"


def _table(rows: list[Row]) -> str:
    cols = [c for c in _COLUMNS if any(c in r for r in rows)]
    cols += sorted({k for r in rows for k in r} - set(cols))
    # Headers may break after an underscore, so a wide table stays narrow without renaming columns.
    head = "<tr>" + "".join(f"<th>{html.escape(c).replace('_', '_<wbr>')}</th>" for c in cols) + "</tr>"
    body = "\n".join("<tr>" + "".join(f"<td>{_fmt(r.get(c), c)}</td>" for c in cols) + "</tr>" for r in rows)
    return f'<div class="wide">\n<table>\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table>\n</div>'


_STYLE = """body{font-family:sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
.wide{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:0.85em}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{vertical-align:bottom;max-width:7em}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1em}
.plots figure{margin:0}
img{max-width:100%}
.note{background:#fff6e0;border-left:4px solid #e0a000;padding:0.6em 1em}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1.5em}
.pair figure{margin:0}
table.samples{font-size:0.95em;width:100%}
table.samples td,table.samples th{text-align:left;vertical-align:top;padding:4px 8px}
table.samples .score{color:#666;font-size:0.85em;white-space:nowrap}
pre{background:#f4f4f4;padding:1em;overflow-x:auto}"""


def _verdicts(rates: list[WinRate]) -> str:
    """People's comparisons of each round's policy against the base (empty where the run asks none)."""
    if not rates:
        return ""
    body = "\n".join(f"<tr><td>{r.round:,}</td><td>{r.answers:,}</td><td>{_fmt(r.win_rate)}</td></tr>" for r in rates)
    return (
        "<h2>Judged by people against the base</h2>\n"
        "<p>Each round's policy against the base policy on held-out prompts, asked after the round's evaluation "
        "and never fitted; a tie counts half. Answers that arrive later show when the report is written again "
        "(<code>rlhfkit report RUN_DIR</code>).</p>\n"
        "<table>\n<thead><tr><th>round</th><th>answers</th><th>win rate</th></tr></thead>\n"
        f"<tbody>\n{body}\n</tbody>\n</table>"
    )


def write_report(run_dir: str | Path) -> Path:
    """Write ``plots/*.png`` and ``report.html`` into ``run_dir``; returns the report's path."""
    from rlhfkit.report_samples import samples_section  # it formats numbers with this module's `number`

    run_dir = Path(run_dir)
    rows = _read_metrics(run_dir / "metrics.jsonl")
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    figures = report_figures(rows)
    for name, fig in figures.items():
        _save(fig, plots / f"{name}.png")
    cfg_path = run_dir / "config.toml"
    config = cfg_path.read_text(encoding="utf-8") if cfg_path.is_file() else "(no config.toml in the run folder)"
    title = f"rlhfkit run report: {html.escape(run_dir.resolve().name)}"
    figs = "\n".join(f'<figure><img src="plots/{name}.png" alt="{name} plot"></figure>' for name in figures)
    note = learned_outruns_true(rows)
    note_html = f'<p class="note">{html.escape(note)}</p>\n' if note else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{_STYLE}</style></head><body>
<h1>{title}</h1>
<h2>Summary</h2>
{_summary(rows)}
{note_html}{samples_section(run_dir, [int(_num(r["round"])) for r in rows])}
{_verdicts(read_win_rates(run_dir))}
<h2>Plots</h2>
<div class="plots">
{figs}
</div>
<h2>Metrics</h2>
{_table(rows)}
<h2>Config</h2>
<pre>{html.escape(config)}</pre>
</body></html>
"""
    report = run_dir / "report.html"
    atomic_write_bytes(report, page.encode("utf-8"))
    return report
