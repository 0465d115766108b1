"""Bytes per GPU per day at each history tier (docs/history.md "Size").

Seeds a fresh database file with GPUS devices x DAYS days of samples every INTERVAL seconds
through the real write path (Store.write_scrape, an hour of the whole floor per batch), with
values that move as a working floor's do (utilisation and activity in runs, pods coming and
going, power following load, an energy counter), builds the tiers with the rollup job, and
prints rows and bytes per tier (the storage blocks each table holds after a checkpoint) and
bytes per GPU per day.

    .venv/bin/python benchmarks/bench_history_size.py [--gpus 64] [--days 2] [--interval 15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors.batch import DEVICE_SCHEMA, SAMPLE_SCHEMA  # noqa: E402
from config import CONFIG_DIR, from_dict  # noqa: E402
from queries import Store, rollup  # noqa: E402

START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def seed(store: Store, gpus: int, days: float, interval: float, rng: np.random.Generator) -> int:
    ids = [f"GPU-{i:08x}-bench" for i in range(gpus)]
    hosts = [f"trn-a-{i // 8 + 1:03d}" for i in range(gpus)]
    devices = pa.Table.from_pylist([{
        "device_id": d, "vendor": "nvidia", "model": "NVIDIA H100 80GB HBM3", "catalogue_model": "H100-SXM",
        "peak_dense_tflops": 989.0, "host": h, "cluster": "train-a", "site": "sh-lingang", "gpu_index": i % 8,
        "uuid": d, "source": "bench", "first_seen": START, "last_seen": START}
        for i, (d, h) in enumerate(zip(ids, hosts))],
        schema=DEVICE_SCHEMA)
    store.write_scrape(devices=devices)
    per_hour = int(3600 / interval)
    energy = np.zeros(gpus)
    busy = rng.random(gpus) < 0.7
    pod = [f"job-{rng.integers(1_000_000)}" for _ in range(gpus)]
    written = 0
    for h in range(int(days * 24)):
        # a quarter of the GPUs change job each hour; utilisation steady within a job
        change = rng.random(gpus) < 0.25
        busy = np.where(change, rng.random(gpus) < 0.7, busy)
        pod = [f"job-{rng.integers(1_000_000)}" if c else p for c, p in zip(change, pod)]
        base_util = np.where(busy, rng.uniform(40, 100, gpus), 0.0)
        t0 = START + timedelta(hours=h)
        n = gpus * per_hour
        ts = [t0 + timedelta(seconds=k * interval) for k in range(per_hour) for _ in range(gpus)]
        util = np.clip(np.tile(base_util, per_hour) + rng.normal(0, 3, n) * np.tile(busy, per_hour), 0, 100).round()
        power = (70 + 6.3 * util + rng.normal(0, 5, n)).round(2)
        energy_steps = power.reshape(per_hour, gpus) * interval
        counter = energy + np.cumsum(energy_steps, axis=0)
        energy = counter[-1]
        cols = {name: pa.nulls(n, SAMPLE_SCHEMA.field(name).type) for name in SAMPLE_SCHEMA.names}
        cols.update({
            "ts": pa.array(ts, SAMPLE_SCHEMA.field("ts").type),
            "device_id": pa.array(ids * per_hour), "site": pa.array(["sh-lingang"] * n),
            "cluster": pa.array(["train-a"] * n), "host": pa.array(hosts * per_hour),
            "util_pct": pa.array(util), "sm_active": pa.array((util / 100 * 0.9).round(3)),
            "tensor_active": pa.array((util / 100 * 0.5).round(3)), "power_w": pa.array(power),
            "energy_j": pa.array(counter.reshape(-1).round(1)),
            "energy_delta_j": pa.array(energy_steps.reshape(-1).round(1)),
            "temp_c": pa.array((35 + util * 0.4).round()), "mem_used_mib": pa.array((util * 700).round()),
            "xid_last": pa.array(np.zeros(n, dtype=np.int64)),
            "namespace": pa.array([("train" if b else None) for b in np.tile(busy, per_hour)], pa.string()),
            "pod": pa.array([(p if b else None) for p, b in zip(pod * per_hour, np.tile(busy, per_hour))], pa.string()),
            "source": pa.array(["bench"] * n),
        })
        written += store.write_scrape(samples=pa.table(cols, schema=SAMPLE_SCHEMA))
    return written


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=64)
    ap.add_argument("--days", type=float, default=2)
    ap.add_argument("--interval", type=float, default=15)
    args = ap.parse_args()
    d = tomllib.loads((CONFIG_DIR / "centre.toml").read_text(encoding="utf-8"))
    d["collection"] = {"interval_s": args.interval}
    cfg = from_dict(d)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "size.duckdb")
        t = time.perf_counter()
        n = seed(store, args.gpus, args.days, args.interval, np.random.default_rng(12))
        print(f"seeded {n:,} samples ({args.gpus} GPUs x {args.days:g} days at {args.interval:g} s) "
              f"in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        res = rollup.build(store, cfg, START + timedelta(days=args.days, hours=1))
        print(f"rollup build: {res.rows:,} rows, {res.detail}, {time.perf_counter() - t:.1f} s")
        with store.cursor() as cur:
            cur.execute("CHECKPOINT").fetchall()
        status = rollup.rollup_status(store)
        with store.cursor() as cur:
            raw_rows = cur.execute("SELECT count(*) FROM device_samples").fetchall()[0][0]
        tiers = {"device_samples": {"rows": raw_rows, "bytes": rollup.table_bytes(store, "device_samples")},
                 **status["tiers"]}
        gpu_days = args.gpus * args.days
        print(f"{'table':<20} {'rows':>12} {'bytes':>14} {'bytes/GPU/day':>14} {'rows/GPU/day':>13}")
        for name, t_ in tiers.items():
            b = t_["bytes"] or 0
            print(f"{name:<20} {t_['rows']:>12,} {b:>14,} {b / gpu_days:>14,.0f} {t_['rows'] / gpu_days:>13,.1f}")
        store.close()


if __name__ == "__main__":
    main()
