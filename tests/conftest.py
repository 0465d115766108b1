"""Shared fixtures, and the CI rule that no test may be skipped there.

With ZHISUAN_NO_SKIP set (.ci/run sets it), a skipped test fails the run: in
CI every system package is installed, so a skip means a missing install step.
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
