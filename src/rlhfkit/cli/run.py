"""``rlhfkit run``, ``report`` and ``config-help``: start or resume a run, rebuild its report, list the config."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

from rlhfkit.errors import ConfigError


def _check_run_folder(path: Path) -> None:
    """Refuse, in one line, a ``--resume`` path that is not a run folder (before the slow imports)."""
    if path.is_file():
        hint = f"; to start a run from this config: rlhfkit run {path}" if path.suffix == ".toml" else ""
        raise FileNotFoundError(f"{path} is a file, not a run folder{hint}")
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run folder")
    if not (path / "config.toml").is_file():
        raise FileNotFoundError(
            f"{path} is not a run folder (it has no config.toml, which `rlhfkit run CONFIG --out {path}` writes first)"
        )


def run_command(args: argparse.Namespace) -> int:
    """Start a run from ``args.config`` or resume ``args.resume``; rewrite its report after every round."""
    # Mistakes in the arguments are reported before the slow imports below.
    if args.resume:
        if args.config is not None or args.out is not None or args.seed is not None:
            raise ConfigError(
                "--resume RUN_DIR takes its config from RUN_DIR/config.toml; drop CONFIG, --out and --seed"
            )
        _check_run_folder(Path(args.resume))
    elif args.config is None:
        raise ConfigError("give a CONFIG.toml to start a run, or --resume RUN_DIR to continue one")
    elif not Path(args.config).is_file():
        raise ConfigError(f"{args.config}: no such config file")

    from rlhfkit.config import load_config
    from rlhfkit.loop import Run
    from rlhfkit.report import number, write_report

    if args.resume:
        run = Run.resume(args.resume)
    else:
        config_file = str(args.config)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(args.out) if args.out else Path("runs") / f"{Path(config_file).stem}-{stamp}"
        notes: list[str] = []
        cfg = load_config(config_file, notes=notes)
        for note in notes:
            print(note, file=sys.stderr)
        if args.seed is not None:
            cfg = dataclasses.replace(cfg, seed=args.seed)
        run = Run.create(cfg, out)
    print(f"run folder: {run.dir}", file=sys.stderr)

    def on_round(row: dict[str, float]) -> None:
        write_report(run.dir)

    history = run.run(on_round=on_round)
    report = write_report(run.dir)
    first, last = history[0], history[-1]
    # a run without a true reward (your own chatbot) is judged by what it maximises
    key = "true_return" if math.isfinite(last["true_return"]) else "objective_return"
    name = key.replace("_", " ")
    print(
        f"done: {last['round']:.0f} rounds, {name} {number(first[key])} -> {number(last[key])}, "
        f"KL to base {last['kl_to_base']:.3f}, {last['n_feedback']:.0f} answers; report: {report}"
    )
    return 0


def report_command(args: argparse.Namespace) -> int:
    """Rebuild ``RUN_DIR/report.html`` and print its path."""
    from rlhfkit.config import load_config
    from rlhfkit.feedback.web import open_run_store
    from rlhfkit.feedback.win_rate import write_win_rates
    from rlhfkit.report import write_report

    config_path = Path(args.run_dir) / "config.toml"
    if config_path.is_file():  # people's verdicts on the policy may have arrived since the run wrote its report
        config = load_config(config_path, notes=[])
        if config.text is not None and config.text.people_win_rate > 0:
            write_win_rates(Path(args.run_dir), open_run_store(args.run_dir, config.feedback.store_url))
    print(write_report(args.run_dir))
    return 0


def config_help_command(args: argparse.Namespace) -> int:
    """Print every config field of both kinds of run with its default (the task's) and meaning."""
    from rlhfkit.config import RunConfig, config_for_task, describe
    from rlhfkit.domains.text import TEXT_TASKS

    control = "a built-in task (pendulum, cartpole, reacher, halfcheetah) or env:<gymnasium id>"
    lines = [
        "# One schema: task, rounds, seed, the shared [feedback], [reward] and [kl], and the domain's own section.",
        f"# Control runs ([control]): task = {control}; defaults shown for pendulum",
        *describe(RunConfig, domain="control", defaults=config_for_task({"task": "pendulum"})),
        "",
        f"# Text runs ([text]): task = {' or '.join(repr(t) for t in TEXT_TASKS)}",
        *describe(RunConfig, domain="text", defaults=config_for_task({"task": TEXT_TASKS[0]})),
    ]
    print("\n".join(lines))
    return 0
