"""CI fails on a skipped test; a developer's run still skips with the reason (tests/skip_guard.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from skip_guard import CI_ENV

SKIPPING = """
import pytest

def test_that_runs():
    pass

@pytest.mark.skipif(True, reason="no frobnicator on this machine")
def test_needs_a_frobnicator():
    pass
"""

SKIPPING_AT_COLLECTION = """
import pytest

pytest.importorskip("rlhfkit_no_such_module", reason="the widget library is missing")

def test_never_collected():
    pass
"""


def _pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """Run pytest with the skip guard on two tiny test files in ``tmp_path``, with or without ``RLHFKIT_CI``."""
    (tmp_path / "test_skipping.py").write_text(SKIPPING, encoding="utf-8")
    (tmp_path / "test_skipping_at_collection.py").write_text(SKIPPING_AT_COLLECTION, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in (CI_ENV, "PYTEST_ADDOPTS")}
    if ci is not None:
        env[CI_ENV] = ci
    tests_dir = str(Path(__file__).parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (tests_dir, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "pytest", "-p", "skip_guard", "-p", "no:cacheprovider", "-rs", str(tmp_path)]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_skip_fails_the_session_under_ci_and_is_named(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "1")
    out = done.stdout
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert "2 skipped under RLHFKIT_CI=1" in out, out
    assert "test_skipping.py::test_needs_a_frobnicator - no frobnicator on this machine" in out, out
    assert "test_skipping_at_collection.py - the widget library is missing" in out, out
    assert "1 passed" in out, out


@pytest.mark.parametrize("ci", [None, "", "0"])
def test_without_ci_a_skip_passes_with_its_reason(tmp_path: Path, ci: str | None) -> None:
    done = _pytest(tmp_path, ci)
    out = done.stdout
    assert done.returncode == pytest.ExitCode.OK, out
    assert "no frobnicator on this machine" in out and "the widget library is missing" in out, out
    assert "RLHFKIT_CI" not in out, out


def test_the_suite_enables_the_guard(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.has_plugin("skip_guard")
