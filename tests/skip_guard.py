"""Under CI a skipped test fails the session (pytest plugin, enabled by ``tests/conftest.py``).

Some tests need services a developer's machine may lack (chromium for the browser
tests, a PostgreSQL server for the store's second backend); there they skip and
say why. ``.ci/run`` installs and starts those services and exports
``RLHFKIT_CI=1``, so under CI a skip means that set-up broke: the session then
ends with a failing exit status and a section naming each skipped test and its
reason, instead of a green run that reads "N skipped".

Collection-time skips (``pytest.importorskip`` at module level) count too.
Expected failures (``xfail``) are not skips and are left alone.
"""

from __future__ import annotations

import os

import pytest

CI_ENV = "RLHFKIT_CI"


def under_ci() -> bool:
    """True when ``RLHFKIT_CI`` is set to anything but empty or ``0``."""
    return os.environ.get(CI_ENV, "") not in ("", "0")


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    # A skip's longrepr is (path, line, "Skipped: <reason>").
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class SkipGuard:
    """Records every skip of the session and turns a passing exit status into a failing one."""

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []  # (node id, reason)

    def _record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skipped.append((report.nodeid, _reason(report)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._record(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.skipped and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.skipped:
            return
        tr = terminalreporter
        tr.section(f"{len(self.skipped)} skipped under {CI_ENV}=1: CI fails", sep="=", red=True, bold=True)
        for nodeid, reason in self.skipped:
            tr.line(f"SKIPPED {nodeid} - {reason}", red=True)
        tr.line(f"{CI_ENV}=1 (.ci/run) sets up every service the tests need: a skip there means the set-up broke.")


def pytest_configure(config: pytest.Config) -> None:
    if under_ci():
        config.pluginmanager.register(SkipGuard(), "rlhfkit-skip-guard")
