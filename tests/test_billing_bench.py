"""The billing benchmark still runs: at a tiny scale, every figure it promises in its shape, and
every tenant's bill issued. Times are never asserted (docs/billing.md has them, measured by hand)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_billing_prints_every_figure(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/bench_billing.py", "--tenants", "12", "--gpus", "32",
                           "--days", "2", "--raw-days", "1", "--repeat", "1", "--db", str(tmp_path / "b.duckdb")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [ln.removeprefix("figure: ") for ln in proc.stdout.splitlines() if ln.startswith("figure: ")]
    for name in ("bills_s", "one_tenant_bill_s", "reconciliation_year_s", "xlsx_s", "issue_s", "issued_bills_s",
                 "compute_and_issue_s"):
        assert any(ln.startswith(name + " ") for ln in lines), name
    assert any("(12 bills issued" in ln for ln in lines), lines
