"""The simulated centre's older months generated straight into the hourly group tier
(simulator/history.py): true to the floor's schedules, growing as the floor's demand grows,
recorded as generated, resumable, and read by the capacity series."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

import config
from queries import Store
from queries import capacity as cap
from simulator import Floor
from simulator import history as gen
from simulator import model

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
DAILY = {"cap_start": NOW - timedelta(days=400), "cap_end": NOW, "tz": "Asia/Shanghai"}


@pytest.fixture(scope="module")
def small():
    """The default centre cut to 8 nodes a cluster."""
    d = config.load(config.CONFIG_DIR)
    clusters = [c.model_dump() | {"nodes": 8} for c in d.clusters]
    raw = {"centre": {"name": "Small"}, "database": {"path": ":memory:"},
           "sites": [s.model_dump() for s in d.sites], "clusters": clusters,
           "tenants": [t.model_dump() for t in d.tenants], "simulator": d.simulator.model_dump(),
           "capacity": {"simulated_history_days": 120}}
    cfg = config.from_dict(raw)
    return cfg, Floor(cfg)


def test_the_span_ends_where_the_raw_backfill_starts(small):
    cfg, _ = small
    start, end = gen.span(cfg, NOW)
    # back-fill: 30 days back on its 900 s step -> 2026-11-02T12:00Z; 120 days back -> 2026-08-04T12:00Z
    assert end == datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
    assert start == datetime(2026, 8, 4, 12, tzinfo=timezone.utc)


def test_a_generated_hour_is_what_the_floor_reports(small):
    """Every GPU is observed the whole hour; the allocated GPU-seconds per tenant match the
    pods the floor's GPUs carry, sampled each minute, within sampling error."""
    cfg, floor = small
    a = datetime(2026, 10, 14, 6, tzinfo=timezone.utc).timestamp()
    rows = gen.hour_rows(floor, cfg, a, a + 3600)
    gpus = sum(c.nodes * c.gpus_per_node for c in cfg.clusters)
    assert sum(v[0] for v in rows.values()) == pytest.approx(gpus * 3600)          # observed
    got: dict[str, float] = {}
    for (hour, _site, _cluster, _model, tenant), v in rows.items():
        assert hour == a
        got[tenant] = got.get(tenant, 0.0) + v[2] / 3600                           # allocated GPUs
    ns = cfg.tenant_for_namespace()
    seen: dict[str, float] = {}
    for k in range(60):
        t = a + 30 + 60 * k
        for h in floor.hosts:
            for s in floor.gpu_states(h.host, t):
                if s.namespace is not None:
                    seen[ns[s.namespace]] = seen.get(ns[s.namespace], 0.0) + 1 / 60
    for tenant, n in seen.items():
        assert got.get(tenant, 0.0) == pytest.approx(n, abs=1.5), tenant


def test_generated_months_are_recorded_resumable_and_grow(small):
    cfg, floor = small
    store = Store(":memory:")
    stop = __import__("threading").Event()
    rows = gen.generate(store, cfg, floor, NOW)
    assert rows > 0
    span = gen.generated_span(store)
    assert span == {"start": "2026-08-04T12:00:00+00:00", "end": "2026-11-02T12:00:00+00:00",
                    "done_until": "2026-11-02T12:00:00+00:00", "tier": "rollup_group_1h"}
    assert gen.generate(store, cfg, floor, NOW + timedelta(days=3), stop=stop) == 0       # done: nothing again
    with store.cursor() as cur:
        lo, hi = cur.execute("SELECT min(bucket), max(bucket) FROM rollup_group_1h").fetchone()
    assert lo == datetime(2026, 8, 4, 12, tzinfo=timezone.utc) and hi == datetime(2026, 11, 2, 11, tzinfo=timezone.utc)
    with store.cursor() as cur:                                 # the tenant tier is made from the generated hours
        held = cur.execute("SELECT sum(allocated_s) FROM rollup_group_1h WHERE tenant <> '_unallocated'").fetchone()[0]
        tier = cur.execute("SELECT sum(allocated_s) FROM rollup_tenant_1h WHERE tenant <> '_unallocated'").fetchone()[0]
    assert tier == pytest.approx(held)
    # and the utilisation page's fleet ladder reads a generated week (rollup_cluster_1h, made alike)
    from queries import history
    week = history.View(start=datetime(2026, 9, 7, tzinfo=timezone.utc), end=datetime(2026, 9, 14, tzinfo=timezone.utc))
    fleet = history.utilisation(store, cfg, week, NOW).records()[0]
    gpus = sum(c.nodes * c.gpus_per_node for c in cfg.clusters)
    assert fleet["observed_gpu_hours"] == pytest.approx(gpus * 7 * 24)
    assert 0 < fleet["allocated_gpu_hours"] < fleet["observed_gpu_hours"]
    series = cap.gpu_daily(store, cfg, datetime(2026, 8, 5).date(), datetime(2026, 11, 2).date())
    fleet = series[cap.SeriesId("allocated_gpus", "fleet")]
    first, last = fleet.iloc[:28].mean(), fleet.iloc[-28:].mean()
    # demand grows 3 % a month: over the ~2.3 months between the two windows' middles ~7 %
    assert last > first * 1.02, (first, last)
    assert model.demand_level(datetime(2026, 10, 1, tzinfo=timezone.utc).timestamp()) > model.demand_level(
        datetime(2026, 8, 1, tzinfo=timezone.utc).timestamp())
    assert json.loads(store.get_kv(gen.SPAN_KEY))["tier"] == "rollup_group_1h"
    store.close()


def test_generation_stops_and_resumes(small):
    cfg, floor = small
    store = Store(":memory:")
    stop = __import__("threading").Event()
    stop.set()
    assert gen.generate(store, cfg, floor, NOW, stop=stop) == 0
    assert gen.generated_span(store) is None
    store.set_kv(gen.SPAN_KEY, json.dumps({"start": "2026-10-20T12:00:00+00:00", "end": "2026-11-02T12:00:00+00:00",
                                           "done_until": "2026-10-27T12:00:00+00:00", "tier": "rollup_group_1h"}))
    gen.generate(store, cfg, floor, NOW)                          # the rest of a span begun before
    with store.cursor() as cur:
        lo = cur.execute("SELECT min(bucket) FROM rollup_group_1h").fetchone()[0]
    assert lo == datetime(2026, 10, 27, 12, tzinfo=timezone.utc)
    store.close()


def test_a_cluster_that_arrives_later_is_absent_before(small):
    """infer-b arrives 2026-09-01 (Beijing midnight = 2026-08-31T16:00Z): before, its exporters
    do not answer and the generated tier holds none of its hours; after, it is all there."""
    cfg0, _ = small
    raw = {"centre": {"name": "Small"}, "database": {"path": ":memory:"},
           "sites": [s.model_dump() for s in cfg0.sites], "clusters": [c.model_dump() for c in cfg0.clusters],
           "tenants": [t.model_dump() for t in cfg0.tenants], "simulator": cfg0.simulator.model_dump(),
           "capacity": {"simulated_arrivals": [{"cluster": "infer-b", "on": datetime(2026, 9, 1).date()}]}}
    cfg = config.from_dict(raw)
    floor = Floor(cfg)
    host = next(h.host for h in floor.hosts if h.cluster == "infer-b")
    arrival = datetime(2026, 8, 31, 16, tzinfo=timezone.utc).timestamp()
    assert not floor.exporter_up(host, arrival - 1) and floor.exporter_up(host, arrival + 3600)
    with pytest.raises(model.ExporterDown):
        floor.node_text(host, arrival - 600)
    before = gen.hour_rows(floor, cfg, arrival - 3600, arrival)
    after = gen.hour_rows(floor, cfg, arrival, arrival + 3600)
    assert not any(k[2] == "infer-b" for k in before)
    assert sum(v[0] for k, v in after.items() if k[2] == "infer-b") == pytest.approx(8 * 8 * 3600)
    bad = dict(raw, capacity={"simulated_arrivals": [{"cluster": "nope", "on": datetime(2026, 9, 1).date()}]})
    with pytest.raises(config.ConfigError) as e:
        config.from_dict(bad)
    assert "capacity.simulated_arrivals[0].cluster" in str(e.value)


def test_the_generation_job_runs_once_and_only_when_the_history_reaches_past_the_backfill(small):
    from collectors.jobs import JobRunner

    cfg, floor = small
    store = Store(":memory:")
    runner = JobRunner(store, clock=lambda: NOW.timestamp())
    after: list[tuple[datetime, int]] = []       # what the runtime hangs on it: the forecasts refit at once
    gen.add_jobs(runner, store, cfg, floor, __import__("threading").Event(),
                 then=lambda now: after.append((now, len(store.query("capacity_daily_gpus", **DAILY)))))
    assert "history-generate" in runner.jobs
    run = runner.run_due(NOW)[0]
    assert run.ok and run.rows > 0 and run.detail == "2026-08-04T12:00:00+00:00 to 2026-11-02T12:00:00+00:00"
    assert len(after) == 1 and after[0][0] == NOW and after[0][1] > 0     # called once, with the months there
    assert runner.jobs["history-generate"].due is None                  # once
    short = config.from_dict({"centre": {"name": "x"}, "database": {"path": ":memory:"},
                              "sites": [s.model_dump() for s in cfg.sites],
                              "clusters": [c.model_dump() for c in cfg.clusters],
                              "capacity": {"simulated_history_days": 20}})
    other = JobRunner(store)
    gen.add_jobs(other, store, short, floor, __import__("threading").Event())
    assert "history-generate" not in other.jobs
    store.close()
