"""What the energy tests share: a small centre with meters and a tariff, and meter readings
written straight into facility_samples (the collectors' rows, by hand)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa

from queries.catalogue import arrow_schema

UTC = timezone.utc
T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)          # 08:00 in Asia/Shanghai

TARIFF = {
    "id": "tou", "name": "four periods, summer sharp peak",
    "demand_cny_per_kw_month": 40.0,
    "seasons": [
        {"name": "summer", "months": [7, 8],
         "prices": {"sharp": 1.5, "peak": 1.0, "flat": 0.6, "valley": 0.3},
         "hours": {"sharp": ["12-14"], "peak": ["08-12", "14-18"], "flat": ["18-22"], "valley": ["22-08"]}},
        {"name": "rest", "months": [1, 2, 3, 4, 5, 6, 9, 10, 11, 12],
         "prices": {"peak": 1.0, "flat": 0.6, "valley": 0.3},
         "hours": {"peak": ["08-12", "14-18"], "flat": ["12-14", "18-22"], "valley": ["22-08"]}},
    ],
}


def energy_section(**changes) -> dict:
    """Site s1 of helpers.history_centre with a facility meter, two category-2 PDU meters in
    hall h1, a cooling plant and a loop under it, and the four-period tariff."""
    d = {
        "pue": {"target": 1.3, "max_gap_s": 300.0, "per_node_overhead_w": 1000.0},
        "sites": [{"site": "s1", "tariff": "tou", "power_kw": 2000.0, "cooling_kw": 500.0, "contracted_kw": 1500.0}],
        "halls": [{"id": "h1", "site": "s1", "clusters": ["c1"]}],
        "loops": [{"id": "l1", "hall": "h1"}],
        "meters": [
            {"site": "s1", "meter": "fac", "scope": "facility"},
            {"site": "s1", "meter": "pdu-1", "scope": "it", "category": 2, "hall": "h1"},
            {"site": "s1", "meter": "pdu-2", "scope": "it", "category": 2, "hall": "h1"},
            {"site": "s1", "meter": "cool", "scope": "cooling"},
            {"site": "s1", "meter": "loop", "scope": "cooling", "hall": "h1", "loop": "l1", "submeter_of": "cool"},
        ],
        "tariffs": [TARIFF],
        "carbon": {"method": "grid"},
    }
    d.update(changes)
    return d


def readings(meter: str, scope: str, start: datetime, minutes: int, *, kwh_per_min: float | None = None,
             register_at: float = 0.0, power_w: float | None = None, category: int | None = None,
             step_s: int = 60, site: str = "s1", skip: tuple[int, int] | None = None,
             reset_at: int | None = None) -> list[dict]:
    """One meter's readings every `step_s` from `start` for `minutes` (both ends included): a
    register rising `kwh_per_min` from `register_at` (set back to 0 at reading `reset_at`), or a
    constant power; readings with index in [skip[0], skip[1]) are left out (a gap)."""
    rows = []
    n = minutes * 60 // step_s
    reg = register_at
    for k in range(n + 1):
        if k > 0 and kwh_per_min is not None:
            reg += kwh_per_min * step_s / 60
        if reset_at is not None and k == reset_at:
            reg = kwh_per_min * step_s / 60 / 2 if kwh_per_min else 0.0    # half an interval since the reset
        if skip and skip[0] <= k < skip[1]:
            continue
        rows.append({"ts": start + timedelta(seconds=k * step_s), "site": site, "meter": meter, "scope": scope,
                     "pue_category": category, "power_w": power_w,
                     "energy_kwh": reg if kwh_per_min is not None else None, "source": "test"})
    return rows


def write(store, rows: list[dict]) -> None:
    store.write_scrape(facility=pa.Table.from_pylist(rows, schema=arrow_schema("facility_samples")))
