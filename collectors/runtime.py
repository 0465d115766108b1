"""Wiring: config -> (simulator) -> sources -> collectors -> scheduler and jobs -> store.

`Runtime` is what the owner process starts once: the Streamlit server's
lifespan (app.py) or the headless `python -m collectors run`.

A real floor and the simulated one are wired the same way. With no real source
configured, the embedded simulator starts on 127.0.0.1 and describes itself as
ordinary sources (`simulator_sources`: one per cluster, one facility meter per
site); from there the registry builds their collectors exactly as for
configured sources. The only thing the simulator adds is which node each URL
describes (its exporters all listen on 127.0.0.1).

Beside the scrapes, a `JobRunner` runs store maintenance ("reopen" every few
hours: DuckDB frees what it holds for appended data only on close;
"release-memory" once an interval) and, when simulated, the history back-fill:
a job that writes through the scheduler's write spool (waiting while the store
refuses writes), records a collector run per scrape it replays, and is resumable
and idempotent (progress in kv).

The owner writes its status (collection, last cycle, spool, back-fill, jobs)
to the database after every cycle and every job run (`store.put_status`), so
pages read the truth from the file wherever the collector runs.

`health()` (what /healthz answers, and the status the pages show) says "failed"
when collection is not happening: the loop thread is gone, no cycle ended for
HEALTH_STALE_CYCLES intervals, or no target answered in the last cycle; it says
"degraded" when collection goes on but something needs a person: database
writes fail, the spool cannot spill or dropped batches in the last hour, damaged
spool batches sit in quarantine, targets answer with no rows, the back-fill
failed. Each reason is a code, English words and their message keys.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from collectors import registry
from collectors.batch import EventTracker, Scrape
from collectors.jobs import Every, JobResult, JobRunner, Once
from collectors.scheduler import (REOPEN_EVERY_S, RUN_SCHEMA, CycleReport, Scheduler, concat, run_row,
                                  release_free_memory, reopen_store)
from collectors.spool import Batch, WriteSpool
from collectors.targets import Target
from config import Config, Source
import i18n
from i18n import Msg, msg
from queries import Store, capacity, energy, rollup
from reports import jobs as report_jobs
from simulator import history as sim_history

if TYPE_CHECKING:
    from simulator import Floor, SimulatorServer

log = logging.getLogger(__name__)

BACKFILL_KEY = "simulator.backfill"
BACKFILL_STEPS_PER_WRITE = 8
SIMULATOR_SOURCE = "simulator"      # source names of the simulated floor start with this

# names of the owner status rows (store.put_status) the Sources page reads
STATUS_COLLECTOR, STATUS_BACKFILL, STATUS_JOBS = "collector", "backfill", "jobs"
STATUS_ROLLUPS, STATUS_IMPORTS = "rollups", "history_imports"
# how often health reads the history tiers' span, rows and size (a scan of every tier)
TIER_FIGURES_EVERY_S = 300.0

HEALTH_STALE_CYCLES = 3          # no cycle ended for this many intervals: collection has failed
HEALTH_DROP_WINDOW_S = 3600      # a spool drop keeps the health degraded this long


def reason(code: str, message: Msg) -> dict:
    """One health reason: a code for machines, English words, and the words as keys for pages."""
    return {"code": code, "message": str(message), "msg": i18n.dumps([message])}


def assess(*, started: bool, thread_alive: bool, loop_error: str | None, interval_s: float, now: float,
           last_cycle_at: float | None, started_at: float | None, rep: CycleReport | None, spool: dict,
           backfill: dict) -> tuple[str, list[dict]]:
    """(status, reasons) of a running collector; see the module docstring."""
    failed: list[dict] = []
    degraded: list[dict] = []
    if started and not thread_alive:
        failed.append(reason("loop_stopped", msg("health.loop_stopped", error=loop_error or "—")))
    since = last_cycle_at if last_cycle_at is not None else started_at
    if started and since is not None and now - since > HEALTH_STALE_CYCLES * interval_s:
        failed.append(reason("no_cycle", msg("health.no_cycle", s=f"{now - since:.0f}",
                                             n=HEALTH_STALE_CYCLES, interval=f"{interval_s:g}")))
    if rep is not None and rep.ok == 0 and rep.failed + rep.skipped > 0:
        failed.append(reason("all_targets_failing", msg("health.all_failing", n=rep.failed + rep.skipped)))
    if rep is not None and rep.write_error:
        degraded.append(reason("write_error", msg("health.write_error", error=rep.write_error,
                                                  batches=spool.get("pending_batches", 0))))
    if spool.get("spill_error"):
        degraded.append(reason("spill_error", msg("health.spill_error", error=spool["spill_error"])))
    if spool.get("last_drop_at") and now - spool["last_drop_at"] < HEALTH_DROP_WINDOW_S:
        degraded.append(reason("spool_dropping", msg("health.spool_dropped", batches=spool["dropped_batches"],
                                                     rows=spool["dropped_rows"])))
    if spool.get("quarantined_batches"):
        newest = (spool.get("quarantined") or [{}])[0]
        degraded.append(reason("quarantined", msg("health.quarantined", n=spool["quarantined_batches"],
                                                  file=newest.get("file", "—"), why=newest.get("reason", "—"))))
    if rep is not None and rep.empty:
        degraded.append(reason("targets_empty", msg("health.targets_empty", n=rep.empty)))
    if backfill.get("state") == "failed":
        degraded.append(reason("backfill_failed", msg("health.backfill_failed", error=backfill.get("error") or "—")))
    status = "failed" if failed else "degraded" if degraded else "ok"
    return status, failed + degraded


def simulator_sources(cfg: Config, targets) -> list[Source]:
    """The simulator's endpoints as configured sources would state them: one source per
    cluster (its exporters' kind) and one facility source per site."""
    first_cluster: dict[str, str] = {}
    for c in cfg.clusters:
        first_cluster.setdefault(c.site, c.id)
    groups: dict[tuple, list[str]] = {}
    for t in targets:
        key = (t.kind, t.site, t.cluster)
        groups.setdefault(key, []).append(t.url)
    out = []
    for (kind, site, cluster), urls in groups.items():
        name = f"{SIMULATOR_SOURCE}-{cluster}" if cluster else f"{SIMULATOR_SOURCE}-{kind}-{site}"
        out.append(Source.model_validate({"name": name, "kind": kind, "site": site,
                                          "cluster": cluster or first_cluster[site], "targets": urls}))
    return out


def add_store_jobs(runner: JobRunner, store: Store, *, interval_s: float) -> None:
    """Store maintenance as jobs: reopen the file every REOPEN_EVERY_S (rows = 1 when it was
    reopened), hand free memory back once per collection interval."""
    runner.add("reopen", Every(REOPEN_EVERY_S), lambda _now: int(reopen_store(store)))
    runner.add("release-memory", Every(interval_s), lambda _now: release_free_memory())


class Backfill:
    """The simulated floor's history, [end - backfill_days, end) at backfill_step_s, as a job.

    Each step replays every exporter's text at that instant through the collectors
    (their own event tracker: history runs in time order) and records a collector run
    per scrape; batches go through the write spool like live scrapes. Progress is kept
    in kv (BACKFILL_KEY), so a restart continues where it stopped and a repeat writes
    nothing twice."""

    WRITE_RETRY_S = 5.0          # while the store refuses writes, the job tries again this often

    def __init__(self, cfg: Config, store: Store, floor, jobs: list[tuple], spool: WriteSpool,
                 stop: threading.Event, clock=time.time):
        self.cfg, self.store, self.floor, self.jobs, self.spool = cfg, store, floor, jobs, spool
        self.stop, self.clock = stop, clock
        self.state = "off"          # off | running | done | paused | failed
        self.done = 0
        self.total = 0
        self.error: str | None = None

    def status(self) -> dict:
        return {"state": self.state, "done": self.done, "total": self.total, "error": self.error}

    def __call__(self, now: datetime | None = None, *, end: datetime | None = None) -> JobResult:
        try:
            return self._fill(end or now or datetime.fromtimestamp(self.clock(), timezone.utc))
        except Exception as exc:
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            raise

    def _fill(self, end: datetime) -> JobResult:
        from simulator import ExporterDown

        sim = self.cfg.simulator
        step = sim.backfill_step_s
        start = end - timedelta(days=sim.backfill_days)
        start = datetime.fromtimestamp(start.timestamp() - start.timestamp() % step, timezone.utc)
        done = self.store.get_kv(BACKFILL_KEY)
        if done:
            start = max(start, datetime.fromisoformat(done) + timedelta(seconds=step))
        self.total = max(0, math.ceil((end - start).total_seconds() / step))
        self.state, self.done, self.error = "running", 0, None
        rows = 0
        pending: list[Scrape] = []
        runs: list[dict] = []
        t = start
        while t < end and not self.stop.is_set():
            epoch = t.timestamp()
            for collector, targets, _ in self.jobs:
                for target in targets:
                    t0 = time.perf_counter()
                    try:
                        text = (self.floor.facility_text(target.site, epoch) if target.kind == "facility"
                                else self.floor.node_text(target.host, epoch))
                    except ExporterDown:
                        continue
                    scrape = collector.from_text(text, target, t)
                    runs.append(run_row(t, t, target, time.perf_counter() - t0, scrape.rows, scrape.lines_skipped,
                                     True, list(scrape.notes)))
                    pending.append(scrape)
                    rows += scrape.rows
            self.done += 1
            if self.done % BACKFILL_STEPS_PER_WRITE == 0 or t + timedelta(seconds=step) >= end:
                if not self._write(pending, runs):
                    break
                pending, runs = [], []
                self.store.set_kv(BACKFILL_KEY, t.isoformat())
            t += timedelta(seconds=step)
        if (pending or runs) and self._write(pending, runs):
            self.store.set_kv(BACKFILL_KEY, (t - timedelta(seconds=step)).isoformat())
        self.state = "paused" if self.stop.is_set() else "done"
        return JobResult(rows=rows, detail=f"{self.done} of {self.total} steps")

    def _write(self, scrapes: list[Scrape], runs: list[dict]) -> bool:
        """Queue the steps' batch and store it; False when stopped before the store took it.
        While the store refuses writes the job waits (the batch is in the spool, spilled; the
        live scrapes go on), trying every WRITE_RETRY_S, rather than fail for good: a `Once`
        job would not run again before a restart. Stopped, it is paused; the next start
        resumes after the last step stored (the spool writes this batch first, once)."""
        self.spool.put(Batch.of(
            samples=concat([s.samples for s in scrapes]), devices=concat([s.devices for s in scrapes]),
            events=concat([s.events for s in scrapes]), facility=concat([s.facility for s in scrapes]),
            runs=pa.Table.from_pylist(runs, schema=RUN_SCHEMA) if runs else None))
        _, error = self.spool.flush(self.store.write_scrape)
        while error is not None:
            self.error = error
            if self.stop.wait(self.WRITE_RETRY_S):
                return False
            _, error = self.spool.flush(self.store.write_scrape)
        self.error = None
        return True


def simulated_backfill(cfg: Config, store: Store, floor: "Floor | None" = None, *, spool: WriteSpool | None = None,
                       stop: threading.Event | None = None, clock=time.time) -> Backfill:
    """The simulated floor's back-fill job without starting anything (benchmarks, tests): the
    simulator's sources wired as `Runtime.start` wires them, at URLs the job never fetches (it
    reads the floor itself)."""
    from simulator import Floor, SimulatorServer

    rt = Runtime(cfg, store, backfill=False, clock=clock)
    floor = rt.floor = floor or Floor(cfg)
    server = rt.server = SimulatorServer(floor)
    server.base_url = "http://simulator.invalid"
    rt.sources = simulator_sources(cfg, server.targets())
    jobs = [b.job for b in rt.wire(EventTracker())]
    return Backfill(cfg, store, floor, jobs, spool or WriteSpool(), stop or threading.Event(), clock=clock)


class Runtime:
    def __init__(self, cfg: Config, store: Store | None = None, *, backfill: bool = True,
                 clock=time.time):
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.want_backfill = backfill
        self.server: SimulatorServer | None = None
        self.floor: Floor | None = None
        self.sources: list[Source] = []
        self.scheduler: Scheduler | None = None
        self.jobs: JobRunner | None = None
        self.backfill: Backfill | None = None
        self.imports: list = []                 # Prometheus sources' history imports (HistoryImport)
        self._tiers: dict = {}                  # the last rollup tier figures, and when they were read
        self._tiers_at = -math.inf
        self.targets: list[Target] = []
        self._stop = threading.Event()
        self.built: list[registry.Built] = []
        self.collectors: list = []          # (source, collector) pairs
        self.started = False

    # ---- wiring ---------------------------------------------------------

    def wire(self, tracker: EventTracker) -> list[registry.Built]:
        """Collectors and targets of self.sources through the registry, the same for a real and a
        simulated floor; a simulated target also names the node its URL describes."""
        built = registry.build(replace(self.cfg, sources=tuple(self.sources)),
                               registry.deps(self.cfg, tracker=tracker, clock=self.clock))
        if self.server is not None:
            sim = {t.url: t for t in self.server.targets()}
            built = [replace(b, targets=[replace(t, host=sim[t.url].host, cluster=sim[t.url].cluster)
                                         for t in b.targets]) for b in built]
        return built

    def start(self) -> "Runtime":
        if self.started:
            return self
        cfg = self.cfg
        if self.store is None:
            self.store = Store(cfg.db_path, memory_limit=cfg.database.memory_limit, owner=cfg.owner)
        if cfg.simulated:
            from simulator import Floor, SimulatorServer

            floor = self.floor = Floor(cfg)
            server = self.server = SimulatorServer(floor, bind=cfg.simulator.bind, port=cfg.simulator.port,
                                                   clock=self.clock)
            server.start()
            self.sources = simulator_sources(cfg, server.targets())
        else:
            self.sources = list(cfg.sources)

        tracker = EventTracker()
        tracker.prime(self.store.query("device_latest_state").to_dict("records"))
        self.built = self.wire(tracker)
        self.collectors = [(b.source, b.collector) for b in self.built]
        self.targets = [t for b in self.built for t in b.targets]
        self.store.register_targets([t.as_row() for t in self.targets])
        newest = dict(self.store.query("source_newest").itertuples(index=False))
        for b in self.built:
            if b.source.name in newest:
                for target in b.targets:                   # catch up on what was missed while down
                    b.collector.resume_from(target, newest[b.source.name].to_pydatetime())
            b.collector.start()                            # e.g. NVML's XID event thread
        spool_dir = None if self.store.path == ":memory:" else Path(self.store.path).parent / "spool"
        self.scheduler = Scheduler(self.store, [b.job for b in self.built], interval_s=cfg.collection.interval_s,
                                   concurrency=cfg.collection.concurrency, clock=self.clock,
                                   spool=WriteSpool(spool_dir), on_cycle=self._cycle_done)
        self.jobs = JobRunner(self.store, clock=self.clock, on_run=lambda _run: self.publish())
        add_store_jobs(self.jobs, self.store, interval_s=cfg.collection.interval_s)
        rollup.add_jobs(self.jobs, self.store, cfg)
        energy.add_jobs(self.jobs, self.store, cfg, history=self.want_backfill)
        report_jobs.add_jobs(self.jobs, self.store, cfg)
        capacity.add_jobs(self.jobs, self.store, cfg)
        # a Prometheus source's history, imported on first start (planned now: before anything
        # from that source is stored, so the plan sees an empty source)
        self.imports = []
        for b in self.built:
            if b.source.kind == "prometheus":
                from collectors.prometheus import PrometheusCollector, history_import_job

                assert isinstance(b.collector, PrometheusCollector)
                job = history_import_job(b.collector, self.store, b.source, stop=self._stop)
                if job is not None:
                    self.imports.append(job)
        for job in self.imports:
            self.jobs.add(f"history-import-{job.source.name}", job.schedule, job)
        if cfg.simulated and self.want_backfill and cfg.simulator.backfill_days > 0:
            history = [b.job for b in self.wire(EventTracker())]    # its own tracker: history runs in time order
            self.backfill = Backfill(cfg, self.store, self.floor, history, self.scheduler.spool, self._stop,
                                     clock=self.clock)
            self.jobs.add("backfill", Once(), self.backfill)
            # older months, straight into the tiers; the forecasts refit as soon as they are there
            store = self.store
            sim_history.add_jobs(self.jobs, store, cfg, self.floor, self._stop,
                                 then=lambda now: capacity.forecast_job(store, cfg, now))
        self.started = True
        self.publish()
        self.scheduler.start()
        self.jobs.start()
        log.info("collecting from %d targets every %gs", len(self.targets), cfg.collection.interval_s)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.jobs is not None:
            self.jobs.stop()
        if self.scheduler is not None and self.store is not None:
            self.scheduler.spool.close(self.store.write_scrape)    # what the back-fill queued after the scheduler
        for _, collector in self.collectors:
            collector.stop()
            collector.close()
        if self.server is not None:
            self.server.stop()
        was = self.started
        self.started = False
        if was:
            self.publish()
            log.info("collector runtime stopped")

    # ---- status -----------------------------------------------------------

    def _cycle_done(self, _report: CycleReport) -> None:
        self.publish()

    def health(self) -> dict:
        """What /healthz and the owner status report about collection (see `assess`)."""
        sched = self.scheduler
        rep = sched.last_report if sched else None
        spool = vars(sched.spool.stats).copy() if sched else None
        backfill = self.backfill.status() if self.backfill else {"state": "off", "done": 0, "total": 0,
                                                                 "error": None}
        reasons: list[dict] = []
        status = "ok"
        if sched is not None and self.started:
            status, reasons = assess(started=self.started, thread_alive=sched.thread_alive,
                                     loop_error=sched.loop_error, interval_s=sched.interval_s, now=self.clock(),
                                     last_cycle_at=sched.last_cycle_at, started_at=sched.started_at, rep=rep,
                                     spool=spool or {}, backfill=backfill)
        return {
            "status": status,
            "reasons": reasons,
            "running": self.started,
            "simulated": self.cfg.simulated,
            "targets": len(self.targets),
            "cycles": self.scheduler.cycles if self.scheduler else 0,
            "last_cycle": None if rep is None else {
                "ts": rep.ts.isoformat(), "targets": rep.targets, "ok": rep.ok, "failed": rep.failed,
                "skipped": rep.skipped, "empty": rep.empty, "duplicate_ids": rep.duplicate_ids,
                "rows": rep.rows, "stored": rep.stored,
                "scrape_s": round(rep.scrape_s, 3), "write_s": round(rep.write_s, 3),
                "write_error": rep.write_error},
            "spool": spool,
            "backfill": backfill,
            "jobs": self.jobs.status() if self.jobs else [],
            "rollups": self._rollups(),
            "history_imports": [_iso(job.status()) for job in self.imports],
            "database": self.store.path if self.store else None,
        }

    def _rollups(self) -> dict | None:
        """The history tiers' state (queries/rollup.py rollup_status), as JSON-ready values."""
        if self.store is None:
            return None
        try:
            # the tier figures change slowly and cost a scan of every tier: refreshed every
            # TIER_FIGURES_EVERY_S, the dirty hours (one small table) at every call
            fresh = time.monotonic() - self._tiers_at >= TIER_FIGURES_EVERY_S
            status = rollup.rollup_status(self.store, datetime.fromtimestamp(self.clock(), timezone.utc),
                                          tiers=fresh)
            if fresh:
                self._tiers, self._tiers_at = status["tiers"], time.monotonic()
            status["tiers"] = self._tiers
            return _iso(status)
        except Exception as exc:                  # a status read never breaks health or a cycle
            log.warning("could not read the rollup status: %s", exc)
            return {"state": "unknown", "error": str(exc)}

    def publish(self) -> None:
        """Write the owner status rows the pages read; a failing write is logged, never raised."""
        h = self.health()
        if self.store is None:
            return
        try:
            self.store.put_status(STATUS_COLLECTOR, {k: v for k, v in h.items() if k not in ("backfill", "jobs")})
            self.store.put_status(STATUS_BACKFILL, h["backfill"])
            self.store.put_status(STATUS_JOBS, {"jobs": h["jobs"]})
            if h["rollups"] is not None:
                self.store.put_status(STATUS_ROLLUPS, h["rollups"])
            self.store.put_status(STATUS_IMPORTS, {"imports": h["history_imports"]})
        except Exception:
            log.exception("could not write the owner status")


def _iso(value):
    """`value` with every datetime as ISO 8601 text (for /healthz and the owner status)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _iso(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_iso(v) for v in value]
    return value
