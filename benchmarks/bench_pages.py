"""Seconds per page query on a database with history.

    .venv/bin/python benchmarks/bench_pages.py [--db data/centre.duckdb] [--days 30] [--repeat 5]

With --db pointing at an existing file (stop the dashboard first: DuckDB lets
one process open it), times the queries the live and sources pages run on
every refresh. Without an existing file it first builds one: the simulated
centre's --days of history through the normal back-fill path, plus one hour of
15-second live scrapes, so the live page has the density it has in production.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import config  # noqa: E402
from collectors.dcgm import DcgmCollector  # noqa: E402
from collectors.facility import FacilityCollector  # noqa: E402
from collectors.runtime import simulated_backfill  # noqa: E402
from collectors.scheduler import Scheduler  # noqa: E402
from collectors.targets import Target  # noqa: E402
from queries import Store  # noqa: E402
from simulator import ExporterDown, Floor, SimulatorServer  # noqa: E402


def build(path: Path, days: float, cfg: config.Config) -> datetime:
    cfg = replace(cfg, simulator=cfg.simulator.model_copy(update={"backfill_days": days}))
    store = Store(path)
    floor = Floor(cfg)
    targets = [Target(url=t.url, source="simulator", kind=t.kind, site=t.site, cluster=t.cluster, host=t.host)
               for t in SimulatorServer(floor).targets()]
    end = datetime.now(timezone.utc).replace(microsecond=0)
    end -= timedelta(seconds=end.timestamp() % 15)
    fill = simulated_backfill(cfg, store, floor)       # the owner's back-fill job, through its spool
    t0 = time.perf_counter()
    fill(end=end - timedelta(hours=1))
    steps = fill.done
    print(f"back-filled {days:g} days ({steps} steps) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    def fetch(url: str, timeout: float) -> str:      # live scrapes without HTTP, at the cycle's time
        target = next(t for t in targets if t.url == url)
        if target.kind == "facility":
            return floor.facility_text(target.site, fetch.at)
        try:
            return floor.node_text(target.host, fetch.at)
        except ExporterDown as exc:
            from collectors.targets import ScrapeError
            raise ScrapeError(f"HTTP 503 ({exc.mode})") from None

    jobs = [(DcgmCollector(cfg, fetch=fetch), [t for t in targets if t.kind == "dcgm"]),
            (FacilityCollector(cfg, fetch=fetch), [t for t in targets if t.kind == "facility"])]
    sched = Scheduler(store, jobs, interval_s=15, concurrency=4)
    store.register_targets([t.as_row() for t in targets])
    ts = end - timedelta(hours=1)
    while ts <= end:
        fetch.at = ts.timestamp()
        sched.run_cycle(ts)
        ts += timedelta(seconds=15)
    sched.pool.shutdown()
    store.close()
    print(f"plus one hour of live 15 s scrapes, total {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return end


def time_query(store: Store, name: str, params: dict, repeat: int):
    """(median s, max s, last result) of `repeat` runs of a named query."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        df = store.query(name, **params)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times), df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="artifacts/bench-pages.duckdb")
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cfg = config.load()
    path = Path(args.db)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path, args.days, cfg)
    store = Store(path)
    now = store.con.execute("SELECT max(ts) FROM device_samples").fetchall()[0][0] + timedelta(seconds=5)
    rows = store.con.execute("SELECT count(*) FROM device_samples").fetchall()[0][0]
    size = os.path.getsize(path) / 2**20
    host = store.con.execute("SELECT min(host) FROM devices").fetchall()[0][0]
    stale = cfg.collection.stale_after_s
    page_queries = {
        "live": [("fleet_summary", dict(now=now, stale_s=stale, cluster=None, owned=cfg.total_gpus())),
                 ("facility_live", dict(now=now, stale_s=stale * 4)),
                 ("heatmap", dict(now=now, stale_s=stale, cluster=None)),
                 ("problems", dict(now=now, stale_s=stale, hours=24, cluster=None)),
                 ("hosts", dict(cluster=None)),
                 ("device_history", dict(now=now, minutes=60, host=host, device_id=None))],
        "sources": [("sources", dict(now=now))],
    }
    print(f"database: {size:,.0f} MiB, {rows:,} device samples")
    print(f"{'page':<8} {'query':<16} {'median s':>9} {'max s':>7} {'rows':>6}")
    for page, queries in page_queries.items():
        total = 0.0
        for name, params in queries:
            med, worst, df = time_query(store, name, params, args.repeat)
            total += med
            print(f"{page:<8} {name:<16} {med:>9.3f} {worst:>7.3f} {len(df):>6}")
        print(f"{page:<8} {'(all, per refresh)':<16} {total:>9.3f}")
    store.close()


if __name__ == "__main__":
    main()
