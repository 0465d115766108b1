"""The monthly report job: last month's report on `[reports] day` at `hour`:`minute`, site-local.

`add_jobs(runner, store, cfg)` registers `monthly-report` on a collectors.jobs.JobRunner with a
Calendar schedule in the first site's time zone (DST-safe, as every calendar job). Each run makes
the report of the month before the one its start time falls in, in every configured language and
format, and archives the files (reports/archive.py): a month made again, by the job or by hand,
keeps its earlier versions. `[reports] schedule = false` registers nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import config
from collectors.jobs import Calendar, JobResult
from queries import history
from queries.store import Store
from reports import archive, data

JOB = "monthly-report"


def schedule(cfg: config.Config) -> Calendar:
    r = cfg.reports
    return Calendar("monthly", r.hour, r.minute, day=r.day, tz=history.default_tz(cfg))


def run(store: Store, cfg: config.Config, now: datetime) -> JobResult:
    """Make and archive last month's report (relative to `now`, site-local)."""
    month = data.last_month(cfg, now)
    report, _, rows = archive.generate(store, cfg, month, trigger="job", now=now)
    versions = sorted({int(r["version"]) for r in rows})
    detail = f"{month}: {len(rows)} files, version {', '.join(map(str, versions))}"
    if not report.charts:
        detail += "; without charts"
    return JobResult(rows=len(rows), detail=detail)


def add_jobs(runner: Any, store: Store, cfg: config.Config) -> None:
    """Register the monthly report job (unless `[reports] schedule = false`)."""
    if not cfg.reports.schedule:
        return
    runner.add(JOB, schedule(cfg), lambda now: run(store, cfg, now))
