"""The energy page and the /api/v1/pue and /api/v1/energy routes at a centre's size.

    .venv/bin/python benchmarks/bench_energy.py [--gpus 1024] [--days 90] [--interval 60]
        [--db /tmp/bench-energy.duckdb] [--repeat 3]

Seeds a fresh database file for the history benchmark's centre (bench_history.centre_config:
GPUS H100s in two clusters, the example's tenants, one site) with the meters of config/energy.toml
(its halls put on the two clusters): every INTERVAL seconds for DAYS days, the facility intake,
the UPS output (category 1), a PDU output per hall (category 2) and the cooling plant, each with
power and an energy register, and a cooling loop per hall reporting power only, all written
through `Store.write_scrape` a day per batch; a vectorised model (IT power following a daily
load curve, cooling following a seasonal and daily outdoor temperature, UPS losses, a fixed
overhead). The group tier the energy reads (rollup_group_1h: board energy and observed
GPU-seconds per hour, cluster and tenant) is written for the same hours in the rollup job's
shape, as the history benchmark's store holds it.

Then it times the energy job (`queries.energy.build`): the first build over the whole history,
and a steady-state run after one more minute of readings; and, on the file opened read-only as
the pages open it, each call the energy page makes on one render (its default grouping, by
site) and both API routes (the table builders plus the JSON body) for a 30-day and a 90-day
range. Each figure line starts with `figure:`.
"""

from __future__ import annotations

import argparse
import statistics
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

from api import energy as api_energy  # noqa: E402
from bench_history import centre_config  # noqa: E402
from config import CONFIG_DIR, Config  # noqa: E402
from config import energy as energy_config  # noqa: E402
from queries import Store, energy  # noqa: E402
from queries.catalogue import arrow_schema  # noqa: E402
from queries.history import View  # noqa: E402
from queries.scope import EVERYTHING  # noqa: E402

UTC = timezone.utc
END = datetime(2026, 12, 1, tzinfo=UTC)
TENANT_SHARES = (0.22, 0.18, 0.12, 0.08, 0.14, 0.06)     # of board energy, the example's six tenants


def bench_config(gpus: int, interval: float, db: str) -> Config:
    """The history benchmark's centre with energy.toml's meters, halls on clusters c0 and c1."""
    cfg = centre_config(gpus, interval, db=db)
    data = tomllib.loads((CONFIG_DIR / "energy.toml").read_text(encoding="utf-8"))
    site = cfg.sites[0].id
    for i, h in enumerate(data.get("halls", [])):
        h["site"], h["clusters"] = site, [f"c{i}"] if i < len(cfg.clusters) else []
    for part in ("sites", "meters", "green"):
        for x in data.get(part, []):
            x["site"] = site
    section = energy_config.Section.model_validate(data)
    return replace(cfg, energy=section)


def facility_rows(cfg: Config, start: datetime, n: int, interval: float, seed: int = 5) -> list[pa.Table]:
    """n readings per meter from `start`, a day per table."""
    rng = np.random.default_rng(seed)
    gpus = cfg.total_gpus()
    t = start.timestamp() + np.arange(n) * interval
    day = 2 * np.pi * ((t + 8 * 3600) % 86_400) / 86_400
    year = 2 * np.pi * (t - datetime(2026, 7, 28, tzinfo=UTC).timestamp()) / (365.25 * 86_400)
    outdoor = 17 + 11.5 * np.cos(year) + 3.5 * np.cos(day - 2 * np.pi * 14 / 24)
    it_w = gpus * 680.0 * (0.78 + 0.12 * np.cos(day - 2 * np.pi * 16 / 24) + 0.02 * rng.standard_normal(n))
    cool_w = 12_000 + it_w * (0.17 + 0.0075 * (outdoor - 20))
    fac_w = it_w * 1.025 + 5_000 + cool_w + 40_000
    hall_a = 0.56 + 0.03 * np.cos(day)
    powers = {"facility": fac_w, "ups": it_w, "pdu-a": it_w * hall_a * 0.988, "pdu-b": it_w * (1 - hall_a) * 0.988,
              "cooling": cool_w, "loop-a": cool_w * hall_a, "loop-b": cool_w * (1 - hall_a)}
    registers = {k: 3_000_000 + np.cumsum(v) * interval / 3.6e6 for k, v in powers.items()}
    site = cfg.sites[0].id
    meters = [(m.meter, m.scope, m.category, m.hall, m.loop) for m in cfg.energy.meters]
    kind = {}
    for name, scope, cat, hall, loop in meters:
        suffix = "-a" if hall == "hall-a" else "-b"
        kind[name] = ("facility" if scope == "facility" else "ups" if cat == 1 else f"pdu{suffix}" if cat == 2
                      else f"loop{suffix}" if loop else "cooling")
    per_day = int(86_400 // interval)
    ts = pa.array((t * 1e6).astype("int64"), pa.timestamp("us", tz="UTC"))
    out = []
    for a in range(0, n, per_day):
        b = min(n, a + per_day)
        cols: dict[str, list] = {k: [] for k in ("ts", "site", "meter", "scope", "pue_category", "power_w",
                                                  "energy_kwh", "source")}
        for name, scope, cat, _, loop in meters:
            k = kind[name]
            cols["ts"].append(ts[a:b])
            cols["site"] += [site] * (b - a)
            cols["meter"] += [name] * (b - a)
            cols["scope"] += [scope] * (b - a)
            cols["pue_category"] += [cat] * (b - a)
            cols["power_w"].append(pa.array(powers[k][a:b]))
            cols["energy_kwh"].append(pa.nulls(b - a, pa.float64()) if loop else pa.array(registers[k][a:b]))
            cols["source"] += ["bench-facility"] * (b - a)
        table = pa.table({"ts": pa.concat_arrays(cols["ts"]), "site": cols["site"], "meter": cols["meter"],
                          "scope": cols["scope"], "pue_category": pa.array(cols["pue_category"], pa.int32()),
                          "power_w": pa.concat_arrays(cols["power_w"]),
                          "energy_kwh": pa.concat_arrays(cols["energy_kwh"]), "source": cols["source"]})
        out.append(table.cast(arrow_schema("facility_samples")))
    return out


def group_rows(cfg: Config, start: datetime, hours: int, seed: int = 7) -> pa.Table:
    """rollup_group_1h per hour, cluster and tenant: board energy (about 70 % of IT) and GPU-seconds."""
    rng = np.random.default_rng(seed)
    tenants = [t.id for t in cfg.tenants] + ["_unattributed", "_unallocated"]
    shares = np.array([*TENANT_SHARES[:len(cfg.tenants)], 0.05])
    shares = np.append(shares, max(0.0, 1 - shares.sum()))
    rows: dict[str, list] = {k: [] for k in arrow_schema("rollup_group_1h").names}
    for c in cfg.clusters:
        n = c.nodes * c.gpus_per_node
        for h in range(hours):
            bucket = start + timedelta(hours=h)
            w = np.clip(shares * (1 + 0.2 * rng.standard_normal(len(shares))), 0.0, None)
            w = w / w.sum()
            for tenant, share in zip(tenants, w):
                obs = n * 3600.0 * share
                values = dict(bucket=bucket, site=c.site, cluster=c.id, model="H100-SXM", tenant=tenant,
                              devices=int(n * share), samples=int(obs / 60), observed_s=obs, available_s=obs,
                              allocated_s=obs if not tenant.startswith("_una") else 0.0, busy_s=obs * 0.8,
                              useful_s=obs * 0.4, useful_basis="tensor", alloc_idle_s=obs * 0.1, util_s=obs * 0.6,
                              util_obs_s=obs, tflop_s=obs * 0.4 * 989, energy_j=obs * 480.0)
                for k, v in values.items():
                    rows[k].append(v)
    return pa.table(rows, schema=arrow_schema("rollup_group_1h"))


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def cold(fn: Callable[[], Any]) -> Callable[[], Any]:
    """`fn` with the energy module's per-render memo emptied first: each repeat a new render."""
    def run() -> Any:
        energy._MEMO.clear()
        return fn()
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpus", type=int, default=1024)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--interval", type=float, default=60.0)
    ap.add_argument("--db", default="/tmp/bench-energy.duckdb")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    path = Path(args.db)
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)
    cfg = bench_config(args.gpus, args.interval, str(path))
    start = END - timedelta(days=args.days)
    n = int(args.days * 86_400 // args.interval)
    t0 = time.perf_counter()
    store = Store(path, memory_limit=cfg.database.memory_limit)
    rows = 0
    for table in facility_rows(cfg, start, n + 1, args.interval):
        store.write_scrape(facility=table)
        rows += table.num_rows
    store.insert("rollup_group_1h", group_rows(cfg, start, args.days * 24))
    print(f"figure: seed {rows:,} meter readings ({len(cfg.energy.meters)} meters x {n + 1:,}) and the group tier "
          f"in {time.perf_counter() - t0:.1f} s")
    now = END + timedelta(minutes=1)
    t0 = time.perf_counter()
    res = energy.build(store, cfg, now, full=True)
    print(f"figure: energy job, first build over {args.days} days: {time.perf_counter() - t0:.2f} s "
          f"({res.rows:,} meter quarters)")
    more = facility_rows(cfg, END, 2, args.interval)[0]
    store.write_scrape(facility=more)
    t0 = time.perf_counter()
    res = energy.build(store, cfg, now + timedelta(minutes=1))
    print(f"figure: energy job, steady run (recent check, one new reading per meter): "
          f"{time.perf_counter() - t0:.3f} s ({res.rows} rows rewritten)")
    t0 = time.perf_counter()
    res = energy.build(store, cfg, now + timedelta(minutes=1), full=True)
    print(f"figure: energy job, daily full check with nothing changed: {time.perf_counter() - t0:.3f} s")
    store.close()

    ro = Store(path, read_only=True, memory_limit=cfg.database.memory_limit)
    tz = cfg.sites[0].timezone
    at = END
    for days in (30, args.days):
        v = View(start=END - timedelta(days=days), end=END, tz=tz, step="all")
        daily = replace(v, step="1d")
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("summary pue_table (all)", lambda v=v: energy.pue_table(ro, cfg, v, EVERYTHING, now=at)),
            ("summary energy_table by site", lambda v=v: energy.energy_table(ro, cfg, v, EVERYTHING, by="site",
                                                                             now=at)),
            ("month pue_table", lambda v=v: energy.pue_table(ro, cfg, replace(v, start=END - timedelta(days=30)),
                                                             EVERYTHING, now=at)),
            ("over time pue_table (1d)", lambda d=daily: energy.pue_table(ro, cfg, d, EVERYTHING, now=at)),
            ("ppue_table", lambda v=v: energy.ppue_table(ro, cfg, v, EVERYTHING, now=at)),
            ("energy_table by site", lambda v=v: energy.energy_table(ro, cfg, v, EVERYTHING, by="site", now=at)),
            ("headroom_table", lambda v=v: energy.headroom_table(ro, cfg, v, EVERYTHING, now=at)),
        ]
        for name, fn in calls:
            s, _ = timed(cold(fn), args.repeat)
            print(f"figure: {days} d page {name} (alone): {s:.3f} s")

        def render(calls: list = calls) -> None:
            for _, fn in calls:
                fn()
        s, _ = timed(cold(render), args.repeat)
        print(f"figure: {days} d energy page, one render (all its calls in order): {s:.3f} s")
        for by in ("cluster", "tenant"):
            s, _ = timed(cold(lambda v=v, by=by: energy.energy_table(ro, cfg, v, EVERYTHING, by=by, now=at)),
                         args.repeat)
            print(f"figure: {days} d energy_table by {by} (another grouping on the page): {s:.3f} s")
        params = {"from": (END - timedelta(days=days)).isoformat(), "to": END.isoformat(), "step": "1d"}
        s, _ = timed(cold(lambda p=params: api_energy.pue_route(ro, cfg, p, at, EVERYTHING)[0].to_json()),
                     args.repeat)
        print(f"figure: {days} d GET /api/v1/pue?step=1d (table + JSON): {s:.3f} s")
        p2 = {**params, "step": "all", "by": "tenant"}
        s, _ = timed(cold(lambda p=p2: api_energy.energy_route(ro, cfg, p, at, EVERYTHING)[0].to_json()),
                     args.repeat)
        print(f"figure: {days} d GET /api/v1/energy?by=tenant (table + JSON): {s:.3f} s")
    ro.close()


if __name__ == "__main__":
    main()
