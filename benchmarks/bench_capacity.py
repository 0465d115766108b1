"""Capacity planning figures (issue 16): the time to fit and draw every forecast over a 12-month
history of a 1,024-GPU centre, and the backtest table of the simulated centre.

The history is the simulated floor's (simulator/history.py: the months generated straight into
the hourly group tier, demand growing 3 % a month); the fit is the forecast job's (every series,
every candidate model, the 4- and 8-week backtests); drawing is what the page does per series
(its stored points as a table and the plotly figure with bands).

    .venv/bin/python benchmarks/bench_capacity.py                  # 1,024 GPUs (2 clusters x 64 nodes x 8)
    .venv/bin/python benchmarks/bench_capacity.py --nodes 32       # the default simulated centre (512 GPUs)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import config  # noqa: E402
from queries import Store  # noqa: E402
from queries import capacity as cap  # noqa: E402


def centre(nodes: int, months: int) -> config.Config:
    d = config.load(config.CONFIG_DIR)
    raw = {"centre": {"name": "Capacity benchmark"}, "database": {"path": ":memory:"},
           "sites": [s.model_dump() for s in d.sites],
           "clusters": [c.model_dump() | {"nodes": nodes} for c in d.clusters],
           "tenants": [t.model_dump() for t in d.tenants], "simulator": d.simulator.model_dump(),
           "prices": [p.model_dump() for p in d.prices],
           "capacity": d.capacity.model_dump() | {"simulated_history_days": int(months * 30.4375) + 30}}
    return config.from_dict(raw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=64, help="nodes per cluster (8 GPUs each; 2 clusters)")
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--now", default="2026-12-02T12:00:00+00:00")
    args = ap.parse_args()
    from pages.capacity import forecast_figure
    from pages.context import PageContext
    from simulator import Floor
    from simulator import history as gen

    now = datetime.fromisoformat(args.now)
    cfg = centre(args.nodes, args.months)
    gpus = cfg.total_gpus()
    store = Store(":memory:")
    floor = Floor(cfg)
    # the whole history generated: the months before the raw back-fill, and its 30 days too
    fake = config.from_dict({**_raw(cfg), "simulator": {**cfg.simulator.model_dump(), "backfill_days": 0}})
    t0 = time.perf_counter()
    rows = gen.generate(store, fake, floor, now)
    t_gen = time.perf_counter() - t0
    print(f"centre: {gpus} GPUs, {args.months} months of history ({rows:,} hourly group rows generated "
          f"in {t_gen:.1f} s)")
    t0 = time.perf_counter()
    res = cap.fit_all(store, cfg, now)
    t_fit = time.perf_counter() - t0
    fits = cap.latest_fits(store)
    print(f"fit: {len(fits)} series ({res.detail}) in {t_fit:.1f} s; "
          f"per series {t_fit / max(1, len(fits)):.2f} s")
    ctx = PageContext(cfg=cfg, store=store)
    t0 = time.perf_counter()
    for name in fits["series"]:
        table = cap.forecast_table(store, cfg, name, 365)
        hist = cap.actuals(store, cfg, name, 180, now)
        forecast_figure(ctx, hist, table).to_dict()
    t_draw = time.perf_counter() - t0
    print(f"draw: {len(fits)} forecasts (points, history, figure) in {t_draw:.1f} s")
    print(f"fit and draw all: {t_fit + t_draw:.1f} s")
    print()
    print("exhaustion:")
    print(cap.exhaustion_table(store, cfg).for_people("en").to_string(index=False))
    print()
    print("backtest:")
    print(cap.backtest_table(store, cfg).for_people("en").to_string(index=False))
    load = os.getloadavg()
    print(f"\nload average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; cpus {os.cpu_count()}")


def _raw(cfg: config.Config) -> dict:
    return {"centre": cfg.centre.model_dump(), "database": {"path": ":memory:"},
            "sites": [s.model_dump() for s in cfg.sites], "clusters": [c.model_dump() for c in cfg.clusters],
            "tenants": [t.model_dump() for t in cfg.tenants], "prices": [p.model_dump() for p in cfg.prices],
            "capacity": cfg.capacity.model_dump()}


if __name__ == "__main__":
    main()
