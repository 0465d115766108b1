"""The issue 12 benchmark scripts still run: each at a tiny scale, its figure lines in their shape.

Times are never asserted (the figures are for docs/benchmarks.md, measured at full size by
hand); what is asserted is that each script finishes, prints every figure it promises, and,
for the side-by-side run, that our answers agree with Prometheus' on the same samples.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT.parent / "shared" / "peer-bench"


def run(args: list[str], timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def figures(out: str) -> list[str]:
    return [line.removeprefix("figure: ") for line in out.splitlines() if line.startswith("figure: ")]


def test_bench_history_prints_seed_tiers_and_every_query(tmp_path):
    out = run(["benchmarks/bench_history.py", "--gpus", "16", "--days", "3", "--raw-days", "1",
               "--repeat", "1", "--db", str(tmp_path / "h.duckdb")])
    lines = figures(out)
    for name in ("seed_samples", "seed_write_s", "seed_old_tiers_s", "catchup_s", "build_s", "seed_total_s",
                 "seed_process_vmhwm_mib", "file_mib", "dashboard_process_vmhwm_mib"):
        assert any(line.startswith(name + " ") for line in lines), name
    # 16 GPUs x 1 raw day at 60 s = 16 x 1,440 = 23,040 samples through the write path
    assert "seed_samples 23040 " in out
    tiers = [line.split()[1] for line in lines if line.startswith("tier ")]
    assert tiers == ["device_samples", "rollup_device_5m", "rollup_device_1h", "rollup_group_5m", "rollup_group_1h"]
    for days in ("30d", "90d"):
        queries = [line for line in lines if line.startswith(f"query {days} ")]
        # 8 utilisation-page calls, 4 tenants-page calls, 4 API answers
        assert len(queries) == 16, queries
        assert all(re.search(r" \d+\.\d{3} +\d+$", q) for q in queries), queries
        pages = [line for line in lines if line.startswith(f"page {days} ")]
        assert len(pages) == 2, pages


def test_bench_live10k_prints_refresh_queries_and_heatmap_size(tmp_path):
    out = run(["benchmarks/bench_live10k.py", "--nodes", "4", "--clusters", "2", "--minutes", "2",
               "--repeat", "1", "--db", str(tmp_path / "l.duckdb")])
    lines = figures(out)
    # 4 nodes x 8 GPUs = 32 GPUs; 2 minutes at 15 s = 8 scrapes; 32 x 8 = 256 samples
    assert lines[0].startswith("seed 256 samples (32 GPUs x 8 scrapes")
    names = [line.split()[2] for line in lines if line.startswith("query ")]
    assert names == ["fleet_summary", "facility_live", "fleet_by_model", "heatmap", "problems", "hosts",
                     "device_history"]
    assert len([line for line in lines if line.startswith("total ")]) == 2
    # 4 hosts: under the page's PAGE_HOSTS, so the page draws the one grid
    assert any(line.startswith("heatmap_page_figures ") and line.endswith("(one grid)") for line in lines), lines
    # 4 hosts x 8 GPUs = 32 cells; 1400 px / 4 hosts = 350.00 px a host
    assert any(line.startswith("heatmap_figure ") and "4 hosts x 8 GPUs = 32 cells, 350.00 px per host" in line
               for line in lines), lines


@pytest.mark.skipif(not (PEER / "gen.py").exists() or not shutil.which("promtool") or not shutil.which("prometheus"),
                    reason="needs ../shared/peer-bench and Debian's prometheus + promtool")
def test_bench_peer_agrees_with_prometheus_on_a_tiny_centre(tmp_path):
    data = tmp_path / "peer"
    run([str(PEER / "gen.py"), "--out", str(data), "--gpus", "16", "--clusters", "2", "--tenants", "3",
         "--days", "1", "--end", "2026-11-22", "--seed", "7"])
    (data / "tsdb").mkdir()
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", "--max-block-duration=486h",
                    str(data / "metrics.om"), str(data / "tsdb")], check=True, capture_output=True, timeout=300)
    before = sorted(p.name for p in (data / "tsdb").iterdir())
    out = run(["benchmarks/bench_peer.py", "--data", str(data), "--db", str(tmp_path / "p.duckdb"), "--runs", "1"])
    lines = figures(out)
    for q in ("Q2", "Q3", "Q4"):
        assert any(line.startswith(f"prom {q} median_s ") for line in lines), q
        assert any(line.startswith(f"ours {q} median_s ") for line in lines), q
        assert any(line.startswith(f"check {q} ") and line.endswith("AGREE") for line in lines), lines
        assert any(line.startswith(f"speed {q} prometheus ") for line in lines), q
    assert "ALL AGREE" in out
    assert sorted(p.name for p in (data / "tsdb").iterdir()) == before       # Prometheus ran on a copy
