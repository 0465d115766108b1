"""What the capacity tests share: a small centre and an hourly group tier seeded with a known
demand (a linear trend and a weekly cycle), written straight into rollup_group_1h."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone
from typing import Callable

import pyarrow as pa

import config
from queries import Store
from queries.catalogue import arrow_schema

TZ = "Asia/Shanghai"
DAY0 = date(2025, 11, 20)               # the seed's first local day


def centre(**capacity) -> dict:
    """One site, two H100 clusters of 64 GPUs (c1, c2), two tenants."""
    return {
        "centre": {"name": "Capacity test"},
        "database": {"path": ":memory:"},
        "sites": [{"id": "s1", "name": "Site one", "timezone": TZ}],
        "clusters": [
            {"id": "c1", "name": "Cluster one", "site": "s1", "nodes": 8, "gpus_per_node": 8,
             "model": "NVIDIA H100 80GB HBM3", "host_prefix": "c1n"},
            {"id": "c2", "name": "Cluster two", "site": "s1", "nodes": 8, "gpus_per_node": 8,
             "model": "NVIDIA H100 80GB HBM3", "host_prefix": "c2n"},
        ],
        "tenants": [{"id": "t1", "name": "Tenant one", "namespaces": ["t1-ns"]},
                    {"id": "t2", "name": "Tenant two", "namespaces": ["t2-ns"]}],
        "prices": [{"model": "H100-SXM", "cny_per_gpu_hour": 10.0}],
        **({"capacity": capacity} if capacity else {}),
    }


def make_cfg(**capacity) -> config.Config:
    return config.from_dict(centre(**capacity))


def trend_week(base: float, per_day: float, amp: float) -> Callable[[int], float]:
    """GPUs on day i: base + per_day x i + amp x sin(2 pi i / 7)."""
    return lambda i: base + per_day * i + amp * math.sin(2 * math.pi * i / 7)


def seed(store: Store, days: int, demand: dict[tuple[str, str], Callable[[int], float]],
         first: date = DAY0, owned: dict[str, int] | None = None) -> None:
    """Hourly group rows for `days` local days from `first`: per (cluster, tenant) the GPUs
    demand(i) gives held every hour of day i; the rest of each cluster's GPUs unallocated."""
    owned = owned or {"c1": 64, "c2": 64}
    zone_offset = timedelta(hours=8)          # Asia/Shanghai, no DST
    rows: dict[str, list] = {c.name: [] for c in arrow_schema("rollup_group_1h")}
    for i in range(days):
        d = first + timedelta(days=i)
        start = datetime(d.year, d.month, d.day, tzinfo=timezone.utc) - zone_offset
        held: dict[str, float] = {}
        per_hour: list[tuple[str, str, float]] = []
        for (cluster, tenant), f in demand.items():
            g = max(0.0, f(i))
            held[cluster] = held.get(cluster, 0.0) + g
            per_hour.append((cluster, tenant, g))
        for cluster, n in owned.items():
            per_hour.append((cluster, "_unallocated", max(0.0, n - held.get(cluster, 0.0))))
        for h in range(24):
            bucket = start + timedelta(hours=h)
            for cluster, tenant, g in per_hour:
                s = g * 3600.0
                for name, v in (("bucket", bucket), ("site", "s1"), ("cluster", cluster), ("model", "H100-SXM"),
                                ("tenant", tenant), ("devices", math.ceil(g)), ("samples", 240 * math.ceil(g)),
                                ("observed_s", s), ("available_s", s),
                                ("allocated_s", 0.0 if tenant == "_unallocated" else s),
                                ("busy_s", 0.0 if tenant == "_unallocated" else s * 0.9),
                                ("useful_s", 0.0 if tenant == "_unallocated" else s * 0.4),
                                ("useful_basis", "tensor"),
                                ("alloc_idle_s", 0.0 if tenant == "_unallocated" else s * 0.1),
                                ("util_s", s * 0.8), ("util_obs_s", s),
                                ("tflop_s", 0.0 if tenant == "_unallocated" else s * 0.4 * 989.0),
                                ("energy_j", s * 500.0)):
                    rows[name].append(v)
    store.insert("rollup_group_1h", pa.Table.from_pydict(rows, schema=arrow_schema("rollup_group_1h")))
