"""The import rate from Prometheus: the peer benchmark's TSDB through the real collector's
history import into a DuckDB file (issue 12, "History from an existing Prometheus").

    .venv/bin/python benchmarks/bench_prom_import.py --tsdb /tmp/peer/data/tsdb [--days 30] [--profile]

The TSDB folder (../shared/peer-bench: 512 GPUs x 30 days at 60 s, 88.5 M samples, written by
`prom.py`'s promtool backfill) is copied to a temporary folder first (Prometheus writes into
the folder it serves; the original is never touched), then Debian's /usr/bin/prometheus serves
the copy on 127.0.0.1 with the flags prom.py uses. A `prometheus` source with
`cluster_label = "cluster"` and `site_label = "site"` imports `--days` of history ending at the
data's end (meta.json) through `HistoryImport`, written by the store's own write path.

Prints samples imported, wall time, samples/s, the split between fetching (HTTP and JSON,
Prometheus' own work included), the series -> rows stage and the store's write, the peak RSS
of this process and of Prometheus, and checks: devices (GPU count), the devices per cluster,
and the samples per metric against Prometheus' own count_over_time over the same range.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import json
import os
import pstats
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import config  # noqa: E402
from collectors.prometheus import HistoryImport, PrometheusCollector, default_client  # noqa: E402
from queries import Store  # noqa: E402

METRICS = {"DCGM_FI_DEV_GPU_UTIL": "util_pct", "DCGM_FI_PROF_SM_ACTIVE": "sm_active",
           "DCGM_FI_DEV_POWER_USAGE": "power_w", "DCGM_FI_DEV_FB_USED": "mem_used_mib"}
# the peer data's site meter: facility power with no meter or scope label of its own
PEER_FACILITY = {"table": "facility_samples", "fields": {"facility_power_watts": {"column": "power_w"}},
                 "labels": {"site": ["site"], "meter": ["meter"], "scope": ["scope"]},
                 "defaults": {"meter": "facility-total", "scope": "facility"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)      # PR_SET_PDEATHSIG


def start_prometheus(tsdb: Path, work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    conf = work / "prometheus.yml"
    conf.write_text(json.dumps({"global": {"scrape_interval": "60s"}, "scrape_configs": []}))
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        ["/usr/bin/prometheus", f"--config.file={conf}", f"--storage.tsdb.path={tsdb}",
         "--storage.tsdb.retention.time=3650d", f"--web.listen-address=127.0.0.1:{port}",
         "--query.max-samples=500000000", "--query.timeout=10m", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"prometheus exited: {(work / 'prometheus.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit("prometheus not ready within 120 s")


def instant(url: str, promql: str, at: float) -> list[dict]:
    q = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=600) as r:
        return json.load(r)["data"]["result"]


def proc_hwm_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Timed:
    """Seconds spent in a callable, summed; `stage` names it for the memory sampler while it runs
    (the innermost running one: a thread's stage stays its own)."""

    stages: dict[int, str] = {}

    def __init__(self, fn, stage: str = ""):
        self.fn, self.s, self.stage = fn, 0.0, stage

    def __call__(self, *a, **kw):
        t0 = time.perf_counter()
        me = threading.get_ident()
        before = Timed.stages.get(me)
        if self.stage:
            Timed.stages[me] = self.stage
        try:
            return self.fn(*a, **kw)
        finally:
            self.s += time.perf_counter() - t0
            if self.stage:
                if before is None:
                    Timed.stages.pop(me, None)
                else:
                    Timed.stages[me] = before


class MemorySampler:
    """This process's RSS every 0.1 s, the peak per set of stages running at the time."""

    def __init__(self):
        self.peaks: dict[str, tuple[float, float]] = {}       # stages -> (peak MiB, seconds into the run)
        self.t0 = time.perf_counter()
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.done.wait(0.1):
            rss = proc_rss_mib()
            key = "+".join(sorted(set(Timed.stages.values()))) or "between"
            if rss > self.peaks.get(key, (0.0, 0.0))[0]:
                self.peaks[key] = (rss, time.perf_counter() - self.t0)


def make_config(meta: dict, db: Path, url: str, days: int) -> config.Config:
    centre = {
        "centre": {"name": "peer-bench"},
        "sites": [{"id": s, "name": s, "timezone": "UTC"} for s in meta["sites"]],
        "clusters": [{"id": c, "site": meta["cluster_site"][c], "name": c, "model": meta["model"],
                      "host_prefix": f"c{c.rsplit('-', 1)[-1]}-gpu", "nodes": meta["nodes"] // len(meta["clusters"]),
                      "gpus_per_node": meta["params"]["gpus_per_node"]}
                     for c in meta["clusters"]],
        "tenants": [{"id": t, "name": t, "namespaces": [t]} for t in meta["tenants"]],
        "collection": {"interval_s": meta["params"]["step_s"], "timeout_s": 600},
        "database": {"path": str(db)},
        "sources": [{"name": "central-prom", "kind": "prometheus", "site": meta["sites"][0],
                     "cluster": meta["clusters"][0], "targets": [url], "mappings": ["dcgm", "peer-facility"],
                     "cluster_label": "cluster", "site_label": "site", "history_days": days}],
    }
    mappings = dict(config._default_mappings())
    mappings["peer-facility"] = PEER_FACILITY
    return config.from_dict(centre, mappings=mappings)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tsdb", type=Path, default=Path("/tmp/peer/data/tsdb"))
    ap.add_argument("--meta", type=Path, default=None, help="the data's meta.json (default: beside the TSDB)")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--work", type=Path, default=None, help="folder for the TSDB copy and the database")
    ap.add_argument("--profile", action="store_true", help="cProfile the import; print the top functions")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--reader", action="store_true", help="time a page-like read twice a second meanwhile")
    ap.add_argument("--memory", action="store_true",
                    help="sample this process's RSS every 0.1 s: the peak per stage (read, rows, write, reopen) "
                         "and DuckDB's own memory (duckdb_memory()) after each window")
    a = ap.parse_args()
    meta = json.loads((a.meta or a.tsdb.parent / "meta.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="bench-prom-import-", dir=a.work))
    try:
        t0 = time.perf_counter()
        shutil.copytree(a.tsdb, work / "tsdb")
        print(f"TSDB copied in {time.perf_counter() - t0:.1f} s")
        prom, url = start_prometheus(work / "tsdb", work)
        try:
            run(a, meta, work, prom, url)
        finally:
            prom.terminate()
            prom.wait(30)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(a, meta: dict, work: Path, prom: subprocess.Popen, url: str) -> None:
    end = datetime.fromtimestamp(meta["end"], timezone.utc)
    db = work / "import.duckdb"
    cfg = make_config(meta, db, url, a.days)
    src = cfg.sources[0]
    store = Store(db, memory_limit=cfg.database.memory_limit, owner=cfg.owner)
    live = PrometheusCollector(cfg, src, client_factory=default_client)
    write = Timed(lambda s: store.write_scrape(samples=s.samples, devices=s.devices, events=s.events,
                                               facility=s.facility), "write")
    reopen = Timed(store.reopen, "reopen")
    store.reopen = reopen                               # type: ignore[method-assign]
    job = HistoryImport(live, store, src, write=write, now=end)     # runs of IMPORT_SLICE_S, as the owner runs it
    imp = job.importer
    rows_s = Timed(imp._process_columnar, "rows")
    imp._process_columnar = rows_s                      # type: ignore[method-assign]
    fetch = Timed(imp._query, "read")                   # in the thread reading the next window ahead
    imp._query = fetch                                  # type: ignore[method-assign]
    done = threading.Event()

    def progress() -> None:
        while not done.wait(30):
            st = job.status()
            print(f"  {st['done']:.0f} of {st['total']:.0f} h, {st['samples']:,} samples, {st['rate'] or 0:,}/s",
                  flush=True)

    threading.Thread(target=progress, daemon=True).start()
    latencies: list[float] = []

    def page_reader() -> None:
        """A page's read while the import runs: each device's newest sample in the newest hour, twice a second."""
        while not done.wait(0.5):
            q0 = time.perf_counter()
            with store.cursor() as cur:
                cur.execute("SELECT device_id, max(ts) FROM device_samples WHERE ts > "
                            "(SELECT max(ts) FROM device_samples) - INTERVAL 1 HOUR GROUP BY 1").fetchall()
            latencies.append(time.perf_counter() - q0)

    if a.reader:
        threading.Thread(target=page_reader, daemon=True).start()
    sampler = MemorySampler() if a.memory else None
    cpu0 = proc_cpu_s(prom.pid)
    own0 = os.times()
    prof = cProfile.Profile() if a.profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    while job.status()["state"] != "done":
        job(end)
    if prof:
        prof.disable()
    wall = time.perf_counter() - t0
    done.set()
    if sampler:
        sampler.done.set()
    prom_cpu = proc_cpu_s(prom.pid) - cpu0
    own1 = os.times()
    own_cpu = own1.user - own0.user + own1.system - own0.system
    st = job.status()
    n = st["samples"]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nimported {a.days} d ({st['total']:.0f} h) from {url}")
    print(f"rows imported:        {n:,} (device rows and facility rows)")
    print(f"wall time:            {wall:.1f} s (CPU: this process {own_cpu:.1f} s, Prometheus {prom_cpu:.1f} s)")
    print(f"  series -> rows:     {rows_s.s:.1f} s (arrays; the per-sample path's windows are counted below)")
    print(f"  store write:        {write.s:.1f} s")
    print(f"  waiting for reads:  {wall - rows_s.s - write.s:.1f} s (reads run ahead in a thread: {fetch.s:.1f} s "
          f"for HTTP and the body; Prometheus used {prom_cpu:.1f} s CPU)")
    print(f"peak RSS:             {rss:,.0f} MiB (this process), {proc_hwm_mib(prom.pid) or 0:,.0f} MiB (Prometheus)")
    print(f"  reopens:            {reopen.s:.1f} s")
    print(f"database:             {db.stat().st_size / 2**20:,.0f} MiB")
    if sampler:
        for key, (mib, at) in sorted(sampler.peaks.items(), key=lambda kv: -kv[1][0]):
            print(f"  peak RSS while {key:<22} {mib:,.0f} MiB (at {at:.0f} s)")
    if latencies:
        latencies.sort()
        mid = latencies[len(latencies) // 2] * 1000
        print(f"a page's read meanwhile: {len(latencies)} reads, median {mid:.0f} ms, "
              f"p95 {latencies[int(len(latencies) * 0.95)] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")

    # checks: what Prometheus holds in the window against what the store holds
    lo, hi = datetime.fromisoformat(st["from"]), datetime.fromisoformat(st["to"])
    span = int((hi - lo).total_seconds())
    with store.cursor() as cur:
        devices = cur.execute("SELECT count(*) FROM devices").fetchall()[0][0]
        per_cluster = dict(cur.execute("SELECT cluster, count(*) FROM devices GROUP BY 1 ORDER BY 1").fetchall())
        stored = cur.execute("SELECT " + ", ".join(f"count({c})" for c in METRICS.values())
                             + ", count(*) FROM device_samples").fetchall()[0]
        fac = cur.execute("SELECT count(*) FROM facility_samples").fetchall()[0][0]
    samples = sum(stored[:-1]) + fac
    print(f"samples imported:     {samples:,} ({stored[-1]:,} device rows x their metrics + {fac:,} facility)")
    print(f"samples/s:            {samples / wall:,.0f} (per CPU second of this process: {samples / own_cpu:,.0f})")
    ok = True
    print(f"devices:              {devices} (per cluster {per_cluster}; Prometheus' data: {meta['params']['gpus']})")
    ok &= devices == meta["params"]["gpus"]
    for metric, got in [*zip(METRICS, stored), ("facility_power_watts", fac)]:
        want = instant(url, f"sum(count_over_time({metric}[{span}s]))", hi.timestamp())
        w = int(float(want[0]["value"][1])) if want else 0
        ok &= w == got
        print(f"  {metric:<26} stored {got:>12,}  count_over_time {w:>12,}  {'ok' if w == got else 'DIFFERS'}")
    print("checks:", "all agree" if ok else "SOME DIFFER")
    store.close()
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
