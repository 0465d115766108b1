"""The scheduler: every interval, scrape every target concurrently, store, record.

Like node_exporter's registry, collectors only know how to collect; the
scheduler times every scrape, turns any failure into words, and writes one
`collector_runs` row per attempt, so the sources page and the problems list
see every target's health. All targets of one cycle share the cycle's tick
time as their sample time: fleet sums line up, and a retried delivery of the
same scrape is recognised as a duplicate by the store.

Errors and notes are stored twice: in English (`error`, for logs and CSV) and as
message keys (`error_msg`, i18n.dumps) that pages render in the reader's language.
Store maintenance (reopening the file, releasing memory) is not done here: the
owner registers it as jobs (collectors/jobs.py, collectors/runtime.py).

Faults stay local: each target has its own timeout (in its collector) and is
retried with backoff while the cycle has time; one that keeps failing is
tried less often (every 2, then 4 intervals) until it answers. Completed
scrapes are stored every FLUSH_EVERY_S, so a hanging target delays only its
own data. Every batch goes through the write spool, so a failing database
write loses nothing (collectors/spool.py); at stop the spool spills what it
could not store.

Quiet failures are made visible: a target that answers with no rows gets a note
from the first such cycle and is recorded as failed (ok = false) from the
EMPTY_CYCLES-th in a row on, so the sources page and the problems list show it;
two targets of one cycle reporting one device id raise a `duplicate_id` device
event naming both (the store keeps one sample). The loop thread never dies of
an exception (it is logged and kept in `loop_error`); `health()` in
collectors/runtime.py reads `thread_alive`, `last_cycle_at` and the rest.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol

import pyarrow as pa

from collectors.batch import EVENT_SCHEMA, Scrape
from collectors.exposition import NotExposition
from collectors.spool import Batch, WriteSpool
from collectors.targets import ScrapeError, Target
import i18n
from i18n import Msg, msg
from queries import Store
from queries.catalogue import arrow_schema

log = logging.getLogger(__name__)

# DuckDB holds memory for what was appended while the file is open and frees it only on
# close (docs/benchmarks.md, "Memory"); the owner's "reopen" job runs this often.
REOPEN_EVERY_S = 3 * 3600

# collector_runs as declared in queries/catalogue.py; the store fills in the owner columns
RUN_SCHEMA = arrow_schema("collector_runs")


class Collector(Protocol):
    kind: str

    def collect(self, target: Target, ts: datetime) -> Scrape: ...


EMPTY_CYCLES = 3             # consecutive answers without rows before a target counts as failing


@dataclass
class CycleReport:
    ts: datetime
    targets: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0             # targets backing off after repeated failures
    empty: int = 0               # targets that answered with no rows EMPTY_CYCLES times in a row (counted in failed)
    duplicate_ids: int = 0       # device ids reported by two targets of this cycle
    answered_s: float = 0.0      # when the last answering target's scrape completed
    rows: int = 0
    stored: int = 0
    scrape_s: float = 0.0
    write_s: float = 0.0
    write_error: str | None = None
    errors: dict[str, str] = field(default_factory=dict)


def describe_error(exc: BaseException) -> Msg | str:
    """A failed scrape in words: a message key where we know the failure, else the
    exception's own words (kept as text; a page shows them as they are)."""
    if isinstance(exc, ScrapeError):
        return exc.msg
    if isinstance(exc, NotExposition):
        own = getattr(exc, "msg", None)
        return msg("msg.not_exposition", detail=own if isinstance(own, Msg) else str(exc))
    return f"{type(exc).__name__}: {exc}"


def stored_messages(parts: list[Msg | str]) -> tuple[str | None, str | None]:
    """(English text, keys JSON) of a run's messages. Plain text only (an exporter's words,
    or an error raised with English text) stores no keys: pages read it as before."""
    if not parts:
        return None, None
    keyed = any(isinstance(p, Msg) for p in parts)
    return i18n.english(parts), (i18n.dumps(parts) if keyed else None)


def concat(tables: list[pa.Table | None]) -> pa.Table | None:
    present = [t for t in tables if t is not None and t.num_rows]
    if not present:
        return None
    return present[0] if len(present) == 1 else pa.concat_tables(present)


@dataclass
class TargetHealth:
    """Per-target retry state across cycles."""

    failures: int = 0            # consecutive failed cycles
    next_attempt: float = 0.0    # epoch seconds; a failing target backs off
    empty: int = 0               # consecutive cycles it answered with no rows


class Scheduler:
    """See module docstring. `jobs`: (collector, targets) or (collector, targets, retries)."""

    FLUSH_EVERY_S = 0.5          # completed scrapes are stored at least this often
    RETRY_BASE_S = 0.5           # in-cycle retry backoff: 0.5 s, 1 s, 2 s ...
    MAX_SKIP_INTERVALS = 4       # a target failing for several cycles is tried every 2, 4, at most 4 intervals
    LOOP_RETRY_S = 1.0           # the loop's pause after it could not compute the next tick

    def __init__(self, store: Store, jobs: list[tuple], *, interval_s: float, concurrency: int = 32,
                 clock: Callable[[], float] = time.time, spool: WriteSpool | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 on_cycle: Callable[[CycleReport], None] | None = None):
        self.store = store
        self.jobs = [(j[0], j[1], j[2] if len(j) > 2 else 2) for j in jobs]
        self.interval_s = interval_s
        self.clock = clock
        self.sleep = sleep
        self.spool = spool or WriteSpool()
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="scrape")
        self.health: dict[str, TargetHealth] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_report: CycleReport | None = None
        self.cycles = 0
        self.on_cycle = on_cycle
        self.cycled = threading.Event()        # set after every cycle (tests wait on it)
        self.started_at: float | None = None   # clock() when the loop thread started
        self.last_cycle_at: float | None = None  # clock() when the last cycle ended
        self.loop_error: str | None = None     # the last exception the loop survived
        self._claimed: dict[str, str] = {}     # device id -> the target that reported it this cycle
        self._conflicts: set[str] = set()      # device ids claimed twice in the previous cycle
        self._conflicts_now: set[str] = set()  # ... and in this one

    def _attempts(self, collector: Collector, target: Target, ts: datetime, retries: int, deadline: float,
                  cycle_t0: float):
        """Scrape with retries and backoff while the cycle has time; one run row per attempt.

        An attempt's time is the cycle's tick plus the time elapsed since the cycle began."""
        runs = []
        for attempt in range(retries + 1):
            t0 = time.perf_counter()
            started = ts + timedelta(seconds=t0 - cycle_t0)
            try:
                scrape = collector.collect(target, ts)
                duration = time.perf_counter() - t0
                notes: list[Msg | str] = list(scrape.notes)
                if scrape.lines_skipped:
                    first = scrape.issues[0] if scrape.issues else None
                    notes.insert(0, msg("msg.malformed_first", n=scrape.lines_skipped, first=_issue(first))
                                 if first else msg("msg.malformed", n=scrape.lines_skipped))
                ok = True
                if scrape.rows == 0:
                    # read here, written by the cycle's loop: one attempt of a target is in flight at a time
                    empty = self.health[target.url].empty + 1
                    ok = empty < EMPTY_CYCLES
                    notes.insert(0, msg("msg.no_rows", n=empty))
                runs.append(run_row(started, self._sample_ts(scrape, ts), target, duration, scrape.rows,
                                 scrape.lines_skipped, ok, notes))
                return scrape, runs
            except Exception as exc:  # every failure is recorded, none stops the cycle
                duration = time.perf_counter() - t0
                error = describe_error(exc)
                wait = self.RETRY_BASE_S * 2 ** attempt
                # a timeout is not retried within the cycle: it would cost another full timeout
                retry = (attempt < retries and not getattr(exc, "timeout", False) and not self._stop.is_set()
                         and time.monotonic() + wait + duration <= deadline)
                if retry:
                    error = msg("msg.retrying", error=error, k=attempt + 1, n=retries + 1)
                runs.append(run_row(started, ts, target, duration, 0, 0, False, [error]))
                if not retry:
                    return None, runs
                self.sleep(wait)
        return None, runs

    def _sample_ts(self, scrape: Scrape, ts: datetime) -> datetime:
        """The run's sample time (see Scrape.oldest_sample_ts): the tick, or the oldest of the
        exporter's own stamps within one interval of its newest."""
        return scrape.oldest_sample_ts(within_s=self.interval_s) or ts

    def run_cycle(self, ts: datetime | None = None) -> CycleReport:
        now = self.clock()
        if ts is None:
            ts = datetime.fromtimestamp(now - now % self.interval_s, timezone.utc)
        report = CycleReport(ts=ts)
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.interval_s * 0.8
        due = []
        for collector, targets, retries in self.jobs:
            for target in targets:
                h = self.health.setdefault(target.url, TargetHealth())
                if h.next_attempt > now:
                    report.skipped += 1
                    continue
                due.append((h.failures, collector, target, retries))
        # targets that failed last time go first: if they time out again, their timeout
        # runs alongside everyone else's scrapes instead of after them
        due.sort(key=lambda d: -d[0])
        # finished scrapes arrive through a queue: waiting on all pending futures each time
        # one completes would cost O(targets) per completion, seconds of CPU at 1,000 targets
        finished: queue.SimpleQueue = queue.SimpleQueue()
        pending = {}
        for _, collector, target, retries in due:
            fut = self.pool.submit(self._attempts, collector, target, ts, retries, deadline, t0)
            pending[fut] = target
            fut.add_done_callback(finished.put)
        report.targets = len(pending)
        ready: list[Scrape] = []
        runs: list[dict] = []
        events: list[dict] = []
        self._claimed = {}
        conflicts_before, self._conflicts_now = self._conflicts, set()
        last_flush = time.perf_counter()
        while pending:
            done = _drain(finished, self.FLUSH_EVERY_S)
            for fut in done:
                target = pending.pop(fut)
                scrape, attempts = fut.result()
                runs.extend(attempts)
                h = self.health[target.url]
                if scrape is not None:
                    report.answered_s = time.perf_counter() - t0
                    ready.append(scrape)
                    report.rows += scrape.rows
                    h.failures, h.next_attempt = 0, 0.0
                    h.empty = h.empty + 1 if scrape.rows == 0 else 0
                    if attempts[-1]["ok"]:
                        report.ok += 1
                    else:                          # answered, but with no rows cycle after cycle
                        report.failed += 1
                        report.empty += 1
                        report.errors[target.url] = attempts[-1]["error"]
                    events.extend(self._claims(scrape, ts, conflicts_before))
                else:
                    report.failed += 1
                    report.errors[target.url] = attempts[-1]["error"]
                    h.failures += 1
                    skip = min(2 ** (h.failures - 1), self.MAX_SKIP_INTERVALS) if h.failures > 1 else 0
                    h.next_attempt = now + skip * self.interval_s
            # store what has arrived so a slow target delays nobody's data but its own
            if (ready or runs) and (not pending or time.perf_counter() - last_flush >= self.FLUSH_EVERY_S):
                self._flush(ready, runs, report, events)
                ready, runs, events = [], [], []
                last_flush = time.perf_counter()
        if ready or runs:
            self._flush(ready, runs, report, events)
        self._conflicts = self._conflicts_now
        report.duplicate_ids = len(self._conflicts)
        report.scrape_s = time.perf_counter() - t0
        st = self.spool.stats
        log.info("cycle %s: %d/%d targets answered (%d backing off), %d rows, %d stored; %.2f s; "
                 "spool %d batch(es)%s", ts.strftime("%H:%M:%S"), report.ok, report.targets, report.skipped,
                 report.rows, report.stored, report.scrape_s, st.pending_batches,
                 f", write error: {report.write_error}" if report.write_error else "")
        self.last_report = report
        self.last_cycle_at = self.clock()
        self.cycles += 1
        if self.on_cycle is not None:
            try:
                self.on_cycle(report)
            except Exception:  # reporting must not stop collection
                log.exception("cycle report callback failed")
        self.cycled.set()
        return report

    def _claims(self, scrape: Scrape, ts: datetime, reported: set[str]) -> list[dict]:
        """Note which target reported each device id this cycle; a device id a second target
        reports too gives a `duplicate_id` event naming both (once, when the clash begins:
        `reported` holds the ids that already clashed in the previous cycle)."""
        if scrape.samples is None or not scrape.samples.num_rows:
            return []
        out = []
        url = scrape.target.url
        ids = scrape.samples.column("device_id").to_pylist()
        for i, device in enumerate(ids):
            if device is None:
                continue
            first = self._claimed.setdefault(device, url)
            if first == url or device in self._conflicts_now:
                continue
            self._conflicts_now.add(device)
            if device in reported:
                continue
            row = {c: scrape.samples.column(c)[i].as_py() for c in ("site", "cluster", "host", "gpu_index")
                   if c in scrape.samples.column_names}
            out.append({"ts": ts, "device_id": device, **row, "kind": "duplicate_id", "code": None,
                        "detail": f"{first} and {url}", "source": scrape.target.source})
            log.warning("device id %s is reported by two targets: %s and %s", device, first, url)
        return out

    def _flush(self, scrapes: list[Scrape], runs: list[dict], report: CycleReport,
               events: list[dict] | None = None) -> None:
        t1 = time.perf_counter()
        clashes = pa.Table.from_pylist(events, schema=EVENT_SCHEMA) if events else None
        self.spool.put(Batch.of(
            samples=concat([s.samples for s in scrapes]), devices=concat([s.devices for s in scrapes]),
            events=concat([s.events for s in scrapes] + [clashes]), facility=concat([s.facility for s in scrapes]),
            runs=pa.Table.from_pylist(runs, schema=RUN_SCHEMA) if runs else None))
        stored, error = self.spool.flush(self.store.write_scrape)
        report.stored += stored
        if error is not None:
            report.write_error = error
            log.error("store write failed, %d batch(es) kept in the spool: %s",
                      self.spool.stats.pending_batches, error)
        report.write_s += time.perf_counter() - t1

    def _loop(self) -> None:
        """Cycle on the interval's ticks until stopped. Nothing raised in here ends the loop
        (a cycle's failure, a clock or an interval that cannot be waited on): it is logged, kept
        in `loop_error` for the health report, and the loop goes on."""
        while not self._stop.is_set():
            try:
                self.run_cycle()
            except Exception as exc:
                self.loop_error = f"{type(exc).__name__}: {exc}"
                log.exception("collection cycle failed")
            try:
                wait = self._until_next_tick()
            except Exception as exc:
                self.loop_error = f"{type(exc).__name__}: {exc}"
                log.exception("cannot compute the next collection time; trying again in %g s", self.LOOP_RETRY_S)
                wait = self.LOOP_RETRY_S
            self._stop.wait(wait)

    def _until_next_tick(self) -> float:
        now = self.clock()
        wait = self.interval_s - (now % self.interval_s)
        if not 0 <= wait <= threading.TIMEOUT_MAX:
            raise ValueError(f"cannot wait {wait!r} s for the next cycle (interval {self.interval_s!r} s)")
        return wait

    @property
    def thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is None:
            self.started_at = self.clock()
            self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the loop; a last flush stores what is queued, and what the store still refuses
        is spilled to the spool folder (written first at the next start)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.spool.close(self.store.write_scrape)


def reopen_store(store: Store) -> bool:
    """The "reopen" job: close and open the database file so DuckDB gives back what it held."""
    if store.reopen():
        log.info("reopened the database to give back the memory DuckDB held for it")
        return True
    return False


def _libc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):         # not glibc: its allocator is not ours to tune
        return None


_MALLOC_TRIM = _libc_trim()


def release_free_memory() -> None:
    """Hand memory that the allocators hold free back to the system (the owner's "release-memory"
    job, once per collection interval).

    The scrape threads each get a malloc arena of their own; a cycle's texts, tables and
    DuckDB's transient buffers are freed into them, and glibc keeps those pages, so the
    collector's resident memory creeps up by what is merely held free (measured with
    benchmarks/bench_collect.py, the "heap free" column). malloc_trim returns the free pages
    of every arena; it costs well under a millisecond a cycle."""
    pa.default_memory_pool().release_unused()       # Arrow's own allocator (mimalloc) likewise
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _drain(q: queue.SimpleQueue, timeout: float) -> list:
    """Everything in `q`, waiting up to `timeout` for the first item."""
    try:
        out = [q.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


def _issue(issue) -> Msg | str:
    """A skipped line as a message: its reason as a key where the parser gives one."""
    reason = getattr(issue, "msg", None)
    if isinstance(reason, Msg):
        return msg("msg.line", n=issue.lineno, reason=reason, text=issue.text)
    return str(issue)


def run_row(started: datetime, sample_ts: datetime, target: Target, duration: float, rows: int, skipped: int,
         ok: bool, messages: list[Msg | str]) -> dict:
    error, error_msg = stored_messages(messages)
    return {"started_at": started, "source": target.source, "kind": target.kind, "target": target.url,
            "duration_s": duration, "rows": rows, "lines_skipped": skipped, "ok": ok, "error": error,
            "sample_ts": sample_ts, "error_msg": error_msg}
