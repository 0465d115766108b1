"""Side by side with Prometheus, in one run, on the same samples (issue 12 "Figures to report").

    .venv/bin/python benchmarks/bench_peer.py [--data /tmp/peer/data] [--db artifacts/bench-peer.duckdb]
        [--runs 5] [--prometheus /usr/bin/prometheus]

DATA is a folder ../shared/peer-bench made (see its README): `metrics.parquet` and the Prometheus
TSDB `tsdb/` hold exactly the same samples; `meta.json` says the range and the centre. One run:

1. Prometheus (Debian's) starts over a COPY of DATA/tsdb (DATA is never written) on 127.0.0.1
   at a free port, with prom.py's flags; Q2, Q3 and Q4 (prom.py's exact forms) are timed as
   HTTP GETs (one warm-up, then the median of RUNS), and Prometheus is stopped.
2. The same samples go into a fresh store through the write path: the Parquet's long rows
   (one per metric) pivoted to the collectors' wide rows (DCGM_FI_DEV_GPU_UTIL -> util_pct,
   DCGM_FI_PROF_SM_ACTIVE -> sm_active, DCGM_FI_DEV_POWER_USAGE -> power_w,
   DCGM_FI_DEV_FB_USED -> mem_used_mib, UUID -> device_id, Hostname -> host, gpu -> gpu_index,
   cluster -> cluster, namespace -> namespace, '' -> none), one hour of the floor per
   `Store.write_scrape`, under a config (config.from_dict) of meta.json's clusters and
   nodes whose tenants list those namespaces; then the rollup job builds the tiers.
   With --reuse-db, the file of an earlier run is opened instead (its migrations applied) and
   the rollup job runs once (it fills a tier added since, e.g. rollup_tenant_1h).
3. Our answers, through the API's routes (api.routes on an in-process ASGI client: parameter
   parsing, the queries and the JSON body): Q2 = /api/v1/utilisation step=1h by=cluster,
   Q3 = /api/v1/tenants (allocated_gpu_hours), Q4 = /api/v1/utilisation step=1d by=tenant
   tz=UTC, over the data's range, timed the same way (--our-runs of them), and CHECKED against Prometheus' answers.

Why they must agree, and the tolerance: the samples stand 60 s apart with no gaps, so our device
time gives every sample exactly 60 s and a time-weighted mean equals Prometheus' mean over samples;
GPU-hours are samples x 60 s in both. Prometheus labels a bucket by its end, we by its start (our
bucket + 1 h / 1 d is its timestamp). The API rounds util_pct to 3 decimals and GPU-hours to 4, so
an answer agrees when it differs by at most half that last digit (plus 1e-9 relative).

Q5 (facility_power_watts / GPU board power) is not compared: facility_power_watts is a site
meter, and GPU board power is not a PUE denominator by our rules (PUE is facility energy over IT
energy metered at its category's point), so our PUE over these samples is a different figure.
"""

from __future__ import annotations

import argparse
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors.batch import DEVICE_SCHEMA, SAMPLE_SCHEMA  # noqa: E402
from config import CONFIG_DIR, Config, from_dict  # noqa: E402
from queries import Store, rollup  # noqa: E402

SOURCE = "peer-dcgm"
METRICS = {"DCGM_FI_DEV_GPU_UTIL": "util_pct", "DCGM_FI_PROF_SM_ACTIVE": "sm_active",
           "DCGM_FI_DEV_POWER_USAGE": "power_w", "DCGM_FI_DEV_FB_USED": "mem_used_mib"}
U = "DCGM_FI_DEV_GPU_UTIL"
ALLOC = U + '{namespace!=""}'


def peer_config(meta: dict[str, Any]) -> Config:
    """meta.json's centre: its clusters of 8-GPU nodes (hosts <cN>-gpu-NNN), its site in UTC, a
    tenant per namespace, one dcgm source at the data's step."""
    d = tomllib.loads((CONFIG_DIR / "centre.toml").read_text(encoding="utf-8"))
    p = meta["params"]
    per_cluster = meta["nodes"] // len(meta["clusters"])
    d["sites"] = [{"id": s, "name": s, "timezone": "UTC"} for s in meta["sites"]]
    d["clusters"] = [{"id": c, "name": c, "site": meta["cluster_site"][c], "nodes": per_cluster,
                      "gpus_per_node": p["gpus_per_node"], "model": meta["model"], "host_prefix": f"c{i}-gpu"}
                     for i, c in enumerate(meta["clusters"])]
    d["tenants"] = [{"id": t, "name": t, "namespaces": [t], "workload": "training"} for t in meta["tenants"]]
    d["collection"] = {**d.get("collection", {}), "interval_s": float(p["step_s"])}
    d["sources"] = [{"name": SOURCE, "kind": "dcgm", "site": meta["sites"][0], "cluster": meta["clusters"][0],
                     "targets": ["http://127.0.0.1:9400/metrics"]}]
    d.pop("leases", None)
    d.pop("attribution", None)
    return from_dict(d)


# ---- Prometheus ---------------------------------------------------------------------------

def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)       # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prometheus_queries(meta: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """prom.py's exact forms of Q2, Q3 and Q4 with their HTTP paths and parameters."""
    s, e, step, days = meta["start"], meta["end"], meta["params"]["step_s"], meta["params"]["days"]
    h, d = 3600, 86400
    return {
        "Q2": ("/api/v1/query_range", {"query": f"sum by (cluster) (sum_over_time({U}[1h])) / "
                                                f"sum by (cluster) (count_over_time({U}[1h]))",
                                       "start": s + h, "end": e, "step": h}),
        "Q3": ("/api/v1/query", {"query": f"sum by (namespace) (count_over_time({ALLOC}[{days}d])) * {step} / 3600",
                                 "time": e}),
        "Q4": ("/api/v1/query_range", {"query": f"sum by (namespace) (sum_over_time({ALLOC}[1d])) / "
                                                f"sum by (namespace) (count_over_time({ALLOC}[1d]))",
                                       "start": s + d, "end": e, "step": d}),
    }


def time_runs(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """One warm-up, then `runs` timed: (median s, first run s, last answer)."""
    t = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), first, out


def run_prometheus(data: Path, binary: str, meta: dict[str, Any], runs: int,
                   work: Path) -> dict[str, tuple[float, dict[tuple[str, int], float]]]:
    tsdb = work / "tsdb"
    t = time.perf_counter()
    shutil.copytree(data / "tsdb", tsdb)
    print(f"figure: prom_tsdb_copy_s {time.perf_counter() - t:.1f}")
    cfg = work / "prometheus.yml"
    cfg.write_text("# no scrape jobs: serve the copied TSDB only\nglobal:\n  scrape_interval: 1m\n")
    port = _free_port()
    cmd = [binary, f"--config.file={cfg}", f"--storage.tsdb.path={tsdb}", "--storage.tsdb.retention.time=3650d",
           f"--web.listen-address=127.0.0.1:{port}", "--query.max-samples=500000000", "--query.timeout=10m"]
    log = open(work / "prometheus.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    out: dict[str, tuple[float, dict[tuple[str, int], float]]] = {}
    try:
        t = time.perf_counter()
        while True:
            if proc.poll() is not None:
                raise RuntimeError("prometheus exited: " + (work / "prometheus.log").read_text()[-2000:])
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/-/ready")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() - t > 300:
                raise RuntimeError("prometheus not ready after 300 s")
            time.sleep(0.2)
        print(f"figure: prom_ready_s {time.perf_counter() - t:.2f} (pid {proc.pid}, 127.0.0.1:{port})")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)

        def get(path: str, params: dict[str, Any]) -> dict[str, Any]:
            conn.request("GET", path + "?" + urllib.parse.urlencode(params))
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise RuntimeError(f"prometheus {r.status}: {body[:300]!r}")
            return json.loads(body)["data"]

        keys = {"Q2": "cluster", "Q3": "namespace", "Q4": "namespace"}
        for qid, (route, params) in prometheus_queries(meta).items():
            def ask(route: str = route, params: dict[str, Any] = params) -> dict[str, Any]:
                return get(route, params)
            med, first, answer = time_runs(ask, runs)
            values: dict[tuple[str, int], float] = {}
            for r in answer["result"]:
                for ts, v in r.get("values") or [r["value"]]:
                    values[(r["metric"].get(keys[qid], ""), int(float(ts)))] = float(v)
            out[qid] = (med, values)
            print(f"figure: prom {qid} median_s {med:.3f} first_s {first:.3f} values {len(values)}")
        with open(f"/proc/{proc.pid}/status") as f:
            hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        print(f"figure: prom_vmhwm_mib {hwm / 1024:.0f}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    return out


# ---- our store ----------------------------------------------------------------------------

_PIVOT = """
CREATE TABLE wide AS
SELECT ts, UUID AS device_id, any_value(cluster) AS cluster, any_value(Hostname) AS host,
       any_value(CAST(gpu AS INTEGER)) AS gpu_index, nullif(any_value(namespace), '') AS namespace,
       {cols}
FROM read_parquet($path)
WHERE metric IN ({metrics})
GROUP BY ts, UUID
ORDER BY ts
"""


def load(path: Path, data: Path, cfg: Config, meta: dict[str, Any]) -> tuple[Store, datetime]:
    """Pivot the Parquet's samples to wide rows (DuckDB, in memory), write them through
    Store.write_scrape an hour at a time, build the tiers. Returns the store and the `now`
    the answers are asked at (one step past the data's end, so the last samples count)."""
    site = cfg.clusters[0].site
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    cols = ", ".join(f"max(value) FILTER (WHERE metric = '{m}') AS {c}" for m, c in METRICS.items())
    t = time.perf_counter()
    con.execute(_PIVOT.format(cols=cols, metrics=", ".join(f"'{m}'" for m in METRICS)),
                {"path": str(data / "metrics.parquet")})
    n = con.execute("SELECT count(*) FROM wide").fetchall()[0][0]
    print(f"figure: pivot_s {time.perf_counter() - t:.1f} ({n:,} wide rows from {n * len(METRICS):,} samples)")
    store = Store(path, memory_limit=cfg.database.memory_limit)
    store.dirty_lookback_s = rollup.reach_s(cfg)
    start = datetime.fromtimestamp(meta["start"], timezone.utc)
    end = datetime.fromtimestamp(meta["end"], timezone.utc)
    devices = con.execute("""SELECT device_id, any_value(host), any_value(cluster), any_value(gpu_index)
                             FROM wide GROUP BY device_id ORDER BY 2, 4""").fetchall()
    store.write_scrape(devices=pa.Table.from_pylist([{
        "device_id": d, "vendor": "nvidia", "model": meta["model"], "catalogue_model": "H100-SXM",
        "peak_dense_tflops": 989.0, "host": h, "cluster": c, "site": site, "gpu_index": g, "uuid": d,
        "source": SOURCE, "first_seen": start, "last_seen": end} for d, h, c, g in devices], schema=DEVICE_SCHEMA))
    written, t_write = 0, 0.0
    t_all = time.perf_counter()
    hour = start
    while hour < end:
        batch = con.sql("SELECT * FROM wide WHERE ts >= $a AND ts < $b",
                        params={"a": hour, "b": hour + timedelta(hours=1)}).to_arrow_table()
        rows = batch.num_rows
        cols_ = {name: pa.nulls(rows, SAMPLE_SCHEMA.field(name).type) for name in SAMPLE_SCHEMA.names}
        for name in ("ts", "device_id", "cluster", "host", "namespace", *METRICS.values()):
            cols_[name] = batch.column(name).cast(SAMPLE_SCHEMA.field(name).type)
        cols_["site"] = pa.array([site] * rows, pa.string())
        cols_["source"] = pa.array([SOURCE] * rows, pa.string())
        t = time.perf_counter()
        written += store.write_scrape(samples=pa.table(cols_, schema=SAMPLE_SCHEMA))
        t_write += time.perf_counter() - t
        hour += timedelta(hours=1)
    con.close()
    print(f"figure: load_write_s {t_write:.1f} ({written:,} rows through Store.write_scrape, "
          f"{written * len(METRICS) / t_write:,.0f} samples/s; with reading the pivot: "
          f"{time.perf_counter() - t_all:.1f} s)")
    now = end + timedelta(seconds=meta["params"]["step_s"])
    t = time.perf_counter()
    res = rollup.build(store, cfg, now)
    print(f"figure: rollup_s {time.perf_counter() - t:.1f} ({res.detail}, {res.rows:,} rows)")
    with store.cursor() as cur:
        cur.execute("CHECKPOINT").fetchall()
    for name in ("device_samples", *rollup.TIERS):
        print(f"figure: tier {name} bytes {rollup.table_bytes(store, name) or 0:,}")
    print(f"figure: store_file_mib {path.stat().st_size / 2**20:,.0f}")
    return store, now


def ours(store: Store, cfg: Config, meta: dict[str, Any], now: datetime,
         runs: int) -> dict[str, tuple[float, dict[tuple[str, int], float]]]:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    import api

    iso = {"from": meta["start_iso"], "to": meta["end_iso"]}
    asks = {"Q2": ("/api/v1/utilisation", {**iso, "step": "1h", "by": "cluster"}, "cluster", "util_pct", 3600),
            "Q3": ("/api/v1/tenants", iso, "tenant", "allocated_gpu_hours", None),
            "Q4": ("/api/v1/utilisation", {**iso, "step": "1d", "by": "tenant", "tz": "UTC"}, "tenant", "util_pct",
                   86400)}
    app = Starlette(routes=api.routes(lambda: store, cfg, clock=lambda: now))
    tenants = set(meta["tenants"])
    out: dict[str, tuple[float, dict[tuple[str, int], float]]] = {}
    with TestClient(app) as client:
        for qid, (route, params, key, col, width) in asks.items():
            def get(route: str = route, params: dict[str, str] = params) -> dict[str, Any]:
                r = client.get(route, params=params)
                r.raise_for_status()
                return r.json()
            med, first, body = time_runs(get, runs)
            values: dict[tuple[str, int], float] = {}
            for row in body["rows"]:
                if row.get(col) is None or (qid == "Q3" and row[col] == 0) or row.get("tenant") == "_unallocated":
                    continue             # no held time, or time nobody held: Prometheus' namespace!="" leaves it out
                if key == "tenant" and row["tenant"] not in tenants:
                    values[(row["tenant"], 0)] = float(row[col])     # unattributed time: none in this data
                    continue
                at = (int(datetime.fromisoformat(row["bucket"]).timestamp()) + width if width
                      else meta["end"])
                values[(row[key], at)] = float(row[col])
            out[qid] = (med, values)
            print(f"figure: ours {qid} median_s {med:.4f} first_s {first:.4f} values {len(values)} "
                  f"({route} {urllib.parse.urlencode(params)})")
    return out


def agree(qid: str, prom: dict[tuple[str, int], float], mine: dict[tuple[str, int], float],
          half_digit: float) -> bool:
    keys = set(prom) | set(mine)
    only = sorted(k for k in keys if k not in prom or k not in mine)
    worst = max((abs(prom[k] - mine[k]) for k in keys if k in prom and k in mine), default=0.0)
    bad = [k for k in keys if k in prom and k in mine
           and not abs(prom[k] - mine[k]) <= half_digit + 1e-9 * abs(prom[k])]
    ok = not only and not bad
    print(f"figure: check {qid} {len(keys)} values, {len(only)} on one side only, max abs diff {worst:.2e} "
          f"(tolerance {half_digit:g}) -> {'AGREE' if ok else 'DIFFER'}" + (f" e.g. {only[:3]}" if only else ""))
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/tmp/peer/data")
    ap.add_argument("--db", default="artifacts/bench-peer.duckdb")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--our-runs", type=int, default=31,
                    help="timed runs of each of our answers (median): ours take milliseconds, so a burst of "
                         "other work on the shared machine moves the median of 5 more than it moves "
                         "Prometheus' seconds-long runs")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--reuse-db", action="store_true",
                    help="answer from an existing --db this script loaded before (skips the load and the rollup)")
    args = ap.parse_args()
    data, path = Path(args.data), Path(args.db)
    meta = json.loads((data / "meta.json").read_text())
    print(f"data: {meta['params']['gpus']} GPUs x {meta['params']['days']} days at {meta['params']['step_s']} s, "
          f"{meta['start_iso']} .. {meta['end_iso']}")
    print("load average at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        prom = run_prometheus(data, args.prometheus, meta, args.runs, Path(tmp))
    cfg = peer_config(meta)
    if args.reuse_db and path.exists():
        store = Store(path, memory_limit=cfg.database.memory_limit)
        now = datetime.fromtimestamp(meta["end"], timezone.utc) + timedelta(seconds=meta["params"]["step_s"])
        print(f"figure: store_file_mib {path.stat().st_size / 2**20:,.0f} (reused)")
        t = time.perf_counter()
        res = rollup.build(store, cfg, now)          # a store from an older version: the new tiers filled
        print(f"figure: rollup_s {time.perf_counter() - t:.1f} ({res.detail}, {res.rows:,} rows)")
    else:
        for p in (path, Path(f"{path}.wal")):
            p.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        store, now = load(path, data, cfg, meta)
    mine = ours(store, cfg, meta, now, args.our_runs)
    store.close()
    ok = True
    for qid, half in (("Q2", 5e-4), ("Q3", 5e-5), ("Q4", 5e-4)):
        ok &= agree(qid, prom[qid][1], mine[qid][1], half)
        print(f"figure: speed {qid} prometheus {prom[qid][0]:.3f} s, ours {mine[qid][0]:.4f} s, "
              f"{prom[qid][0] / mine[qid][0]:,.0f}x")
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print("ALL AGREE" if ok else "ANSWERS DIFFER")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
