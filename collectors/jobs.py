"""Jobs beside the scrapes: named work on an interval or a calendar, each run recorded.

The owner process runs store maintenance (reopening the file, handing memory back),
the simulator's history back-fill and, in later issues, rollups, retention and reports
as jobs. A job is a function of the run's start time; registering one is a single call:

    runner.add("reopen", Every(3 * 3600), reopen_fn)
    runner.add("monthly-report", parse_schedule("monthly 1 06:00", "Asia/Shanghai"), report_fn)

Every run is written with `store.record_job_run` (start, duration, ok, rows, the error
in English and as message keys), so the Sources page shows it wherever the owner runs.
A failing job is recorded and logged; it never stops the runner, the other jobs or the
scrapes. Calendar schedules are computed in the site's zone (`sites[].timezone`) and
are DST-safe: a local time the clocks skip runs at the first instant after the gap,
one they repeat runs once, at its first occurrence.

`run_due(now)` runs what is due synchronously (tests, and the thread's own loop); the
thread started by `start()` runs each due job on a small pool, never two runs of one job
at once, so a long back-fill does not hold back the memory release.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Protocol
from zoneinfo import ZoneInfo

import i18n
from i18n import Msg, msg

log = logging.getLogger(__name__)


class Schedule(Protocol):
    def first(self, now: datetime) -> datetime | None:
        """When a job registered at `now` first runs (None: never)."""

    def next_run(self, after: datetime) -> datetime | None:
        """The first run strictly after `after` (None: no more runs)."""


@dataclass(frozen=True)
class Every:
    """Every `seconds`; the first run one interval after start, or at start with `at_start`."""

    seconds: float
    at_start: bool = False

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError(f"an interval must be positive, not {self.seconds!r} s")

    def first(self, now: datetime) -> datetime:
        return now if self.at_start else self.next_run(now)

    def next_run(self, after: datetime) -> datetime:
        return after + timedelta(seconds=self.seconds)

    def describe(self) -> Msg:
        return msg("job.schedule.every", every=_span(self.seconds))


@dataclass(frozen=True)
class Once:
    """One run, as soon as the runner starts (e.g. the simulator's back-fill; it resumes itself)."""

    def first(self, now: datetime) -> datetime:
        return now

    def next_run(self, after: datetime) -> None:
        return None

    def describe(self) -> Msg:
        return msg("job.schedule.once")


@dataclass(frozen=True)
class Calendar:
    """Daily at hh:mm, or monthly on day `day` (1-28) at hh:mm, local time in `tz`."""

    period: str                 # "daily" | "monthly"
    hour: int = 0
    minute: int = 0
    day: int = 1
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if self.period not in ("daily", "monthly"):
            raise ValueError(f"a calendar schedule is daily or monthly, not {self.period!r}")
        if not (0 <= self.hour < 24 and 0 <= self.minute < 60):
            raise ValueError(f"no such time of day: {self.hour:02d}:{self.minute:02d}")
        if not 1 <= self.day <= 28:            # every month has it
            raise ValueError(f"a monthly day must be 1-28, not {self.day}")
        ZoneInfo(self.tz)                      # an unknown zone fails at registration, not at 06:00

    def first(self, now: datetime) -> datetime:
        return self.next_run(now)

    def _at(self, d: date) -> datetime:
        # fold=0: an ambiguous local time is its first occurrence; a skipped one maps past the gap
        local = datetime(d.year, d.month, d.day, self.hour, self.minute, tzinfo=ZoneInfo(self.tz))
        return local.astimezone(timezone.utc)

    def next_run(self, after: datetime) -> datetime:
        local_day = after.astimezone(ZoneInfo(self.tz)).date()
        if self.period == "daily":
            d = local_day - timedelta(days=1)
            while True:                        # yesterday's slot may still lie ahead in UTC terms
                at = self._at(d)
                if at > after:
                    return at
                d += timedelta(days=1)
        y, m = local_day.year, local_day.month - 1
        if m == 0:
            y, m = y - 1, 12
        while True:
            at = self._at(date(y, m, self.day))
            if at > after:
                return at
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)

    def describe(self) -> Msg:
        hhmm = f"{self.hour:02d}:{self.minute:02d}"
        if self.period == "daily":
            return msg("job.schedule.daily", time=hhmm, tz=self.tz)
        return msg("job.schedule.monthly", day=self.day, time=hhmm, tz=self.tz)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _span(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g} {unit}"
    return f"{seconds:g} s"


def parse_schedule(text: str, tz: str = "UTC") -> Every | Calendar | Once:
    """"every 3h" / "every 15m" / "once" / "daily 02:00" / "monthly 1 06:00" (local time in `tz`)."""
    s = " ".join(text.lower().split())
    if s == "once":
        return Once()
    if m := re.fullmatch(r"every (\d+(?:\.\d+)?) ?([smhd])", s):
        return Every(float(m.group(1)) * _UNITS[m.group(2)])
    if m := re.fullmatch(r"daily (\d{1,2}):(\d{2})", s):
        return Calendar("daily", int(m.group(1)), int(m.group(2)), tz=tz)
    if m := re.fullmatch(r"monthly (\d{1,2}) (\d{1,2}):(\d{2})", s):
        return Calendar("monthly", int(m.group(2)), int(m.group(3)), day=int(m.group(1)), tz=tz)
    raise ValueError(f"unknown schedule {text!r}: expected 'every 3h', 'once', 'daily 02:00' "
                     "or 'monthly 1 06:00'")


@dataclass
class JobResult:
    """What a job reports: rows written, notes (stored as keys) and a short detail."""

    rows: int = 0
    notes: list[Msg | str] = field(default_factory=list)
    detail: str | None = None


JobFn = Callable[[datetime], "JobResult | int | None"]


@dataclass
class JobRun:
    job: str
    started_at: datetime
    duration_s: float
    ok: bool
    rows: int
    error: str | None = None
    error_msg: str | None = None
    detail: str | None = None


@dataclass
class Job:
    name: str
    schedule: Schedule
    fn: JobFn
    due: datetime | None = None
    running: bool = False
    last: JobRun | None = None


def describe_error(exc: BaseException) -> Msg:
    """A failure in words, as a message key (an error that carries its own `msg` keeps it)."""
    own = getattr(exc, "msg", None)
    if isinstance(own, Msg):
        return own
    return msg("job.error.exception", type=type(exc).__name__, detail=str(exc))


class JobRunner:
    """See module docstring. `clock` gives epoch seconds; `timer` measures durations."""

    def __init__(self, store, *, clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.perf_counter, workers: int = 4,
                 on_run: Callable[[JobRun], None] | None = None):
        self.store = store
        self.clock = clock
        self.timer = timer
        self.on_run = on_run
        self.jobs: dict[str, Job] = {}
        self.ran = threading.Event()          # set after every recorded run (tests wait on it)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def add(self, name: str, schedule: Schedule, fn: JobFn, *, now: datetime | None = None) -> Job:
        """Register a job; its first run is `schedule.first(now)`."""
        with self._lock:
            if name in self.jobs:
                raise ValueError(f"a job named {name!r} is already registered")
            job = Job(name, schedule, fn, due=schedule.first(now or self._now()))
            self.jobs[name] = job
        self._wake.set()
        return job

    def _take_due(self, now: datetime) -> list[Job]:
        with self._lock:
            due = [j for j in self.jobs.values() if not j.running and j.due is not None and j.due <= now]
            for j in due:
                j.running = True
            return due

    def run_due(self, now: datetime | None = None) -> list[JobRun]:
        """Run every job due at `now` (default: the clock), one after another, in this thread;
        `now` is the runs' start time."""
        now = now or self._now()
        return [self._run(job, now) for job in self._take_due(now)]

    def run_now(self, name: str) -> JobRun:
        """Run one job at once, whatever its schedule (its next run stays as scheduled)."""
        with self._lock:
            job = self.jobs[name]
            if job.running:
                raise RuntimeError(f"job {name!r} is running")
            job.running = True
            due = job.due
        run = self._run(job)
        with self._lock:
            job.due = due if due is not None and due > run.started_at else job.due
        return run

    def _run(self, job: Job, at: datetime | None = None) -> JobRun:
        started = at or self._now()
        t0 = self.timer()
        try:
            out = job.fn(started)
            res = out if isinstance(out, JobResult) else JobResult(rows=int(out or 0))
            run = JobRun(job.name, started, self.timer() - t0, True, res.rows,
                         error=i18n.english(res.notes), error_msg=i18n.dumps(res.notes) if res.notes else None,
                         detail=res.detail)
        except Exception as exc:  # a failing job is recorded, never raised into the runner
            m = describe_error(exc)
            run = JobRun(job.name, started, self.timer() - t0, False, 0, error=str(m), error_msg=i18n.dumps([m]))
            log.exception("job %s failed", job.name)
        with self._lock:
            job.last = run
            job.running = False
            job.due = job.schedule.next_run(started)
        self._record(run)
        self._wake.set()
        return run

    def _record(self, run: JobRun) -> None:
        try:
            self.store.record_job_run(job=run.job, started_at=run.started_at, duration_s=run.duration_s,
                                      ok=run.ok, rows=run.rows, error=run.error, error_msg=run.error_msg,
                                      detail=run.detail)
        except Exception:  # the store may be failing; the run is still logged and kept in memory
            log.exception("could not record the run of job %s", run.job)
        if self.on_run is not None:
            try:
                self.on_run(run)
            except Exception:
                log.exception("job run callback failed")
        self.ran.set()

    def status(self) -> list[dict]:
        """Each job's schedule, next run and last run (for owner status and /healthz)."""
        with self._lock:
            jobs = list(self.jobs.values())
        out = []
        for j in jobs:
            last = j.last
            describe = getattr(j.schedule, "describe", None)
            out.append({
                "job": j.name, "running": j.running,
                "schedule": i18n.dumps([describe()]) if describe else None,
                "next_run": j.due.isoformat() if j.due else None,
                "last": None if last is None else {
                    "started_at": last.started_at.isoformat(), "duration_s": round(last.duration_s, 3),
                    "ok": last.ok, "rows": last.rows, "error": last.error, "error_msg": last.error_msg},
            })
        return out

    # ---- the thread ----------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            for job in self._take_due(self._now()):
                self._pool.submit(self._run, job)
            with self._lock:
                dues = [j.due for j in self.jobs.values() if j.due is not None and not j.running]
            wait = 60.0 if not dues else max(0.0, (min(dues) - self._now()).total_seconds())
            self._wake.wait(min(wait, 60.0))
            self._wake.clear()

    def start(self) -> "JobRunner":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="jobs", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._pool.shutdown(wait=True, cancel_futures=True)
