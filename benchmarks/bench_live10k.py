"""The live page at a 10,000-GPU centre: every refresh's queries, and whether the heatmap reads.

    .venv/bin/python benchmarks/bench_live10k.py [--nodes 1250] [--clusters 5] [--minutes 60]
        [--interval 15] [--db artifacts/bench-live10k.duckdb] [--repeat 5]

A simulated config (config.from_dict) of NODES 8-GPU nodes in CLUSTERS clusters; MINUTES of
scrapes every INTERVAL s seeded through the write path (`Store.write_scrape`, one batch per
scrape cycle of the whole floor, the canonical columns from bench_history.SyntheticFloor).
Then the named queries pages/live.py runs, each timed (median of REPEAT): the auto-refreshing
fragment (`live_view`: fleet_summary, facility_live, fleet_by_model, heatmap, problems) and what
a full rerun adds (`drill_down`: hosts, device_history), with no cluster filter; then building
the heatmap figures the page draws (above PAGE_HOSTS hosts: the overview and one page) and what
they send to the browser, and once the unpaged grid with how many pixels a host gets on a wide
screen. Figure lines start with `figure:`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_history import SyntheticFloor, centre_config  # noqa: E402
from bench_pages import time_query  # noqa: E402
from queries import Store, rollup  # noqa: E402

SCREEN_PX = 1400          # the heatmap's plot width on a wide (1920 px) screen, sidebar open


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1250)
    ap.add_argument("--clusters", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--interval", type=float, default=15)
    ap.add_argument("--db", default="artifacts/bench-live10k.duckdb")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cfg = centre_config(args.nodes * 8, args.interval, clusters=args.clusters)
    path = Path(args.db)
    for p in (path, Path(f"{path}.wal")):
        p.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    store = Store(path, memory_limit=cfg.database.memory_limit)
    store.dirty_lookback_s = rollup.reach_s(cfg)
    floor = SyntheticFloor(cfg)
    end = datetime.now(timezone.utc).replace(microsecond=0)
    end -= timedelta(seconds=end.timestamp() % args.interval)
    steps = int(args.minutes * 60 / args.interval)
    start = end - timedelta(seconds=(steps - 1) * args.interval)
    store.write_scrape(devices=floor.devices(start))
    t = time.perf_counter()
    written = 0
    for k in range(steps):
        if k % int(3600 / args.interval) == 0:
            floor.next_hour()
        written += store.write_scrape(samples=floor.batch(start + timedelta(seconds=k * args.interval), 1,
                                                          args.interval))
    print(f"figure: seed {written:,} samples ({floor.n:,} GPUs x {steps} scrapes every {args.interval:g} s) "
          f"in {time.perf_counter() - t:.1f} s")
    now = end + timedelta(seconds=5)
    stale = cfg.collection.stale_after_s
    host = store.query("hosts", cluster=None)["host"].iloc[0]
    groups = {
        "refresh": [("fleet_summary", dict(now=now, stale_s=stale, cluster=None, owned=cfg.total_gpus())),
                    ("facility_live", dict(now=now, stale_s=stale * 4)),
                    ("fleet_by_model", dict(now=now, stale_s=stale, cluster=None)),
                    ("heatmap", dict(now=now, stale_s=stale, cluster=None)),
                    ("problems", dict(now=now, stale_s=stale, hours=24, cluster=None))],
        "rerun_adds": [("hosts", dict(cluster=None)),
                            ("device_history", dict(now=now, minutes=60, host=host, device_id=None))],
    }
    heat = None
    for group, queries in groups.items():
        total = 0.0
        for name, params in queries:
            med, _, df = time_query(store, name, params, args.repeat)
            if name == "heatmap":
                heat = df
            total += med
            print(f"figure: query {group:<16} {name:<16} {med:>8.3f} s {len(df):>7,} rows")
        print(f"figure: total {group:<16} {total:.3f} s")
    assert heat is not None
    from i18n import t as translate
    from pages.live import PAGE_HOSTS, heatmap_figure, heatmap_page, host_overview_figure

    def t_(key: str, **v: object) -> str:
        return translate(key, "en", **v)

    hosts = heat["host"].nunique()

    def page_figures() -> list[str]:
        """What pages/live.py `heatmap` draws: above PAGE_HOSTS hosts the overview of every host
        and the first page of PAGE_HOSTS hosts x GPUs, else the one full grid."""
        if hosts <= PAGE_HOSTS:
            return [heatmap_figure(heat, "util", t_).to_json()]
        return [host_overview_figure(heat, "util", t_).to_json(),
                heatmap_figure(heatmap_page(heat, 1)[0], "util", t_).to_json()]

    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        bodies = page_figures()
        times.append(time.perf_counter() - t)
    print(f"figure: heatmap_page_figures {statistics.median(times):.3f} s, "
          f"{sum(len(b) for b in bodies) / 2**10:,.0f} KiB of figure JSON per refresh "
          f"({'overview + one page' if hosts > PAGE_HOSTS else 'one grid'})")
    t = time.perf_counter()
    body = heatmap_figure(heat, "util", t_).to_json()
    print(f"figure: heatmap_figure {time.perf_counter() - t:.3f} s, {len(body) / 2**20:.1f} MiB of figure JSON "
          f"unpaged, {hosts:,} hosts x {heat['gpu_index'].nunique()} GPUs = {len(heat):,} cells, "
          f"{SCREEN_PX / hosts:.2f} px per host at {SCREEN_PX} px")
    store.close()


if __name__ == "__main__":
    main()
