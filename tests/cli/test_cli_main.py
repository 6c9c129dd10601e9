"""`rlhfkit` itself: help and argument errors answer before any slow import; `python -m` starts it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "transformers", "sqlalchemy", "gymnasium", "matplotlib", "numpy")


def test_help_and_argument_errors_import_nothing_heavy(tmp_path: Path) -> None:
    """`rlhfkit --help`, `run --help` and mistakes in the arguments answer before any slow import."""
    script = f"""
import sys
from rlhfkit.cli import main
for argv in (["--help"], ["run", "--help"], ["serve"], ["run"], ["run", "--resume", {str(tmp_path / "nope")!r}]):
    try:
        main(argv)
    except SystemExit:
        pass
print("heavy:", sorted(m for m in {HEAVY!r} if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "heavy: []" in done.stdout, done.stdout
    assert "give a CONFIG.toml" in done.stderr and "no such run folder" in done.stderr


def test_python_dash_m_starts_the_command_line() -> None:
    """`python -m rlhfkit` and `python -m rlhfkit.cli` are the `rlhfkit` command, argument errors included."""
    commands = "{run,report,fit-reward,dpo,serve,annotators,export,import,config-help}"
    for module in ("rlhfkit", "rlhfkit.cli"):
        done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("usage: rlhfkit") and commands in done.stdout, done.stdout
        done = subprocess.run([sys.executable, "-m", module, "serve"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "the following arguments are required: RUN_DIR" in done.stderr, done.stderr
