"""A tenant's scope in the history reads (queries/history.py) and the history API routes: a
signed-in tenant sees its own rows alone, whatever it asks for, and no figure about the fleet.

The store: helpers.seed_history (c1's two GPUs g0, g1 on host n1-001, three hours from
2026-11-20T00:00Z) regrouped with a lease of the host to idle-co for hour 1, so two tenants
hold time:
  hour 0: acme holds g0 and g1 (namespace acme-ns), each busy half the hour, util 35 %
  hour 1: idle-co holds both by the lease: g0 busy all hour at 80 % (1.8 MJ), g1 idle
  hour 2: g0 held by an unattributed pod for 30 minutes at 50 %; g1 no data
Tenant A is acme, tenant B idle-co.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

import api
import config
from queries import Store, history, rollup
from queries.history import View
from queries.scope import EVERYTHING, Scope
from helpers import HISTORY_T0, history_centre, seed_history

T0 = datetime.fromtimestamp(HISTORY_T0, timezone.utc)
NOW = T0 + timedelta(hours=3)
TZ = "Asia/Shanghai"
A = Scope(role="tenant", tenant="acme", who="alice@acme")
OTHERS = ("idle-co", "Idle Co", "_unattributed", "_unallocated")     # what A must never see


@pytest.fixture
def two():
    cfg = config.from_dict(history_centre(leases=[{"tenant": "idle-co", "hosts": ["n1-001"],
                                                   "start": T0 + timedelta(hours=1),
                                                   "end": T0 + timedelta(hours=2)}]))
    store = Store(":memory:")
    seed_history(store)
    rollup.regroup(store, cfg)          # the group, device-tenant and tenant tiers with the lease in force
    rollup.fill_tenants(store)          # marked filled: the per-tenant answers read the tenant tier
    yield cfg, store
    store.close()


def view(**kw) -> View:
    return View(**{"start": T0, "end": NOW, "tz": TZ, **kw})


def text_of(table: history.HistoryTable) -> str:
    """Everything a table can show: its JSON, its CSV and its people's rendering in both languages."""
    people = [table.for_people(lang).to_csv() for lang in ("en", "zh-CN")]
    return json.dumps(table.to_json()) + table.to_csv() + "".join(people) + json.dumps(table.names)


def assert_private(table: history.HistoryTable) -> None:
    shown = text_of(table)
    for other in OTHERS:
        assert other not in shown, (other, shown)


def test_everything_still_sees_both_tenants(two):
    """The scope's check can fail: without it both tenants and the fleet figures are there."""
    cfg, store = two
    by_tenant = history.utilisation(store, cfg, view(by="tenant"), NOW).records()
    assert {r["tenant"] for r in by_tenant} == {"acme", "idle-co", "_unattributed", "_unallocated"}
    held = {r["tenant"]: r["allocated_gpu_hours"] for r in history.tenants(store, cfg, view(), NOW).records()}
    assert held == {"acme": 2.0, "idle-co": 2.0, "_unattributed": 0.5}
    fleet = history.utilisation(store, cfg, view(), NOW).records()[0]
    assert fleet["owned_gpu_hours"] == 18.0                     # 6 GPUs x 3 h


@pytest.mark.parametrize("by", history.BYS)
@pytest.mark.parametrize("step", history.STEPS)
def test_utilisation_is_the_tenants_own_time(two, by, step):
    cfg, store = two
    table = history.utilisation(store, cfg, view(step=step, by=by, tenant="idle-co"), NOW, scope=A)
    assert_private(table)
    rows = table.records()
    assert rows
    for r in rows:
        assert all(r[name] is None for name in history.FLEET_FIGURES), r
        if by == "tenant":
            assert r["tenant"] == "acme"
    # acme held g0 and g1 in hour 0 only: 2 GPU-h allocated, 1 busy (half each), util 35 %
    total = sum(r["allocated_gpu_hours"] for r in rows)
    busy = sum(r["busy_gpu_hours"] for r in rows)
    assert (total, busy) == (2.0, 1.0)
    if step == "all" and by in ("fleet", "tenant"):
        assert (rows[0]["util_pct"], rows[0]["observed_gpu_hours"]) == (35.0, 2.0)   # 2,520 / 7,200 s


def test_tenants_is_its_own_row(two):
    cfg, store = two
    table = history.tenants(store, cfg, view(), NOW, scope=A)
    assert_private(table)
    (row,) = table.records()
    # hour 0: 2 GPUs held all hour: peak 2; busy 2 x 30 min; energy 2 x 1.8 MJ = 1 kWh
    assert (row["tenant"], row["allocated_gpu_hours"], row["busy_gpu_hours"], row["util_pct"], row["peak_gpus"],
            row["energy_kwh"]) == ("acme", 2.0, 1.0, 35.0, 2.0, 1.0)
    # the previous three hours hold nothing: no change in percent of nothing
    assert row["allocated_change_pct"] is None and row["util_change_points"] is None
    later = history.tenants(store, cfg, view(start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2)),
                            NOW, scope=Scope(role="tenant", tenant="idle-co")).records()
    # idle-co's hour 1: g0 busy at 80 % and g1 idle: 2 GPU-h, util 2,880 / 7,200 s = 40 %; the hour
    # before was acme's, never counted as idle-co's
    assert [(r["tenant"], r["allocated_gpu_hours"], r["util_pct"], r["allocated_change_pct"]) for r in later] == [
        ("idle-co", 2.0, 40.0, None)]


def test_daily_devices_and_reclaim_are_its_own_whatever_is_asked(two):
    cfg, store = two
    daily = history.tenant_daily(store, cfg, view(), "idle-co", NOW, scope=A)
    assert_private(daily)
    assert [(r["tenant"], r["allocated_gpu_hours"]) for r in daily.records()] == [("acme", 2.0)]
    for asked in (None, "idle-co", "_unallocated", "acme"):
        for idle_only in (False, True):
            devs = history.devices(store, cfg, view(), NOW, tenant=asked, idle_only=idle_only, scope=A)
            assert_private(devs)
            # hour 0 alone: each GPU 1 GPU-h held, half of it idle (h1 was idle-co's, h2 the pod's)
            assert [(d["device_id"], d["tenant"], d["allocated_gpu_hours"], d["idle_allocated_gpu_hours"])
                    for d in devs.records()] == [("g0", "acme", 1.0, 0.5), ("g1", "acme", 1.0, 0.5)]
    reclaim = history.reclaim_tenants(store, cfg, view(tenant="idle-co"), NOW, scope=A)
    assert_private(reclaim)
    # 1 idle GPU-h x 12.5 CNY; the fleet's list also holds idle-co's idle hour
    assert reclaim.records() == [{"tenant": "acme", "allocated_gpu_hours": 2.0, "idle_allocated_gpu_hours": 1.0,
                                  "idle_share_pct": 50.0, "idle_cost_cny": 12.5}]
    assert {r["tenant"] for r in history.reclaim_tenants(store, cfg, view(), NOW).records()} == {"acme", "idle-co"}


def test_heatmap_is_its_devices_hours(two):
    cfg, store = two
    everyone = history.heatmap(store, view(), NOW)
    assert len(everyone) == 3                                   # 08:00, 09:00 and 10:00 in Shanghai
    mine = history.heatmap(store, view(tenant="idle-co"), NOW, scope=A)
    # Friday 08:00 in Shanghai (00:00Z), acme's hour: 2 GPU-h at 35 %
    assert mine.to_dict("records") == [{"weekday": 5, "hour_of_day": 8, "util_pct": 35.0,
                                        "observed_gpu_hours": 2.0}]


def test_choices_and_names_list_only_its_own_tenant(two):
    cfg, store = two
    assert history.choices(cfg, store)["tenant"] == ["acme", "idle-co", "_unattributed"]
    mine = history.choices(cfg, store, scope=A)
    assert mine["tenant"] == ["acme"]
    assert mine["cluster"] == ["c1", "c2"] and mine["site"] == ["s1"]
    assert history.tenant_names(cfg, scope=A) == {"acme": "Acme AI"}
    assert history.tenant_names(cfg, scope=EVERYTHING) == {"acme": "Acme AI", "idle-co": "Idle Co"}


def test_api_view_forces_the_tenant():
    cfg = config.from_dict(history_centre())
    params = {"from": "2026-11-20T00:00:00Z", "to": "2026-11-20T03:00:00Z", "step": "1h", "by": "tenant"}
    for asked in ({}, {"tenant": "idle-co"}, {"tenant": "no-such-tenant"}, {"tenant": "acme"}):
        v, _ = history.api_view({**params, **asked}, cfg, None, route="utilisation", scope=A)
        assert v.tenant == "acme"
    with pytest.raises(history.ParamError) as err:       # for everything, a tenant is still checked
        history.api_view({**params, "tenant": "no-such-tenant"}, cfg, None, route="utilisation")
    assert err.value.param == "tenant"


class AsTenant:
    """ASGI middleware putting a Scope where api._scope finds it (issue 15's sign-in does the same)."""

    def __init__(self, app, scope: Scope):
        self.app, self.who = app, scope

    async def __call__(self, scope, receive, send):
        scope["zhisuan.scope"] = self.who
        await self.app(scope, receive, send)


def test_api_routes_answer_within_the_scope(two):
    cfg, store = two
    app = AsTenant(Starlette(routes=api.routes(lambda: store, cfg, clock=lambda: NOW)), A)
    client = TestClient(app, raise_server_exceptions=False)
    span = {"from": "2026-11-20T08:00:00+08:00", "to": "2026-11-20T03:00:00Z"}
    for by in history.BYS:
        for fmt in ("json", "csv"):
            r = client.get("/api/v1/utilisation", params={**span, "step": "1h", "by": by, "tenant": "idle-co",
                                                          "format": fmt})
            assert r.status_code == 200, r.text
            for other in OTHERS:
                assert other not in r.text
        body = client.get("/api/v1/utilisation", params={**span, "step": "all", "by": by}).json()
        assert body == history.utilisation(store, cfg, view(step="all", by=by), NOW, scope=A).to_json()
    r = client.get("/api/v1/tenants", params=span)
    assert r.status_code == 200, r.text
    assert [row["tenant"] for row in r.json()["rows"]] == ["acme"]
    assert r.json()["rows"][0]["allocated_gpu_hours"] == 2.0
    csv_text = client.get("/api/v1/tenants", params={**span, "format": "csv"}).text
    assert csv_text.splitlines()[1].startswith("acme,2.0,1.0,")
    for other in OTHERS:
        assert other not in r.text and other not in csv_text


def test_a_filter_value_the_config_does_not_list_is_looked_up_in_the_tier(two):
    """A Prometheus source may carry a cluster the config does not list: accepted when the tier
    holds it (for a tenant, among its own rows), refused otherwise, naming what is accepted."""
    cfg, store = two
    import pyarrow as pa

    from queries.catalogue import arrow_schema
    row = {c: 0.0 for c in ("observed_s", "available_s", "allocated_s", "busy_s", "useful_s", "alloc_idle_s",
                            "util_s", "util_obs_s", "tflop_s", "energy_j")}
    row.update(bucket=T0, site="s1", cluster="c-prom", model="H100-SXM", tenant="idle-co", devices=1, samples=4,
               useful_basis=None, observed_s=60.0)
    store.insert("rollup_group_1h", pa.Table.from_pylist([row], schema=arrow_schema("rollup_group_1h")))
    params = {"from": "2026-11-20T00:00:00Z", "to": "2026-11-20T03:00:00Z", "step": "all", "cluster": "c-prom"}
    v, _ = history.api_view(params, cfg, store, route="utilisation")
    assert v.cluster == "c-prom"
    with pytest.raises(history.ParamError) as err:       # acme's rows never were in c-prom
        history.api_view(params, cfg, store, route="utilisation", scope=A)
    assert err.value.param == "cluster" and "c-prom" not in err.value.message()
    with pytest.raises(history.ParamError) as err:
        history.api_view({**params, "cluster": "c9"}, cfg, store, route="utilisation")
    assert err.value.param == "cluster" and "c-prom" in err.value.message()       # c1, c2, c-prom
