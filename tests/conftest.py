"""Shared fixtures, the fault-injection summary, and the CI rule that no test may be skipped there.

With ZHISUAN_NO_SKIP set (.ci/run sets it), a skipped test fails the run: in
CI every system package is installed, so a skip means a missing install step.

Fault-injection tests carry `@pytest.mark.fault`. Each counts as one fault tried
(or as many as it declares with `faults.tried(n)`), survived when it passed; a test
that stores data through a fault reports what it expected and what the store holds
with `faults.stored(expected=..., unique=..., rows=...)`. The run ends with the line
"faults tried N, survived N, samples lost N, duplicates stored N".
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import config  # noqa: E402
from queries import Store  # noqa: E402


@pytest.fixture(scope="session")
def cfg() -> config.Config:
    return config.load(config.CONFIG_DIR)


@pytest.fixture
def store():
    s = Store(":memory:")
    yield s
    s.close()


class FaultLog:
    """What one fault test tried and what it found stored (see module docstring)."""

    def __init__(self) -> None:
        self.n = 1
        self.lost = 0
        self.duplicates = 0

    def tried(self, n: int) -> None:
        self.n = n

    def stored(self, *, expected: int, unique: int, rows: int | None = None) -> None:
        """`expected` samples went in, the store holds `unique` distinct keys in `rows` rows."""
        self.lost += max(0, expected - unique)
        self.duplicates += max(0, (unique if rows is None else rows) - unique)


_FAULTS: dict[str, FaultLog] = {}
_FAULT_OUTCOMES: dict[str, bool] = {}


@pytest.fixture
def faults(request) -> FaultLog:
    log = _FAULTS.setdefault(request.node.nodeid, FaultLog())
    return log


def pytest_configure(config):
    config.addinivalue_line("markers", "fault: a fault-injection test (counted in the faults summary line)")


def pytest_runtest_logreport(report):
    if "fault" not in report.keywords:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _FAULT_OUTCOMES[report.nodeid] = report.passed and _FAULT_OUTCOMES.get(report.nodeid, True)
    elif report.when == "teardown" and not report.passed:
        _FAULT_OUTCOMES[report.nodeid] = False


def pytest_terminal_summary(terminalreporter):
    if not _FAULT_OUTCOMES:
        return
    tried = survived = lost = duplicates = 0
    for nodeid, ok in _FAULT_OUTCOMES.items():
        log = _FAULTS.get(nodeid, FaultLog())
        tried += log.n
        survived += log.n if ok else 0
        lost += log.lost
        duplicates += log.duplicates
    terminalreporter.write_line(f"faults tried {tried}, survived {survived}, samples lost {lost}, "
                                f"duplicates stored {duplicates}")
    for nodeid in _FAULT_OUTCOMES:                  # where a loss or a duplicate came from
        log = _FAULTS.get(nodeid, FaultLog())
        if log.lost or log.duplicates:
            terminalreporter.write_line(f"  {nodeid}: samples lost {log.lost}, duplicates stored {log.duplicates}")


def pytest_sessionfinish(session, exitstatus):
    if not os.environ.get("ZHISUAN_NO_SKIP"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"ZHISUAN_NO_SKIP: {len(skipped)} test(s) skipped; in CI every test must run:", red=True)
        for rep in skipped:
            reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
            reporter.write_line(f"  {rep.nodeid}: {reason}", red=True)
        session.exitstatus = 1
