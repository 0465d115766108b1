"""History at a centre's size: seed, rollup build and catch-up, every history page and API query.

    .venv/bin/python benchmarks/bench_history.py [--gpus 1024] [--days 90] [--interval 60]
        [--raw-days 14] [--db artifacts/bench-history.duckdb] [--repeat 3]

Seeds a fresh database file with GPUS devices (two clusters of 8-GPU nodes) x DAYS days of samples
every INTERVAL seconds, all of it through the real write path: `Store.write_scrape` with Arrow
batches in the collectors' canonical columns (SAMPLE_SCHEMA), one hour of the whole floor per
batch, made by a vectorised generator (`SyntheticFloor`: jobs of the config's tenants' namespaces
plus some unattributed ones, allocated-but-idle GPUs, idle GPUs, power that follows load, an
energy counter with deltas). How the two parts reach the tiers:

- the older part (DAYS - RAW_DAYS days) one day at a time: write the day's raw samples, run the
  rollup job (`queries.rollup.build`), delete that day's raw samples but its last hour (which
  the next day's first rebuild reads): the device and group tiers hold it, raw does not, as at
  a centre past its raw retention;
- the newest RAW_DAYS days written with no rollup run (as if the rollup job had been down), then
  one `rollup.build` catches up all of them (the "catch-up" figure); then one more scrape of the
  floor and one more `rollup.build` (the "build" figure: the job's steady-state run).

Then it prints rows and bytes per tier (after a checkpoint) and, in a fresh process that opens
the file as the dashboard does (the config's memory_limit), times every query behind the
utilisation and tenant-usage pages (the same queries/history.py calls the pages make, with their
default filters) and both API routes (the api module's table builders plus the JSON body) for a
30-day and a 90-day range, with that process's peak memory (VmHWM). Each figure line starts with
`figure:` so a smoke test can read them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tomllib
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors.batch import DEVICE_SCHEMA, SAMPLE_SCHEMA  # noqa: E402
from config import CONFIG_DIR, Config, from_dict  # noqa: E402
from queries import Store, rollup  # noqa: E402
from queries.store import transaction  # noqa: E402

SOURCE = "bench-dcgm"
MODEL = "NVIDIA H100 80GB HBM3"
UNATTRIBUTED_NS = ("scratch", "ci-runner")        # namespaces no tenant lists


def centre_config(gpus: int, interval: float, *, clusters: int = 2, gpus_per_node: int = 8,
                  db: str | None = None) -> Config:
    """The example centre (its sites, tenants, prices) resized to `gpus` GPUs in `clusters`
    clusters of `gpus_per_node`-GPU nodes, collecting every `interval` s from one dcgm source
    (so the simulator is off and device time uses `interval`)."""
    d = tomllib.loads((CONFIG_DIR / "centre.toml").read_text(encoding="utf-8"))
    nodes = gpus // gpus_per_node
    site = d["sites"][0]["id"]
    d["clusters"] = [{"id": f"c{k}", "name": f"Cluster {k}", "site": site,
                      "nodes": nodes // clusters + (1 if k < nodes % clusters else 0),
                      "gpus_per_node": gpus_per_node, "model": MODEL, "host_prefix": f"c{k}-gpu"}
                     for k in range(clusters)]
    d["collection"] = {**d.get("collection", {}), "interval_s": interval,
                       "stale_after_s": max(4 * interval, 60)}
    d["sources"] = [{"name": SOURCE, "kind": "dcgm", "site": site, "cluster": "c0",
                     "targets": ["http://127.0.0.1:9400/metrics"]}]
    if db:
        d["database"] = {**d.get("database", {}), "path": db}
    return from_dict(d)


class SyntheticFloor:
    """Canonical sample batches for the config's clusters, vectorised. Each hour a quarter of
    the GPUs start a new job; a job is one of: nobody holds the GPU (20 %), a tenant's
    namespace busy (60 %), a tenant's namespace idle (10 %: the reclaim list), a namespace no
    tenant lists, busy (10 %: unattributed). Utilisation is steady within a job plus noise."""

    def __init__(self, cfg: Config, seed: int = 12):
        self.rng = np.random.default_rng(seed)
        hosts: list[str] = []
        ids: list[str] = []
        clusters: list[str] = []
        index: list[int] = []
        for c in cfg.clusters:
            for n in range(c.nodes):
                for g in range(c.gpus_per_node):
                    hosts.append(f"{c.host_prefix}-{n + 1:03d}")
                    ids.append(f"GPU-{len(ids):08x}-0000-bench")
                    clusters.append(c.id)
                    index.append(g)
        self.n = len(ids)
        self.site = cfg.sites[0].id
        self.ids, self.hosts, self.clusters = pa.array(ids), pa.array(hosts), pa.array(clusters)
        self.index = index
        tenant_ns = [ns for t in cfg.tenants for ns in t.namespaces]
        self.namespaces = pa.array([None, *tenant_ns, *UNATTRIBUTED_NS], pa.string())
        self._tenant_ns = np.arange(1, 1 + len(tenant_ns))
        self._other_ns = np.arange(1 + len(tenant_ns), 1 + len(tenant_ns) + len(UNATTRIBUTED_NS))
        self.ns = np.zeros(self.n, dtype=np.int64)
        self.base = np.zeros(self.n)
        self.pod = np.zeros(self.n, dtype=np.int64)
        self.energy = self.rng.uniform(1e9, 2e9, self.n)
        self._jobs(np.ones(self.n, dtype=bool))

    def devices(self, at: datetime) -> pa.Table:
        return pa.Table.from_pylist([{
            "device_id": d, "vendor": "nvidia", "model": MODEL, "catalogue_model": "H100-SXM",
            "peak_dense_tflops": 989.0, "host": h, "cluster": c, "site": self.site, "gpu_index": i,
            "uuid": d, "source": SOURCE, "first_seen": at, "last_seen": at}
            for d, h, c, i in zip(self.ids.to_pylist(), self.hosts.to_pylist(), self.clusters.to_pylist(),
                                  self.index)], schema=DEVICE_SCHEMA)

    def _jobs(self, change: np.ndarray) -> None:
        k = int(change.sum())
        kind = self.rng.choice(4, size=k, p=[0.2, 0.6, 0.1, 0.1])
        ns = np.where(kind == 0, 0, np.where(kind == 3, self.rng.choice(self._other_ns, k),
                                             self.rng.choice(self._tenant_ns, k)))
        base = np.where((kind == 1) | (kind == 3), self.rng.uniform(30, 100, k), 0.0)
        self.ns[change], self.base[change] = ns, base
        self.pod[change] = self.rng.integers(0, 10_000_000, k)

    def next_hour(self) -> None:
        self._jobs(self.rng.random(self.n) < 0.25)

    def batch(self, t0: datetime, steps: int, interval: float) -> pa.Table:
        """`steps` scrapes of every GPU from t0, `interval` s apart, as one SAMPLE_SCHEMA table."""
        n, rows = self.n, self.n * steps
        ts0 = np.datetime64(t0.replace(tzinfo=None), "us")
        ts = np.repeat(ts0 + (np.arange(steps) * int(interval * 1e6)).astype("timedelta64[us]"), n)
        busy = np.tile(self.base > 0, steps)
        util = np.clip(np.tile(self.base, steps) + self.rng.normal(0, 3, rows) * busy, 0, 100).round()
        power = (70 + 6.3 * util + self.rng.normal(0, 5, rows)).round(1)
        delta = (power * interval).round(1)
        counter = self.energy + np.cumsum(delta.reshape(steps, n), axis=0)
        self.energy = counter[-1]
        gpu = np.tile(np.arange(n), steps)
        held = np.tile(self.ns > 0, steps)
        pods = pa.array([f"job-{p}" for p in self.pod])
        zeros = pa.array(np.zeros(rows, dtype=np.int32))
        cols: dict[str, Any] = {name: pa.nulls(rows, SAMPLE_SCHEMA.field(name).type) for name in SAMPLE_SCHEMA.names}
        take = pa.array(gpu)
        cols.update({
            "ts": pa.array(ts, SAMPLE_SCHEMA.field("ts").type),
            "device_id": self.ids.take(take), "host": self.hosts.take(take), "cluster": self.clusters.take(take),
            "site": pa.array([self.site]).take(zeros),
            "util_pct": pa.array(util), "sm_active": pa.array((util / 100 * 0.9).round(3)),
            "tensor_active": pa.array((util / 100 * 0.5).round(3)), "power_w": pa.array(power),
            "energy_j": pa.array(counter.reshape(-1).round(1)), "energy_delta_j": pa.array(delta),
            "temp_c": pa.array((35 + util * 0.4).round()), "mem_used_mib": pa.array((util * 700).round()),
            "xid_last": pa.array(np.zeros(rows, dtype=np.int64)),
            "namespace": self.namespaces.take(pa.array(np.tile(self.ns, steps))),
            "pod": pods.take(pa.array(gpu, mask=~held)),
            "source": pa.array([SOURCE]).take(zeros),
        })
        return pa.table(cols, schema=SAMPLE_SCHEMA)


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tier_sizes(store: Store) -> dict[str, dict[str, Any]]:
    with store.cursor() as cur:
        cur.execute("CHECKPOINT").fetchall()
        raw = cur.execute("SELECT count(*) FROM device_samples").fetchall()[0][0]
    return {"device_samples": {"rows": raw, "bytes": rollup.table_bytes(store, "device_samples")},
            **rollup.rollup_status(store)["tiers"]}


def tiers_direct(store: Store, cfg: Config, floor: SyntheticFloor, day: datetime, interval: float,
                 part_hours: int = 6) -> int:
    """One old day straight into the tiers, by the rollup's own code: each `part_hours` of the
    floor's raw samples stand as a view named device_samples (shadowing the table on this
    connection only), the rollup's device-tier build reads them, then its group-tier build
    attributes the day. Raw samples of the day are never stored (a centre past its raw
    retention holds none); device time is the same, as the samples stand `interval` apart."""
    per_hour = int(3600 / interval)
    rows = 0
    with store.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'").fetchall()
        cur.register("rollup_intervals", rollup._intervals_table(cfg))
        with transaction(cur):
            for p in range(0, 24, part_hours):
                a = day + timedelta(hours=p)
                parts = []
                for h in range(part_hours):
                    floor.next_hour()
                    parts.append(floor.batch(a + timedelta(hours=h), per_hour, interval))
                cur.register("device_samples", pa.concat_tables(parts))
                n, _ = rollup._build_devices(cur, cfg, a, a + timedelta(hours=part_hours), day + timedelta(days=2))
                cur.unregister("device_samples")
                rows += n
            rows += rollup._build_groups(cur, cfg, day, day + timedelta(days=1))
    return rows


def seed(path: Path, cfg: Config, days: int, raw_days: int, interval: float, end: datetime) -> datetime:
    store = Store(path, memory_limit=cfg.database.memory_limit)
    store.dirty_lookback_s = rollup.reach_s(cfg)        # as rollup.add_jobs sets it in the dashboard
    floor = SyntheticFloor(cfg)
    start = end - timedelta(days=days)
    store.write_scrape(devices=floor.devices(start))
    # the group tiers below are attributed with this config: the job need not regroup them
    store.set_kv(rollup.FINGERPRINT_KEY, rollup.attribution_fingerprint(cfg))
    per_hour = int(3600 / interval)
    written, t_write, t_roll = 0, 0.0, 0.0
    t_all = time.perf_counter()
    old_days = days - raw_days
    for d in range(days):
        day = start + timedelta(days=d)
        if d >= old_days:
            t = time.perf_counter()
            for h in range(24):
                floor.next_hour()
                written += store.write_scrape(samples=floor.batch(day + timedelta(hours=h), per_hour, interval))
                if d == old_days and h == 0:
                    # the first raw write marks the hour before it too (a sample ends its device's
                    # previous one): that hour's tiers were built whole above, and its raw samples
                    # were never stored, so a rebuild would empty it
                    with store.cursor() as cur:
                        cur.execute("DELETE FROM rollup_dirty WHERE hour < $a", {"a": day}).fetchall()
            t_write += time.perf_counter() - t
        if d < old_days:
            t = time.perf_counter()
            tiers_direct(store, cfg, floor, day, interval)
            t_roll += time.perf_counter() - t
        print(f"  day {d + 1}/{days}: {written:,} samples, write {t_write:.0f} s, rollup {t_roll:.0f} s, "
              f"{time.perf_counter() - t_all:.0f} s", flush=True)
    print(f"figure: seed_samples {written} ({floor.n} GPUs x {days} days at {interval:g} s)")
    print(f"figure: seed_write_s {t_write:.1f} (Store.write_scrape, {written / t_write:,.0f} samples/s)")
    print(f"figure: seed_old_tiers_s {t_roll:.1f} ({old_days} days x {floor.n} GPUs straight into the tiers "
          f"by the rollup's code, {old_days * 24 * per_hour * floor.n:,} samples never stored raw)")
    t = time.perf_counter()
    res = rollup.build(store, cfg, end)
    print(f"figure: catchup_s {time.perf_counter() - t:.1f} ({res.detail}, {res.rows:,} rows: "
          f"the newest {raw_days} days in one rollup run)")
    floor.next_hour()
    store.write_scrape(samples=floor.batch(end, 1, interval))
    t = time.perf_counter()
    res = rollup.build(store, cfg, end + timedelta(seconds=interval))
    print(f"figure: build_s {time.perf_counter() - t:.2f} (steady state: one scrape later, {res.detail})")
    print(f"figure: seed_total_s {time.perf_counter() - t_all:.0f}")
    print(f"figure: seed_process_vmhwm_mib {vm_hwm_mib():.0f}")
    gpu_days = floor.n * days
    print(f"{'table':<20} {'rows':>12} {'bytes':>14} {'bytes/GPU/day':>14}")
    for name, s in tier_sizes(store).items():
        b = s["bytes"] or 0
        span = raw_days if name == "device_samples" else days
        print(f"figure: tier {name:<20} {s['rows']:>12,} {b:>14,} {b / (floor.n * span):>14,.0f}")
    print(f"figure: file_mib {path.stat().st_size / 2**20:,.0f} ({gpu_days:,} GPU-days)")
    store.close()
    return end + timedelta(seconds=interval)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def page_queries(store: Store, cfg: Config, start: datetime, end: datetime,
                 now: datetime) -> dict[str, list[tuple[str, Callable[[], Any]]]]:
    """The calls pages/utilisation.py and pages/tenants.py make on one render (no filters),
    and the API's two routes as a script would call them."""
    from api import history as api
    from queries import history
    from queries.scope import EVERYTHING

    tz = history.default_tz(cfg)
    view = history.View(start=start, end=end, tz=tz)
    chart = replace(view, step=history.auto_step(view))
    iso = {"from": start.isoformat().replace("+00:00", "Z"), "to": end.isoformat().replace("+00:00", "Z")}

    def first_tenant() -> str:
        t = history.tenants(store, cfg, view, now).rows
        return str(t["tenant"].iloc[0]) if len(t) else history.UNATTRIBUTED

    drill = first_tenant()

    def route(build: Callable[..., Any], params: dict[str, str]) -> Callable[[], Any]:
        def answer() -> Any:                       # the table and its JSON body, as the route sends it
            table = build(store, cfg, params, now, EVERYTHING)[0]
            json.dumps(table.to_json(), default=str)
            return table
        return answer

    return {
        "utilisation page": [
            ("choices (filters)", lambda: history.choices(cfg, store)),
            ("ladder fleet", lambda: history.utilisation(store, cfg, view, now)),
            ("ladder by cluster", lambda: history.utilisation(store, cfg, replace(view, by="cluster"), now)),
            ("ladder by model", lambda: history.utilisation(store, cfg, replace(view, by="model"), now)),
            (f"over time ({chart.step})", lambda: history.utilisation(store, cfg, chart, now)),
            ("heatmap", lambda: history.heatmap(store, view, now)),
            ("reclaim tenants", lambda: history.reclaim_tenants(store, cfg, view, now)),
            ("reclaim devices", lambda: history.devices(store, cfg, view, now, idle_only=True, limit=50)),
        ],
        "tenants page": [
            ("choices (filters)", lambda: history.choices(cfg, store)),
            ("tenants + trend", lambda: history.tenants(store, cfg, view, now)),
            ("drill daily", lambda: history.tenant_daily(store, cfg, view, drill, now)),
            ("drill devices", lambda: history.devices(store, cfg, view, now, tenant=drill)),
        ],
        "api": [
            ("utilisation 1h by cluster", route(api.utilisation_table, {**iso, "step": "1h", "by": "cluster"})),
            ("utilisation 1d by tenant", route(api.utilisation_table, {**iso, "step": "1d", "by": "tenant"})),
            ("utilisation all by fleet", route(api.utilisation_table, {**iso, "step": "all", "by": "fleet"})),
            ("tenants", route(api.tenants_table, iso)),
        ],
    }


def run_queries(path: Path, cfg: Config, now: datetime, repeat: int) -> None:
    """Open the file as the dashboard does and time every page's and route's queries."""
    store = Store(path, memory_limit=cfg.database.memory_limit)
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)    # as range_bounds("30d") ends
    print(f"{'range':<6} {'group':<17} {'query':<28} {'median s':>9} {'rows':>6}")
    for days in (30, 90):
        for group, calls in page_queries(store, cfg, end - timedelta(days=days), end, now).items():
            total = 0.0
            for name, fn in calls:
                med, out = timed(fn, repeat)
                total += med
                rows = len(out.rows) if hasattr(out, "rows") else len(out) if hasattr(out, "__len__") else 0
                print(f"figure: query {days}d {group:<17} {name:<28} {med:>9.3f} {rows:>6}")
            if group != "api":
                print(f"figure: page {days}d {group:<17} {'(all, one render)':<28} {total:>9.3f}")
    print(f"figure: dashboard_process_vmhwm_mib {vm_hwm_mib():.0f} (memory_limit {cfg.database.memory_limit})")
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, default=1024)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--raw-days", type=int, default=14)
    ap.add_argument("--interval", type=float, default=60)
    ap.add_argument("--db", default="artifacts/bench-history.duckdb")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--queries-only", metavar="NOW", help="time the queries on an existing --db at NOW (ISO)")
    args = ap.parse_args()
    path = Path(args.db)
    cfg = centre_config(args.gpus, args.interval)
    if args.queries_only:
        run_queries(path, cfg, datetime.fromisoformat(args.queries_only), args.repeat)
        return
    for p in (path, Path(f"{path}.wal")):
        p.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    now = seed(path, cfg, args.days, min(args.raw_days, args.days), args.interval, end)
    sys.stdout.flush()
    # a fresh process, as the dashboard opens the file: its peak memory is the page's, not the seed's
    subprocess.run([sys.executable, __file__, "--gpus", str(args.gpus), "--interval", str(args.interval),
                    "--db", str(path), "--repeat", str(args.repeat), "--queries-only", now.isoformat()],
                   check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


if __name__ == "__main__":
    main()
