"""Wiring: config -> (simulator) -> targets -> collectors -> scheduler -> store.

`Runtime` is what the owner process starts once: the Streamlit server's
lifespan (app.py) or the headless `python -m collectors run`. With no real
source configured it starts the embedded simulator on 127.0.0.1 and, in the
background, back-fills the configured days of history through the very same
parse-and-write path, so history pages have data on first start while the live
page fills within one interval.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from collectors.batch import EventTracker
from collectors.dcgm import DcgmCollector
from collectors.facility import FacilityCollector
from collectors.registry import build_jobs, collector_class, source_targets
from collectors.scheduler import Scheduler, concat
from collectors.spool import WriteSpool
from collectors.targets import Target
from config import Config
from queries import Store

log = logging.getLogger(__name__)

BACKFILL_KEY = "simulator.backfill"
BACKFILL_STEPS_PER_WRITE = 8


class Runtime:
    def __init__(self, cfg: Config, store: Store | None = None, *, backfill: bool = True,
                 clock=time.time):
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.want_backfill = backfill
        self.server = None
        self.floor = None
        self.scheduler: Scheduler | None = None
        self.targets: list[Target] = []
        self._backfill_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.collectors: list = []
        self.backfill_state = "off"        # off | running | done | paused | failed
        self.backfill_done = 0
        self.backfill_total = 0
        self.backfill_error: str | None = None
        self.started = False

    # ---- lifecycle ----------------------------------------------------

    def start(self) -> "Runtime":
        if self.started:
            return self
        cfg = self.cfg
        if self.store is None:
            self.store = Store(cfg.db_path, memory_limit=cfg.database.memory_limit)
        if cfg.simulated:
            from simulator import Floor, SimulatorServer

            self.floor = Floor(cfg)
            self.server = SimulatorServer(self.floor, bind=cfg.simulator.bind, port=cfg.simulator.port,
                                          clock=self.clock)
            self.server.start()
            self.targets = [Target(url=t.url, source="simulator", kind=t.kind, site=t.site,
                                   cluster=t.cluster, host=t.host) for t in self.server.targets()]
        else:
            self.targets = [t for source in cfg.sources for t in source_targets(source)]
        self.store.register_targets([t.as_row() for t in self.targets])

        tracker = EventTracker()
        tracker.prime(self.store.query("device_latest_state").to_dict("records"))
        if cfg.simulated:
            self.dcgm = DcgmCollector(cfg, tracker=tracker)
            by_kind = {"dcgm": self.dcgm, "facility": FacilityCollector(cfg)}
            for kind in ("amd", "ascend"):
                if any(t.kind == kind for t in self.targets):
                    by_kind[kind] = collector_class(kind)(cfg, tracker=tracker)
            jobs = [(c, [t for t in self.targets if t.kind == k]) for k, c in by_kind.items()]
        else:
            jobs, self.collectors = build_jobs(cfg, tracker)
            newest = dict(self.store.query("source_newest").itertuples(index=False))
            for source, collector in self.collectors:
                if hasattr(collector, "resume_from") and source.name in newest:
                    for target in source_targets(source):       # catch up on what was missed while down
                        collector.resume_from(target, newest[source.name].to_pydatetime())
                if hasattr(collector, "start"):
                    collector.start()                          # e.g. NVML's XID event thread
        spool_dir = None if self.store.path == ":memory:" else Path(self.store.path).parent / "spool"
        self.scheduler = Scheduler(self.store, jobs, interval_s=cfg.collection.interval_s,
                                   concurrency=cfg.collection.concurrency, clock=self.clock,
                                   spool=WriteSpool(spool_dir))
        self.scheduler.start()
        if cfg.simulated and self.want_backfill and cfg.simulator.backfill_days > 0:
            self._backfill_thread = threading.Thread(target=self._backfill_safe, name="backfill", daemon=True)
            self._backfill_thread.start()
        self.started = True
        log.info("collecting from %d targets every %gs", len(self.targets), cfg.collection.interval_s)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.scheduler is not None:
            self.scheduler.stop()
        for _, collector in self.collectors:
            for name in ("stop", "close"):
                if hasattr(collector, name):
                    getattr(collector, name)()
        if self._backfill_thread is not None:
            self._backfill_thread.join(30)
        if self.server is not None:
            self.server.stop()
        if self.started:
            log.info("collector runtime stopped")
        self.started = False

    def health(self) -> dict:
        """What /healthz and the sources page report about collection."""
        rep = self.scheduler.last_report if self.scheduler else None
        return {
            "status": "ok" if rep is None or rep.write_error is None else "degraded",
            "simulated": self.cfg.simulated,
            "targets": len(self.targets),
            "cycles": self.scheduler.cycles if self.scheduler else 0,
            "last_cycle": None if rep is None else {
                "ts": rep.ts.isoformat(), "ok": rep.ok, "failed": rep.failed, "rows": rep.rows,
                "stored": rep.stored, "scrape_s": round(rep.scrape_s, 3), "write_s": round(rep.write_s, 3),
                "write_error": rep.write_error},
            "spool": vars(self.scheduler.spool.stats).copy() if self.scheduler else None,
            "backfill": {"state": self.backfill_state, "done": self.backfill_done,
                         "total": self.backfill_total, "error": self.backfill_error},
            "database": self.store.path if self.store else None,
        }

    # ---- simulated history ---------------------------------------------

    def _backfill_safe(self) -> None:
        try:
            self.backfill()
        except Exception as exc:
            self.backfill_state = "failed"
            self.backfill_error = f"{type(exc).__name__}: {exc}"
            log.exception("back-fill failed")

    def backfill(self, end: datetime | None = None) -> int:
        """Fill [end - backfill_days, end) at backfill_step_s; resumable, idempotent.

        Progress is kept in the kv table so a restart continues where it stopped.
        Returns the number of simulated scrape instants written.
        """
        from simulator import ExporterDown

        sim = self.cfg.simulator
        step = sim.backfill_step_s
        if end is None:
            end = datetime.fromtimestamp(self.clock(), timezone.utc)
        start = end - timedelta(days=sim.backfill_days)
        start = datetime.fromtimestamp(start.timestamp() - start.timestamp() % step, timezone.utc)
        done = self.store.get_kv(BACKFILL_KEY)
        if done:
            start = max(start, datetime.fromisoformat(done) + timedelta(seconds=step))
        history = EventTracker()                  # its own: history runs in time order
        device_collectors = {k: collector_class(k)(self.cfg, tracker=history) for k in ("dcgm", "amd", "ascend")
                             if any(t.kind == k for t in self.targets)}
        facility = FacilityCollector(self.cfg)
        device_targets = [t for t in self.targets if t.kind in device_collectors]
        fac_targets = [t for t in self.targets if t.kind == "facility"]
        total = max(0, math.ceil((end - start).total_seconds() / step))
        written = 0
        self.backfill_state, self.backfill_done, self.backfill_total = "running", 0, total
        pending = []
        t = start
        while t < end and not self._stop.is_set():
            epoch = t.timestamp()
            for target in device_targets:
                try:
                    text = self.floor.node_text(target.host, epoch)
                except ExporterDown:
                    continue
                pending.append(device_collectors[target.kind].from_text(text, target, t))
            for target in fac_targets:
                pending.append(facility.from_text(self.floor.facility_text(target.site, epoch), target, t))
            written += 1
            self.backfill_done = written
            if written % BACKFILL_STEPS_PER_WRITE == 0 or t + timedelta(seconds=step) >= end:
                self._write(pending)
                pending = []
                self.store.set_kv(BACKFILL_KEY, t.isoformat())
            t += timedelta(seconds=step)
        if pending:
            self._write(pending)
            self.store.set_kv(BACKFILL_KEY, (t - timedelta(seconds=step)).isoformat())
        self.backfill_state = "paused" if self._stop.is_set() else "done"
        return written

    def _write(self, scrapes) -> None:
        self.store.write_scrape(samples=concat([s.samples for s in scrapes]),
                                devices=concat([s.devices for s in scrapes]),
                                events=concat([s.events for s in scrapes]),
                                facility=concat([s.facility for s in scrapes]))


_current: Runtime | None = None


def set_current(runtime: Runtime | None) -> None:
    global _current
    _current = runtime


def current() -> Runtime | None:
    return _current
