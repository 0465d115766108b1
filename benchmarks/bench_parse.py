"""Parse-and-store throughput for one dcgm-exporter scrape of N GPUs.

    .venv/bin/python benchmarks/bench_parse.py [--gpus 1024 10000] [--repeat 5]

For each size: the simulator renders one scrape with the default field set;
we time (a) our parse into canonical columns, (b) building the Arrow batches,
(c) storing them in a DuckDB file that already holds earlier scrapes, and the
baseline, `prometheus_client.parser.text_string_to_metric_families` reading
the same text (it only parses: no pivot, no store). Medians over --repeat runs.
Goal (issue 2): parse+store >= 3x the baseline's speed; 10,000 GPUs stored < 1 s.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import config  # noqa: E402
from collectors.dcgm import DcgmCollector  # noqa: E402
from collectors.exposition import parse_devices  # noqa: E402
from collectors.targets import Target  # noqa: E402
from queries import Store  # noqa: E402
from simulator import render_dcgm, synthetic_gpus  # noqa: E402

TARGET = Target(url="http://bench/metrics", source="bench", kind="dcgm", site="sh-lingang", cluster="train-a")


def bench(n: int, repeat: int, cfg: config.Config, tmp: Path) -> dict:
    t0 = time.time() - 3600
    text = render_dcgm(synthetic_gpus(n, t0, seed=7))
    lines = sum(1 for line in text.split("\n") if line and line[0] != "#")
    col = DcgmCollector(cfg)
    store = Store(tmp / f"bench-{n}.duckdb")
    base_ts = datetime(2026, 11, 1, tzinfo=timezone.utc)
    # earlier scrapes already in the file, as in a running centre
    for k in range(3):
        s = col.from_text(text, TARGET, base_ts + timedelta(seconds=15 * k), track=False)
        store.write_scrape(samples=s.samples, devices=s.devices)
    parse_s, build_s, store_s, total_s, base_s = [], [], [], [], []
    for r in range(repeat):
        ts = base_ts + timedelta(seconds=15 * (10 + r))
        a = time.perf_counter()
        batch = parse_devices(text, col.mapping)
        b = time.perf_counter()
        scrape = col.builder.build(batch, TARGET, ts)
        c = time.perf_counter()
        stored = store.write_scrape(samples=scrape.samples, devices=scrape.devices)
        d = time.perf_counter()
        assert stored == len(batch.ids), (stored, len(batch.ids))
        parse_s.append(b - a)
        build_s.append(c - b)
        store_s.append(d - c)
        total_s.append(d - a)
        e = time.perf_counter()
        count = sum(len(f.samples) for f in text_string_to_metric_families(text))
        base_s.append(time.perf_counter() - e)
        assert count == lines, (count, lines)
    store.close()
    med = statistics.median
    return {"gpus": n, "lines": lines, "mib": len(text.encode()) / 2**20, "devices": len(batch.ids),
            "parse": med(parse_s), "build": med(build_s), "store": med(store_s), "total": med(total_s),
            "baseline": med(base_s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, nargs="+", default=[1024, 10000])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cfg = config.load()
    print(f"{'GPUs':>6} {'lines':>8} {'MiB':>6} | {'parse s':>8} {'arrow s':>8} {'store s':>8} "
          f"{'total s':>8} {'samples/s':>10} | {'baseline s':>10} {'base smp/s':>10} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.gpus:
            r = bench(n, args.repeat, cfg, Path(tmp))
            print(f"{r['gpus']:>6} {r['lines']:>8} {r['mib']:>6.1f} | {r['parse']:>8.3f} {r['build']:>8.3f} "
                  f"{r['store']:>8.3f} {r['total']:>8.3f} {r['lines'] / r['total']:>10,.0f} | "
                  f"{r['baseline']:>10.3f} {r['lines'] / r['baseline']:>10,.0f} {r['baseline'] / r['total']:>5.1f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:,.0f} MiB (includes the rendered texts and the baseline's objects)")
    print("samples = exporter value lines; total = parse + Arrow batches + DuckDB insert (with de-duplication);"
          " baseline = prometheus_client parse only.")


if __name__ == "__main__":
    main()
