"""Collection cycle time, CPU and memory for N targets of 8 GPUs on loopback.

    .venv/bin/python benchmarks/bench_collect.py [--targets 1000] [--minutes 60] [--interval 15]

A simulator process serves N dcgm-exporter endpoints (8 GPUs each) on
127.0.0.1; this process collects them as the dashboard does (Scheduler +
DcgmCollector + write spool + DuckDB file) every --interval seconds for
--minutes. Per cycle it prints the cycle time (all scrapes, parse, store), the
CPU seconds this collector process used, its resident memory and how much of
that is DuckDB's block cache; at the end the medians, the CPU share, peak
memory (VmHWM) and the memory trend (first vs last ten minutes), with and
without DuckDB's cache, i.e. whether memory stays flat. DuckDB keeps the blocks
it wrote cached until `database.memory_limit` (config, or --memory-limit)
makes it evict, so that part grows with the file up to the limit.
Goal (issue 3): one cycle < 5 s on the 2-core machine; memory flat over an hour.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import config  # noqa: E402
from collectors.dcgm import DcgmCollector  # noqa: E402
from collectors.facility import FacilityCollector  # noqa: E402
from collectors.scheduler import Scheduler, release_free_memory  # noqa: E402
from collectors.spool import WriteSpool  # noqa: E402
from collectors.targets import Target  # noqa: E402
from queries import Store  # noqa: E402

SERVE = """
import json, sys, time
sys.path.insert(0, {root!r})
import config
from simulator import Floor, SimulatorServer
cfg = config.from_dict(json.loads(sys.stdin.readline()))
srv = SimulatorServer(Floor(cfg), bind="127.0.0.1", port=0)
srv.start()
for t in srv.targets():
    print(t.kind, t.site, t.cluster or "-", t.host or "-", t.url, flush=True)
print("READY", flush=True)
time.sleep(10**6)
"""


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        return libc
    except (OSError, AttributeError):        # not glibc >= 2.33: no heap breakdown
        return None


LIBC = _libc()


def heap() -> tuple[int, int]:
    """glibc's malloc: (MiB in use, MiB held free by its arenas), or (-1, -1) where unknown."""
    if LIBC is None:
        return -1, -1
    m = LIBC.mallinfo2()
    return (m.uordblks + m.hblkhd) // 2**20, m.fordblks // 2**20


def status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024        # MiB
    return 0


def centre_dict(targets: int) -> dict:
    """The package's centre.toml with its two clusters resized to `targets` nodes in all."""
    with (config.CONFIG_DIR / "centre.toml").open("rb") as fh:
        centre = tomllib.load(fh)
    half = targets // 2
    centre["clusters"][0]["nodes"], centre["clusters"][1]["nodes"] = half, targets - half
    return centre


def start_simulator(centre: dict) -> tuple[subprocess.Popen, list[Target]]:
    """A second process serving the centre described by `centre` on 127.0.0.1; its targets."""
    server = subprocess.Popen([sys.executable, "-c", SERVE.format(root=str(ROOT))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    server.stdin.write(json.dumps(centre, default=str) + "\n")
    server.stdin.flush()
    targets = []
    for line in server.stdout:
        if line.strip() == "READY":
            break
        kind, site, cluster, host, url = line.split()
        targets.append(Target(url=url, source="simulator", kind=kind, site=site,
                              cluster=None if cluster == "-" else cluster, host=None if host == "-" else host))
    return server, targets


def make_scheduler(cfg: config.Config, store: Store, targets: list[Target], interval_s: float,
                   spool_dir: Path) -> Scheduler:
    """The dashboard's collection for the simulator's targets: DCGM exporters and the facility meter."""
    jobs = [(DcgmCollector(cfg), [t for t in targets if t.kind == "dcgm"]),
            (FacilityCollector(cfg), [t for t in targets if t.kind == "facility"])]
    return Scheduler(store, jobs, interval_s=interval_s, concurrency=cfg.collection.concurrency,
                     spool=WriteSpool(spool_dir))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--interval", type=float, default=15)
    ap.add_argument("--memory-limit", default=None, help="DuckDB memory_limit (default: the config's)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-collect-"))
    centre = centre_dict(args.targets)
    cfg = config.from_dict(centre)
    server, targets = start_simulator(centre)
    try:
        limit = args.memory_limit or cfg.database.memory_limit
        store = Store(tmp / "bench.duckdb", memory_limit=limit)
        sched = make_scheduler(cfg, store, targets, args.interval, tmp / "spool")
        n_dcgm = sum(t.kind == "dcgm" for t in targets)
        print(f"{n_dcgm} exporters x 8 GPUs + {len(targets) - n_dcgm} facility meter(s); interval {args.interval:g} s; "
              f"{args.minutes:g} min; {os.cpu_count()} cores; DuckDB memory_limit {limit}")
        print(f"{'cycle':>5} {'wall s':>7} {'answered':>9} {'cpu s':>6} {'ok':>5} {'fail':>4} {'rows':>6} "
              f"{'rss MiB':>8} {'duckdb MiB':>10} {'heap used':>9} {'heap free':>9} {'arrow MiB':>9}")
        rows = []
        end = time.time() + args.minutes * 60
        i = 0
        while time.time() < end:
            cpu0 = time.process_time()
            rep = sched.run_cycle()
            release_free_memory()          # the owner's release-memory job runs once an interval
            cpu = time.process_time() - cpu0
            rss = status("VmRSS")
            with store.cursor() as cur:
                duck = int(cur.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0] // 2**20)
            used, free = heap()
            arrow = pa.total_allocated_bytes() // 2**20
            rows.append((time.time(), rep.scrape_s, cpu, rss, rep.answered_s, duck, used, free, arrow))
            print(f"{i:>5} {rep.scrape_s:>7.2f} {rep.answered_s:>9.2f} {cpu:>6.2f} {rep.ok:>5} {rep.failed:>4} "
                  f"{rep.rows:>6} {rss:>8} {duck:>10} {used:>9} {free:>9} {arrow:>9}", flush=True)
            i += 1
            now = time.time()
            time.sleep(max(0.0, args.interval - now % args.interval))
        sched.pool.shutdown()
        walls = [r[1] for r in rows]
        answered = [r[4] for r in rows]
        cpus = [r[2] for r in rows]
        elapsed = rows[-1][0] - rows[0][0] + args.interval if len(rows) > 1 else args.interval
        t0 = rows[0][0]
        first = [r for r in rows if r[0] - t0 <= 600]
        last = [r for r in rows if rows[-1][0] - r[0] <= 600]

        def med(sel, f):
            return statistics.median(f(r) for r in sel)
        print()
        print(f"cycles: {len(rows)}; cycle time median {statistics.median(walls):.2f} s, "
              f"p95 {sorted(walls)[int(0.95 * (len(walls) - 1))]:.2f} s, max {max(walls):.2f} s "
              f"(a cycle ends when every target answered or timed out)")
        print(f"all answering targets scraped and stored: median {statistics.median(answered):.2f} s, "
              f"max {max(answered):.2f} s")
        print(f"collector CPU: median {statistics.median(cpus):.2f} s per cycle, "
              f"{100 * sum(cpus) / elapsed:.0f} % of one core on average")
        print(f"collector memory: RSS first 10 min median {med(first, lambda r: r[3]):.0f} MiB, "
              f"last 10 min median {med(last, lambda r: r[3]):.0f} MiB, peak (VmHWM) {status('VmHWM')} MiB")
        print(f"  without DuckDB's block cache: first 10 min {med(first, lambda r: r[3] - r[5]):.0f} MiB, "
              f"last 10 min {med(last, lambda r: r[3] - r[5]):.0f} MiB; the cache: "
              f"{med(first, lambda r: r[5]):.0f} -> {med(last, lambda r: r[5]):.0f} MiB (bounded by {limit})")
        for label, k in (("glibc malloc in use", 6), ("glibc malloc held free", 7), ("Arrow pool in use", 8)):
            print(f"  {label}: first 10 min {med(first, lambda r, k=k: r[k]):.0f} MiB, "
                  f"last 10 min {med(last, lambda r, k=k: r[k]):.0f} MiB")
        print("memory by 10-minute window (medians, MiB):")
        print(f"  {'minutes':>9} {'cycles':>6} {'rss':>5} {'duckdb':>6} {'rest':>5} {'heap used':>9} {'heap free':>9}")
        for w in range(0, int((rows[-1][0] - t0) // 600) + 1):
            sel = [r for r in rows if w * 600 <= r[0] - t0 < (w + 1) * 600]
            if sel:
                print(f"  {w * 10:>4}-{w * 10 + 10:<4} {len(sel):>6} {med(sel, lambda r: r[3]):>5.0f} "
                      f"{med(sel, lambda r: r[5]):>6.0f} {med(sel, lambda r: r[3] - r[5]):>5.0f} "
                      f"{med(sel, lambda r: r[6]):>9.0f} {med(sel, lambda r: r[7]):>9.0f}")
        store.close()
        print(f"database: {os.path.getsize(tmp / 'bench.duckdb') / 2**20:.0f} MiB")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
