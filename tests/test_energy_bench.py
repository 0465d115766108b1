"""benchmarks/bench_energy.py still runs at a tiny scale and prints every figure it promises
(times are never asserted: docs/energy.md has them, measured at full size)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_energy_prints_the_job_the_page_and_both_routes(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/bench_energy.py", "--gpus", "16", "--days", "2",
                           "--interval", "300", "--repeat", "1", "--db", str(tmp_path / "e.duckdb")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [x.removeprefix("figure: ") for x in proc.stdout.splitlines() if x.startswith("figure: ")]
    assert lines[0].startswith("seed 4,039 meter readings (7 meters x 577)")     # 2 days / 300 s + 1
    assert any(x.startswith("energy job, first build over 2 days") for x in lines)
    for days in (30, 2):
        assert any(x.startswith(f"{days} d energy page, one render") for x in lines)
        assert any(x.startswith(f"{days} d GET /api/v1/pue") for x in lines)
        assert any(x.startswith(f"{days} d GET /api/v1/energy?by=tenant") for x in lines)
