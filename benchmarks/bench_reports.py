"""The monthly report at 1,024 GPUs: time and peak memory of one month's PDF and XLSX.

    .venv/bin/python benchmarks/bench_reports.py [--db /tmp/bench-reports.duckdb] [--gpus 1024]
        [--days 35] [--raw-days 2] [--interval 60] [--month YYYY-MM]

The store is the history benchmark's (benchmarks/bench_history.py `seed`: the example centre
resized to GPUS H100s, DAYS days of a synthetic floor at INTERVAL s, the older days straight into
the tiers by the rollup's code, the newest RAW_DAYS through the real write path and one rollup
run), made once at --db when it is not there, long enough to hold the last whole month. Then, in
a fresh process that opens the file as the dashboard does (the config's memory_limit), it makes
the month's report the way the job does (reports/archive.py `produce`: gather once, draw every
chart of both languages with one kaleido server, render each language and format) and prints
each step's time, the process's peak memory (VmHWM) and the browser's peak resident memory (its
processes, sampled every 0.2 s while the charts are drawn). Figure lines start with `figure:`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_history import centre_config, seed, vm_hwm_mib  # noqa: E402


def _children_rss_mib(pid: int) -> float:
    """Resident memory of every descendant of `pid` (the browser kaleido starts), MiB."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        parents[int(entry)] = int(fields.get("PPid", "0").strip() or 0)
        rss[int(entry)] = int(fields.get("VmRSS", "0 kB").split()[0]) if "VmRSS" in fields else 0
    mine = {pid}
    grew = True
    while grew:
        grew = False
        for p, pp in parents.items():
            if pp in mine and p not in mine:
                mine.add(p)
                grew = True
    return sum(rss.get(p, 0) for p in mine if p != pid) / 1024


class Sampler:
    """The largest resident memory of this process's children while running."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _children_rss_mib(os.getpid()))
            self._stop.wait(0.2)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_report(db: Path, gpus: int, interval: float, month: str | None) -> None:
    from queries import Store
    from reports import archive, data
    from reports.pdf import pdf
    from reports.xlsx import xlsx

    cfg = centre_config(gpus, interval)
    store = Store(db, memory_limit=cfg.database.memory_limit)
    now = datetime.now(timezone.utc)
    month = month or data.last_month(cfg, now)
    print(f"report of {month} at {cfg.total_gpus()} GPUs from {db}")
    t0 = time.perf_counter()
    report = data.gather(store, cfg, month, now)
    t_gather = time.perf_counter() - t0
    with Sampler() as browser:
        t = time.perf_counter()
        svgs = archive.draw(report, cfg, ["en", "zh-CN"])
        t_charts = time.perf_counter() - t
    n_charts = sum(len(v) for v in svgs.values())
    print(f"figure: gather_s {t_gather:.2f} (every section's tables from the shared measures)")
    print(f"figure: charts_s {t_charts:.2f} ({n_charts} SVG charts, both languages, one kaleido server; "
          f"charts drawn: {report.charts})")
    print(f"figure: browser_peak_rss_mib {browser.peak:.0f} (chromium's processes while drawing)")
    sizes = {}
    for lang in ("en", "zh-CN"):
        t = time.perf_counter()
        out = pdf(report, lang, svgs[lang])
        print(f"figure: pdf_{lang}_s {time.perf_counter() - t:.2f} ({len(out) / 1024:,.0f} KiB)")
        sizes[f"pdf_{lang}"] = len(out)
        t = time.perf_counter()
        out = xlsx(report, lang)
        print(f"figure: xlsx_{lang}_s {time.perf_counter() - t:.2f} ({len(out) / 1024:,.0f} KiB)")
    total = time.perf_counter() - t0
    print(f"figure: total_s {total:.2f} (gather, charts, two PDFs and two XLSX)")
    print(f"figure: process_vmhwm_mib {vm_hwm_mib():.0f} (memory_limit {cfg.database.memory_limit}; "
          "the browser not included)")
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="/tmp/bench-reports.duckdb")
    ap.add_argument("--gpus", type=int, default=1024)
    ap.add_argument("--days", type=int, default=35)
    ap.add_argument("--raw-days", type=int, default=2)
    ap.add_argument("--interval", type=float, default=60)
    ap.add_argument("--month", help="YYYY-MM (default: last month)")
    ap.add_argument("--report-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    path = Path(args.db)
    if args.report_only:
        make_report(path, args.gpus, args.interval, args.month)
        return
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        cfg = centre_config(args.gpus, args.interval)
        end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        seed(path, cfg, args.days, min(args.raw_days, args.days), args.interval, end)
        sys.stdout.flush()
    # a fresh process, as the dashboard opens the file: its peak memory is the report's, not the seed's
    cmd = [sys.executable, __file__, "--db", str(path), "--gpus", str(args.gpus), "--interval", str(args.interval),
           "--report-only"] + (["--month", args.month] if args.month else [])
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


if __name__ == "__main__":
    main()
