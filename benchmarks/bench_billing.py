"""Billing at a centre's size: compute and issue a month's bills for 200 tenants.

    .venv/bin/python benchmarks/bench_billing.py [--tenants 200] [--gpus 1024] [--days 62] [--raw-days 2]
        [--interval 60] [--db artifacts/bench-billing.duckdb] [--reuse-db] [--repeat 3]

The store is the history benchmark's (benchmarks/bench_history.py `seed`: GPUS devices x DAYS
days of the synthetic floor through the real write path and the rollup's own code), with the
example centre's six tenants replaced by TENANTS tenants, each with its own namespace, so the
floor's jobs spread over all of them. Each tenant gets a contract (a third leases of 8-64 GPUs,
some from mid-month; the rest usage contracts, most with a commitment, some with an overage
price; every fifth with energy passed through), the price list changes on the 16th of the
billed month, and two voucher programmes (fees, 20 %, a yearly enterprise cap and a budget; the
second after the first) hold half the tenants.

Timed, in the same process, on the last month that has ended at the seed's end (median of
--repeat): computing every tenant's bill (`queries.billing.bills`), one tenant's, the year's
reconciliation, the XLSX, and issuing the month (`issue_month`: compute again, then store every
bill in one transaction; issued once, so not repeated). Lines starting `figure:` are the
figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tomllib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_history  # noqa: E402
from config import CONFIG_DIR, Config, from_dict  # noqa: E402
from queries import Store, billing  # noqa: E402
from queries.scope import Scope  # noqa: E402

H100 = "H100-SXM"


def billing_section(tenants: list[str], month_first: date) -> dict[str, Any]:
    """Contracts for every tenant, a price change on the 16th, two programmes over half the tenants."""
    contracts = []
    for i, t in enumerate(tenants):
        start = date(month_first.year - 1, 1, 1) if i % 4 else month_first.replace(day=1 + i % 20)
        end = date(start.year + 1, start.month, start.day) if i % 4 == 0 else date(month_first.year + 1, 1, 1)
        c: dict[str, Any] = {"id": f"C{i:04d}", "tenant": t, "model": H100, "start": start, "end": end,
                             "signed": start - timedelta(days=10), "amount": 1_000_000.0 + 10_000 * i}
        if i % 3 == 0:
            c.update(kind="lease", gpus=8 * (1 + i % 8))
        else:
            c.update(kind="usage", committed_gpus=float(i % 5))
            if i % 7 == 0:
                c["overage_per_gpu_hour"] = 22.0
        if i % 5 == 0:
            c["energy"] = "pass_through"
        contracts.append(c)
    return {
        "prices": [{"model": H100, "effective": date(month_first.year - 1, 1, 1), "per_gpu_hour": 18.0,
                    "per_gpu_month": 9800.0},
                   {"model": H100, "effective": month_first.replace(day=16), "per_gpu_hour": 16.0,
                    "per_gpu_month": 9200.0}],
        "contracts": contracts,
        "programmes": [{"id": "sh", "name": "Shanghai", "rate": 0.2, "budget_year": 5_000_000.0},
                       {"id": "sz", "name": "Suzhou", "rate": 0.2, "enterprise_year_cap": 200_000.0,
                        "budget_year": 20_000_000.0, "flags": ["sme"]}],
        "enrolments": [{"tenant": t, "flags": ["sme"] if i % 4 == 0 else [],
                        "programmes": ["sh", "sz"] if i % 3 else ["sz"]}
                       for i, t in enumerate(tenants) if i % 2 == 0],
        "quotas": [{"tenant": t, "cluster": "c0", "gpus": 8.0} for t in tenants[:50]],
    }


def config_for(n_tenants: int, gpus: int, interval: float, db: str, month_first: date) -> Config:
    """The history benchmark's centre (bench_history.centre_config) with `n_tenants` tenants and
    their contracts."""
    base = bench_history.centre_config(gpus, interval)
    d = tomllib.loads((CONFIG_DIR / "centre.toml").read_text(encoding="utf-8"))
    d["clusters"] = [c.model_dump() for c in base.clusters]
    d["collection"] = base.collection.model_dump()
    d["sources"] = [{"name": s.name, "kind": s.kind, "site": s.site, "cluster": s.cluster, "targets": s.targets}
                    for s in base.sources]
    d["database"] = {**d.get("database", {}), "path": db}
    tenants = [f"t{i:03d}" for i in range(n_tenants)]
    d["tenants"] = [{"id": t, "name": f"Tenant {i:03d}", "namespaces": [f"ns-{t}"]} for i, t in enumerate(tenants)]
    d["billing"] = billing_section(tenants, month_first)
    return from_dict(d)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tenants", type=int, default=200)
    ap.add_argument("--gpus", type=int, default=1024)
    ap.add_argument("--days", type=int, default=62)
    ap.add_argument("--raw-days", type=int, default=2)
    ap.add_argument("--interval", type=float, default=60)
    ap.add_argument("--db", default="artifacts/bench-billing.duckdb")
    ap.add_argument("--reuse-db", metavar="END", help="skip the seed: the --db seeded up to END (ISO)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    path = Path(args.db)
    end = (datetime.fromisoformat(args.reuse_db) if args.reuse_db
           else datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0))
    probe = from_dict({**tomllib.loads((CONFIG_DIR / "centre.toml").read_text(encoding="utf-8"))})
    month_name = billing.recent_months(probe, end)[1]
    first = billing.month(probe, month_name).first
    cfg = config_for(args.tenants, args.gpus, args.interval, str(path), first)
    if not args.reuse_db:
        for p in (path, Path(f"{path}.wal")):
            p.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"seeding {args.gpus} GPUs x {args.days} days for {args.tenants} tenants (the history benchmark's seed)")
        end = bench_history.seed(path, cfg, args.days, min(args.raw_days, args.days), args.interval, end)
        print(f"seeded up to {end.isoformat()} (rerun with --reuse-db {end.isoformat()})")
    now = end
    store = Store(path, memory_limit=cfg.database.memory_limit)
    try:
        with store.cursor() as cur:
            rows = cur.execute("SELECT count(*), count(DISTINCT tenant) FROM rollup_group_1h").fetchone()
            cur.execute("DELETE FROM bill_lines").fetchall()
            cur.execute("DELETE FROM bill_issues").fetchall()
        print(f"figure: store rollup_group_1h rows {rows[0]:,}, tenants {rows[1]}; month {month_name}; "
              f"energy lines {'on' if billing.energy_available() else 'off (queries.energy not there)'}")
        t_all, b = timed(lambda: billing.bills(store, cfg, month_name, now=now), args.repeat)
        n_lines = len(b.lines)
        print(f"figure: bills_s {t_all:.2f} (every tenant's bill: {len(b.summary)} bills, {n_lines:,} lines, "
              f"{int((b.lines['kind'] == 'voucher').sum())} voucher lines; net {b.summary['net'].sum():,.2f} CNY)")
        one = str(b.summary["tenant"].iloc[1])
        t_one, _ = timed(lambda: billing.bills(store, cfg, month_name, now=now, scope=Scope(role="tenant", tenant=one)),
                         args.repeat)
        print(f"figure: one_tenant_bill_s {t_one:.2f} (a tenant's own view: every tenant is computed, the "
              "programme budgets are shared)")
        t_rec, rec = timed(lambda: billing.reconciliation(store, cfg, str(first.year), now=now), args.repeat)
        print(f"figure: reconciliation_year_s {t_rec:.2f} ({len(rec.rows)} claims in {first.year})")
        t_x, data = timed(lambda: billing.bills_xlsx(store, cfg, month_name, "zh-CN", now=now, b=b), args.repeat)
        print(f"figure: xlsx_s {t_x:.2f} ({len(data):,} bytes, from the computed bills)")
        t = time.perf_counter()
        issued = billing.issue_month(store, cfg, month_name, "bench", now=now)
        t_issue = time.perf_counter() - t
        print(f"figure: issue_s {t_issue:.2f} ({len(issued)} bills issued: compute again, then one transaction)")
        t_after, after = timed(lambda: billing.bills(store, cfg, month_name, now=now), args.repeat)
        print(f"figure: issued_bills_s {t_after:.2f} (the issued month read back and compared with a computation "
              f"now; {int((after.summary['status'] == 'issued').sum())} issued)")
        print(f"figure: compute_and_issue_s {t_all + t_issue:.2f}")
    finally:
        store.close()


if __name__ == "__main__":
    main()
