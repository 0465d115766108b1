"""Does the store's memory level off? Many hours of writes in minutes.

    .venv/bin/python benchmarks/bench_store_soak.py [--targets 1000] [--cycles 1600] [--reopen 0]

Runs two real collection cycles against the simulator (N dcgm-exporter targets of
8 GPUs each plus the facility meter, as benchmarks/bench_collect.py does) and
records the batches the scheduler hands to the store. Then it writes those
batches again --cycles times, every timestamp moved on by 15 s a cycle, into
the same DuckDB file, with no HTTP and no parsing in between: the store's
memory, alone, over what at 15 s would be --cycles/240 hours. It samples every
10 cycles and prints, per 100 cycles, the medians of the resident memory,
DuckDB's block cache (bounded by `database.memory_limit`), the rest of the
process, and glibc's malloc in use and held free. --reopen K reopens the store every K cycles (`Store.reopen`, which the
collector does every few hours) and prints how long that takes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import config  # noqa: E402
from bench_collect import heap, make_config, make_scheduler, start_simulator, status  # noqa: E402
from collectors.scheduler import release_free_memory  # noqa: E402
from queries import Store  # noqa: E402


class RecordingStore(Store):
    """A store that keeps a copy of every batch it is asked to write."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.batches: list[dict[str, pa.Table | None]] = []

    def write_scrape(self, **tables):
        self.batches.append(tables)
        return super().write_scrape(**tables)


def capture(tmp: Path, targets: int) -> list[dict[str, pa.Table | None]]:
    """The batches of one steady-state collection cycle (the second; the first registers devices)."""
    cdir = make_config(tmp, targets)
    cfg = config.load(cdir)
    server, found = start_simulator(cdir)
    try:
        store = RecordingStore(tmp / "capture.duckdb", memory_limit=cfg.database.memory_limit)
        sched = make_scheduler(cfg, store, found, 15, tmp / "spool")
        sched.run_cycle()
        store.batches.clear()
        time.sleep(1)
        sched.run_cycle()
        sched.pool.shutdown()
        store.close()
        return store.batches
    finally:
        server.terminate()
        server.wait(10)


def later(table: pa.Table | None, seconds: float) -> pa.Table | None:
    """`table` with every timestamp column moved on by `seconds`."""
    if table is None:
        return None
    cols = []
    for field, col in zip(table.schema, table.columns):
        if pa.types.is_timestamp(field.type):
            col = pc.add(col, pa.scalar(timedelta(seconds=seconds), pa.duration(field.type.unit)))
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=table.schema)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--cycles", type=int, default=1600)
    ap.add_argument("--reopen", type=int, default=0, help="close and reopen the store every K cycles (0: never)")
    ap.add_argument("--memory-limit", default=None, help="DuckDB memory_limit (default: the config's)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-soak-"))
    try:
        batches = capture(tmp, args.targets)
        limit = args.memory_limit or config.load().database.memory_limit
        rows = sum(b["samples"].num_rows for b in batches if b.get("samples") is not None)
        print(f"{args.targets} targets: {len(batches)} writes and {rows} device rows a cycle; {args.cycles} cycles "
              f"(= {args.cycles / 240:.1f} h at 15 s); DuckDB memory_limit {limit}; reopen every "
              f"{args.reopen or 'never'}")
        print(f"{'cycles':>6} {'s':>6} {'rss MiB':>8} {'duckdb':>7} {'rest':>5} {'heap used':>9} {'heap free':>9} "
              f"{'file MiB':>8}")
        db = tmp / "soak.duckdb"
        store = Store(db, memory_limit=limit)
        t0 = time.perf_counter()
        window: list[tuple[int, ...]] = []
        reopens: list[float] = []
        for k in range(1, args.cycles + 1):
            for b in batches:
                store.write_scrape(**{name: later(t, 15 * k) for name, t in b.items()})
            release_free_memory()                      # as the owner's release-memory job does each interval
            if args.reopen and k % args.reopen == 0:
                r0 = time.perf_counter()
                store.reopen()                          # what the owner's reopen job does every REOPEN_EVERY_S
                reopens.append(time.perf_counter() - r0)
            if k % 10 == 0:                            # a sample every 10 cycles, medians per 100
                with store.cursor() as cur:
                    duck = cur.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0] // 2**20
                rss = status("VmRSS")
                window.append((rss, duck, rss - duck, *heap()))
            if k % 100 == 0:
                rss, duck, rest, used, free = (statistics.median(col) for col in zip(*window))
                window.clear()
                print(f"{k:>6} {time.perf_counter() - t0:>6.0f} {rss:>8.0f} {duck:>7.0f} {rest:>5.0f} {used:>9.0f} "
                      f"{free:>9.0f} {os.path.getsize(db) // 2**20:>8}", flush=True)
        store.close()
        if reopens:
            print(f"reopen: {len(reopens)} times, median {statistics.median(reopens):.2f} s, max {max(reopens):.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
