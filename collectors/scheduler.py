"""The scheduler: every interval, scrape every target concurrently, store, record.

Like node_exporter's registry, collectors only know how to collect; the
scheduler times every scrape, turns any failure into words, and writes one
`collector_runs` row per attempt, so the sources page and the problems list
see every target's health. All targets of one cycle share the cycle's tick
time as their sample time: fleet sums line up, and a retried delivery of the
same scrape is recognised as a duplicate by the store.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Protocol

import pyarrow as pa

from collectors.batch import TS, Scrape
from collectors.exposition import NotExposition
from collectors.targets import ScrapeError, Target
from queries import Store

log = logging.getLogger(__name__)

RUN_SCHEMA = pa.schema([
    ("started_at", TS), ("source", pa.string()), ("kind", pa.string()), ("target", pa.string()),
    ("duration_s", pa.float64()), ("rows", pa.int32()), ("lines_skipped", pa.int32()),
    ("ok", pa.bool_()), ("error", pa.string()),
])


class Collector(Protocol):
    kind: str

    def collect(self, target: Target, ts: datetime) -> Scrape: ...


@dataclass
class CycleReport:
    ts: datetime
    targets: int = 0
    ok: int = 0
    failed: int = 0
    rows: int = 0
    stored: int = 0
    scrape_s: float = 0.0
    write_s: float = 0.0
    write_error: str | None = None
    errors: dict[str, str] = field(default_factory=dict)


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ScrapeError):
        return str(exc)
    if isinstance(exc, NotExposition):
        return f"response is not Prometheus text: {exc}"
    return f"{type(exc).__name__}: {exc}"


def concat(tables: list[pa.Table | None]) -> pa.Table | None:
    present = [t for t in tables if t is not None and t.num_rows]
    if not present:
        return None
    return present[0] if len(present) == 1 else pa.concat_tables(present)


class Scheduler:
    def __init__(self, store: Store, jobs: list[tuple[Collector, list[Target]]], *,
                 interval_s: float, concurrency: int = 32, clock: Callable[[], float] = time.time):
        self.store = store
        self.jobs = jobs
        self.interval_s = interval_s
        self.clock = clock
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="scrape")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_report: CycleReport | None = None
        self.cycles = 0

    def _scrape(self, collector: Collector, target: Target, ts: datetime):
        t0 = time.perf_counter()
        try:
            scrape = collector.collect(target, ts)
            return scrape, None, time.perf_counter() - t0
        except Exception as exc:  # every failure is recorded, none stops the cycle
            return None, describe_error(exc), time.perf_counter() - t0

    def run_cycle(self, ts: datetime | None = None) -> CycleReport:
        if ts is None:
            now = self.clock()
            ts = datetime.fromtimestamp(now - now % self.interval_s, timezone.utc)
        report = CycleReport(ts=ts)
        t0 = time.perf_counter()
        futures = [(target, self.pool.submit(self._scrape, collector, target, ts))
                   for collector, targets in self.jobs for target in targets]
        scrapes: list[Scrape] = []
        runs = []
        for target, fut in futures:
            scrape, error, duration = fut.result()
            report.targets += 1
            if scrape is not None:
                scrapes.append(scrape)
                report.ok += 1
                report.rows += scrape.rows
                note = None
                if scrape.lines_skipped:
                    first = scrape.issues[0] if scrape.issues else None
                    note = f"{scrape.lines_skipped} malformed line(s) skipped" + (f"; first: {first}" if first else "")
                runs.append({"started_at": ts, "source": target.source, "kind": target.kind,
                             "target": target.url, "duration_s": duration, "rows": scrape.rows,
                             "lines_skipped": scrape.lines_skipped, "ok": True, "error": note})
            else:
                report.failed += 1
                report.errors[target.url] = error
                runs.append({"started_at": ts, "source": target.source, "kind": target.kind,
                             "target": target.url, "duration_s": duration, "rows": 0,
                             "lines_skipped": 0, "ok": False, "error": error})
        report.scrape_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            report.stored = self.store.write_scrape(
                samples=concat([s.samples for s in scrapes]),
                devices=concat([s.devices for s in scrapes]),
                events=concat([s.events for s in scrapes]),
                facility=concat([s.facility for s in scrapes]),
                runs=pa.Table.from_pylist(runs, schema=RUN_SCHEMA))
        except Exception as exc:
            report.write_error = describe_error(exc)
            log.error("writing cycle %s failed: %s", ts.isoformat(), report.write_error)
        report.write_s = time.perf_counter() - t1
        log.info("cycle %s: %d/%d targets answered, %d rows, %d stored; scrape %.2f s, store %.2f s",
                 ts.strftime("%H:%M:%S"), report.ok, report.targets, report.rows, report.stored,
                 report.scrape_s, report.write_s)
        self.last_report = report
        self.cycles += 1
        return report

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_cycle()
            except Exception:
                log.exception("collection cycle failed")
            now = self.clock()
            wait = self.interval_s - (now % self.interval_s)
            self._stop.wait(wait)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.pool.shutdown(wait=False, cancel_futures=True)
