"""The utilisation and tenant-usage tables (queries/history.py) on a tiny seeded history, with
hand-computed figures, and both pages (AppTest) driven by their URL in both languages.

The seed (helpers.seed_history): c1's two GPUs over three hours from 2026-11-20T00:00Z, c2's
four GPUs never reporting. The pages are run through a small script that builds a
PageContext over the seeded file and calls the page function (app.py's navigation is not
this module's to change).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import config
from queries import Store, history, rollup
from queries.history import View
from helpers import HISTORY_T0, history_centre, run_script, seed_history, table_with

T0 = datetime.fromtimestamp(HISTORY_T0, timezone.utc)
NOW = T0 + timedelta(hours=3)
TZ = "Asia/Shanghai"


@pytest.fixture
def hist():
    cfg = config.from_dict(history_centre())
    store = Store(":memory:")
    seed_history(store)
    rollup.attribute_devices(store, cfg)        # the seed writes the tiers, not the device-tenant one
    rollup.fill_tenants(store)                  # nor the tenant one
    yield cfg, store
    store.close()


def view(**kw) -> View:
    return View(**{"start": T0, "end": NOW, "tz": TZ, **kw})


def only(table: history.HistoryTable, **match) -> dict:
    rows = [r for r in table.records() if all(r[k] == v for k, v in match.items())]
    assert len(rows) == 1, rows
    return rows[0]


def test_fleet_ladder_is_hand_computed(hist):
    cfg, store = hist
    r = only(history.utilisation(store, cfg, view(), NOW))
    assert r["bucket"] == "2026-11-20T08:00:00+08:00"           # the range's start, in the site's zone
    assert r["owned_gpu_hours"] == 18.0                         # (2 + 4 GPUs) x 3 h
    assert r["observed_gpu_hours"] == 4.5                       # 2 + (1 + 1) + 0.5
    assert r["no_data_gpu_hours"] == 13.5                       # 18 - 4.5
    assert r["available_gpu_hours"] == 4.5
    assert r["allocated_gpu_hours"] == 3.5                      # 2 (h0) + 1 (h1, g0) + 0.5 (h2, the pod)
    assert r["busy_gpu_hours"] == 2.5                           # 1 + 1 + 0.5
    assert r["useful_gpu_hours"] == 1.0                         # 0.5 + 0.5 (tensor 0.25 x 2 h; 0.5 x 1 h)
    assert r["idle_allocated_gpu_hours"] == 1.0                 # h0: each GPU idle half the hour
    assert r["util_pct"] == 38.889                              # (2520 + 2880 + 0 + 900) / 16200 s = 38.888..%
    assert r["useful_basis"] == "tensor"
    assert r["delivered_pflops"] == 0.3297                      # 3600 s x 989 TFLOPS / 1000 / 10800 s
    assert r["installed_pflops"] == 5.934                       # 6 GPUs x 989 TFLOPS
    assert r["energy_kwh"] == 1.5                               # 5.4e6 J / 3.6e6
    shares = history.ladder_shares(r)
    assert shares["available"] == 25.0                          # 4.5 / 18
    assert round(shares["allocated"], 3) == 19.444              # 3.5 / 18
    assert round(shares["busy"], 3) == 13.889                   # 2.5 / 18
    assert round(shares["useful"], 3) == 5.556                  # 1 / 18
    assert shares["no_data"] == 75.0                            # 13.5 / 18


def test_ladder_per_cluster_counts_a_silent_cluster_as_no_data(hist):
    cfg, store = hist
    table = history.ladder_table(history.utilisation(store, cfg, view(by="cluster"), NOW), "cluster")
    c1, c2 = only(table, cluster="c1"), only(table, cluster="c2")
    assert (c1["owned_gpu_hours"], c1["observed_gpu_hours"], c1["no_data_gpu_hours"]) == (6.0, 4.5, 1.5)
    assert c1["allocated_share_pct"] == 58.333                  # 3.5 / 6
    assert c1["no_data_share_pct"] == 25.0                      # 1.5 / 6
    assert (c2["owned_gpu_hours"], c2["observed_gpu_hours"], c2["no_data_gpu_hours"]) == (12.0, 0.0, 12.0)
    assert c2["util_pct"] is None                               # nothing observed: no made-up 0 %
    model = only(history.utilisation(store, cfg, view(by="model"), NOW), model="H100-SXM")
    assert model["owned_gpu_hours"] == 18.0                     # both clusters are H100


def test_hourly_buckets_and_the_current_hour(hist):
    cfg, store = hist
    hours = history.utilisation(store, cfg, view(step="1h", cluster="c1"), NOW).records()
    assert [r["bucket"] for r in hours] == ["2026-11-20T08:00:00+08:00", "2026-11-20T09:00:00+08:00",
                                            "2026-11-20T10:00:00+08:00"]
    assert [r["util_pct"] for r in hours] == [35.0, 40.0, 50.0]     # 2520/7200, 2880/7200, 900/1800
    assert [r["no_data_gpu_hours"] for r in hours] == [0.0, 0.0, 1.5]
    # half-way through hour 2 the hour owns 2 GPUs x 0.5 h, and g0's 0.5 h observed leaves 0.5 h of no data
    mid = only(history.utilisation(store, cfg, view(end=NOW, cluster="c1"), NOW - timedelta(minutes=30)))
    assert (mid["owned_gpu_hours"], mid["no_data_gpu_hours"]) == (5.0, 0.5)


def test_day_week_month_buckets_are_the_site_calendar(hist):
    cfg, store = hist
    # 2026-11-19T16:00Z .. 2026-11-21T16:00Z: the Shanghai days of 20 and 21 November
    start = datetime(2026, 11, 19, 16, tzinfo=timezone.utc)
    days = history.utilisation(store, cfg, view(start=start, end=start + timedelta(days=2), step="1d",
                                                cluster="c1"), NOW).records()
    assert [r["bucket"] for r in days] == ["2026-11-20T00:00:00+08:00"]     # 21 Nov has not begun at NOW
    # 20 Nov up to NOW: 16:00Z..03:00Z = 11 h x 2 GPUs
    assert days[0]["owned_gpu_hours"] == 22.0 and days[0]["observed_gpu_hours"] == 4.5
    week = only(history.utilisation(store, cfg, view(start=start, step="1w", cluster="c1"), NOW))
    assert week["bucket"] == "2026-11-16T00:00:00+08:00"        # the Monday of that week
    month = only(history.utilisation(store, cfg, view(start=start, step="1mo", cluster="c1", tz="UTC"), NOW))
    assert month["bucket"] == "2026-11-01T00:00:00+00:00"
    assert history.range_bounds("month", NOW, TZ, month="2026-11") == (
        datetime(2026, 10, 31, 16, tzinfo=timezone.utc), datetime(2026, 11, 30, 16, tzinfo=timezone.utc))


def test_by_tenant_owns_nothing_and_holds_its_time(hist):
    cfg, store = hist
    table = history.utilisation(store, cfg, view(by="tenant"), NOW)
    acme, pod = only(table, tenant="acme"), only(table, tenant="_unattributed")
    assert acme["owned_gpu_hours"] is None and acme["no_data_gpu_hours"] is None
    assert (acme["observed_gpu_hours"], acme["util_pct"]) == (3.0, 50.0)    # held 3 GPU-h; 5400 / 10800 s
    assert (pod["allocated_gpu_hours"], pod["util_pct"]) == (0.5, 50.0)
    assert only(table, tenant="idle-co")["observed_gpu_hours"] == 0.0       # a configured tenant, always listed


def test_tenants_hand_computed_with_unattributed_always_shown(hist):
    cfg, store = hist
    table = history.tenants(store, cfg, view(), NOW)
    assert [r["tenant"] for r in table.records()] == ["acme", "idle-co", "_unattributed"]
    acme = only(table, tenant="acme")
    assert (acme["allocated_gpu_hours"], acme["busy_gpu_hours"], acme["useful_gpu_hours"]) == (3.0, 2.0, 1.0)
    assert acme["util_pct"] == 50.0                             # (2520 + 2880) / 10800 s
    assert acme["peak_gpus"] == 2.0                             # hour 0: 7200 s / 3600 s
    assert acme["energy_kwh"] == 1.5                            # (3.6e6 + 1.8e6) J
    pod = only(table, tenant="_unattributed")
    assert pod["peak_gpus"] == 1.0                              # 5-minute tier: 300 s / 300 s (the hour's mean is 0.5)
    assert acme["allocated_change_pct"] is None                 # the previous 3 hours held nothing
    # against a previous range: the last 2 hours vs the 2 before (only hour 0 of those is in the seed)
    later = history.tenants(store, cfg, view(start=T0 + timedelta(hours=1), end=NOW), NOW)
    acme = only(later, tenant="acme")                           # 1 GPU-h now, 2 GPU-h before
    assert (acme["allocated_change_pct"], acme["util_change_points"]) == (-50.0, 45.0)   # 80 % vs 35 %
    people = table.for_people("zh-CN")
    assert "未归属" in people.iloc[:, 0].tolist() and "Acme AI (acme)" in people.iloc[:, 0].tolist()
    assert "已分配 (GPU-h)" in people.columns


def test_reclaim_list_prices_idle_time_and_follows_leases(hist):
    cfg, store = hist
    tenants = history.reclaim_tenants(store, cfg, view(), NOW).records()
    assert tenants == [{"tenant": "acme", "allocated_gpu_hours": 3.0, "idle_allocated_gpu_hours": 1.0,
                        "idle_share_pct": 33.33, "idle_cost_cny": 12.5}]           # 1 GPU-h x 12.5 CNY
    devs = history.devices(store, cfg, view(), NOW, idle_only=True).records()
    assert [(d["device_id"], d["tenant"], d["idle_allocated_gpu_hours"], d["idle_cost_cny"]) for d in devs] == [
        ("g0", "acme", 0.5, 6.25), ("g1", "acme", 0.5, 6.25)]    # g1's unheld idle hour is nobody's
    # a lease of the host for hour 1, added afterwards, makes g1's idle hour idle-co's
    leased = config.from_dict(history_centre(leases=[{"tenant": "idle-co", "hosts": ["n1-001"],
                                                      "start": T0 + timedelta(hours=1),
                                                      "end": T0 + timedelta(hours=2)}]))
    rollup.attribute_devices(store, leased)     # as the rollup job does on the changed fingerprint
    devs = history.devices(store, leased, view(), NOW, idle_only=True).records()
    assert (devs[0]["device_id"], devs[0]["tenant"], devs[0]["idle_allocated_gpu_hours"],
            devs[0]["idle_cost_cny"]) == ("g1", "idle-co", 1.0, 12.5)
    rollup.attribute_devices(store, cfg)
    mine = history.devices(store, cfg, view(), NOW, tenant="acme").records()
    assert {d["device_id"]: d["allocated_gpu_hours"] for d in mine} == {"g0": 2.0, "g1": 1.0}


def devices_of(table: history.HistoryTable) -> list[tuple]:
    return [(d["device_id"], d["tenant"], d["allocated_gpu_hours"], d["busy_gpu_hours"],
             d["idle_allocated_gpu_hours"], d["util_pct"], d["energy_kwh"]) for d in table.records()]


def test_devices_per_tenant_as_the_attribution_gives_them(hist):
    # the table devices() gave when it attributed the device tier per page view (before
    # rollup_device_tenant_1h), hand-computed from the seed:
    cfg, store = hist
    acme_g0 = ("g0", "acme", 2.0, 1.5, 0.5, 57.5, 1.0)     # h0 + h1: busy 0.5 + 1; util (1260 + 2880) / 7200 s
    acme_g1 = ("g1", "acme", 1.0, 0.5, 0.5, 35.0, 0.5)     # h0: util 1260 / 3600 s; 1.8 MJ = 0.5 kWh
    job_x = ("g0", "_unattributed", 0.5, 0.5, 0.0, 50.0, 0.0)   # h2, pod job-x: util 900 / 1800 s
    assert devices_of(history.devices(store, cfg, view(), NOW)) == [acme_g0, acme_g1, job_x]
    assert devices_of(history.devices(store, cfg, view(), NOW, tenant="_unattributed")) == [job_x]
    # g1's unheld hour 1: idle all of it, nobody's; only asked for by name
    assert devices_of(history.devices(store, cfg, view(), NOW, tenant="_unallocated")) == [
        ("g1", "_unallocated", 1.0, 0.0, 1.0, 0.0, 0.0)]
    assert devices_of(history.devices(store, cfg, view(), NOW, tenant="idle-co")) == []
    # the host leased to idle-co for hour 1: g0's busy hour (2880 / 3600 s = 80 %) and g1's idle one
    leased = config.from_dict(history_centre(leases=[{"tenant": "idle-co", "hosts": ["n1-001"],
                                                      "start": T0 + timedelta(hours=1),
                                                      "end": T0 + timedelta(hours=2)}]))
    rollup.attribute_devices(store, leased)
    assert devices_of(history.devices(store, leased, view(), NOW)) == [
        ("g1", "idle-co", 1.0, 0.0, 1.0, 0.0, 0.0),
        ("g0", "acme", 1.0, 0.5, 0.5, 35.0, 0.5),          # h0 alone now
        ("g1", "acme", 1.0, 0.5, 0.5, 35.0, 0.5),
        ("g0", "_unattributed", 0.5, 0.5, 0.0, 50.0, 0.0),  # ties on idle time: by device, then tenant
        ("g0", "idle-co", 1.0, 1.0, 0.0, 80.0, 0.5)]
    assert devices_of(history.devices(store, leased, view(), NOW, tenant="_unallocated")) == []
    # a filter on the devices' cluster: c2 never reported
    assert devices_of(history.devices(store, leased, view(cluster="c2"), NOW)) == []


def test_records_convert_whole_columns_as_value_by_value_did():
    rows = pd.DataFrame({
        "bucket": pd.to_datetime(["2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", None], utc=True),
        "gpus": [1.5, float("nan"), 2.0], "devices": [1, 2, 3],
        "tenant": pd.Series(["acme", None, "x"], dtype="string"), "count": pd.Series([1, None, 3], dtype="Int64")})
    cols = (history.Col("bucket", "", "history.col.bucket", "time"), history.Col("gpus", "", "x", "gpus"),
            history.Col("devices", "", "x", "count"), history.Col("tenant", "", "x"),
            history.Col("count", "", "x", "count"))
    recs = history.HistoryTable(cols, rows, tz="America/New_York").records()
    # New York leaves EST (-05:00) at 07:00 UTC on 8 March 2026: 01:00 EST, then 03:00 EDT
    assert [r["bucket"] for r in recs] == ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", None]
    assert [r["gpus"] for r in recs] == [1.5, None, 2.0]
    assert [(r["devices"], r["tenant"], r["count"]) for r in recs] == [(1, "acme", 1), (2, None, None), (3, "x", 3)]
    assert all(type(r["devices"]) is int and type(r["gpus"]) in (float, type(None)) for r in recs)


def test_heatmap_is_site_local(hist):
    cfg, store = hist
    cells = history.heatmap(store, view(), NOW)
    # Friday 08:00, 09:00 and 10:00 in Shanghai
    assert cells[["weekday", "hour_of_day", "util_pct"]].values.tolist() == [[5, 8, 35.0], [5, 9, 40.0],
                                                                           [5, 10, 50.0]]


def test_view_parameters_are_checked():
    cfg = config.from_dict(history_centre())
    good = {"from": "2026-11-20T00:00:00Z", "to": "2026-11-20T03:00:00+00:00", "step": "1h"}
    v, fmt = history.api_view(good, cfg, None, route="utilisation")
    assert (v.start, v.end, v.step, v.by, v.tz, fmt) == (T0, NOW, "1h", "fleet", TZ, "json")
    for bad, param in (({"from": "2026-11-20T00:00:00"}, "from"), ({"to": "yesterday"}, "to"),
                       ({"to": "2026-11-19T00:00:00Z"}, "to"), ({"step": "2h"}, "step"), ({"by": "host"}, "by"),
                       ({"tz": "Mars/Olympus"}, "tz"), ({"cluster": "nope"}, "cluster"), ({"format": "xml"}, "format"),
                       ({"colour": "red"}, "colour")):
        with pytest.raises(history.ParamError) as err:
            history.api_view({**good, **bad}, cfg, None, route="utilisation")
        assert err.value.param == param
        assert f"'{param}'" in err.value.message("en")


# ---- the pages -------------------------------------------------------------------------

def _page_script(db: str, centre: str, module: str) -> None:
    import importlib
    import json

    import streamlit as st

    import config
    from pages.context import PageContext
    from queries import Store

    @st.cache_resource
    def store(path: str) -> Store:
        return Store(path, read_only=True)

    ctx = PageContext(cfg=config.from_dict(json.loads(centre)), store=store(db),
                      lang=st.query_params.get("lang") or "en")
    importlib.import_module(module).page(ctx)


@pytest.fixture
def page_db(tmp_path):
    db = tmp_path / "history.duckdb"
    store = Store(db)
    seed_history(store)
    centre = history_centre(database={"path": str(db)})
    rollup.attribute_devices(store, config.from_dict(centre))
    rollup.fill_tenants(store)
    store.close()
    return str(db), json.dumps(centre)


def run(page_db, module: str, **params) -> AppTest:
    db, centre = page_db
    return run_script(_page_script, (db, centre, module), params)


# the Shanghai day of 20 November: 24 hours, the seed's 3 among them
DAY = {"range": "custom", "from": "2026-11-20", "to": "2026-11-20"}


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_utilisation_page_follows_its_url(page_db, lang):
    at = run(page_db, "pages.utilisation", lang=lang, **DAY)
    assert at.title[0].value == {"en": "Utilisation", "zh-CN": "利用率"}[lang]
    owned = {"en": "Owned (GPU-h)", "zh-CN": "拥有 (GPU-h)"}[lang]
    ladder = table_with(at, owned)
    assert ladder.iloc[0][owned] == "144.0"                     # 6 GPUs x 24 h
    assert ladder.iloc[0][{"en": "Utilisation (%)", "zh-CN": "利用率 (%)"}[lang]] == "38.9 %"
    assert len(at.get("download_button")) >= 6                 # every table has its CSV
    # a filter in the URL drives the view: c2 alone never reported
    at = run(page_db, "pages.utilisation", lang=lang, cluster="c2", **DAY)
    row = table_with(at, owned).iloc[0]
    assert row[owned] == "96.0"                                 # 4 GPUs x 24 h
    assert row[{"en": "No data (GPU-h)", "zh-CN": "无数据 (GPU-h)"}[lang]] == "96.0"


def test_utilisation_page_reads_a_calendar_month_from_its_url(page_db):
    at = run(page_db, "pages.utilisation", range="month", month="2026-11", cluster="c1")
    row = table_with(at, "Owned (GPU-h)").iloc[0]
    assert row["Owned (GPU-h)"] == "1,440.0"                     # 2 GPUs x 30 days x 24 h
    assert row["Reported (GPU-h)"] == "4.5"
    at = run(page_db, "pages.utilisation", range="month", month="2026-13")      # not a month: the newest one
    assert at.selectbox(key="history_month").value != "2026-13"


def test_utilisation_page_ignores_values_not_on_its_whitelist(page_db):
    at = run(page_db, "pages.utilisation", cluster="<script>", step="9y", **DAY)
    assert at.query_params.get("cluster") is None or at.query_params["cluster"] != "<script>"
    assert table_with(at, "Owned (GPU-h)").iloc[0]["Owned (GPU-h)"] == "144.0"


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_tenants_page_shows_every_tenant_and_drills_down(page_db, lang):
    at = run(page_db, "pages.tenants", lang=lang, drill="acme", **DAY)
    assert at.title[0].value == {"en": "Tenant usage", "zh-CN": "租户用量"}[lang]
    tenant = {"en": "Tenant", "zh-CN": "租户"}[lang]
    alloc = {"en": "Allocated (GPU-h)", "zh-CN": "已分配 (GPU-h)"}[lang]
    usage = table_with(at, {"en": "Peak concurrent (GPUs)", "zh-CN": "峰值并发 (GPUs)"}[lang])
    assert usage[tenant].tolist() == ["Acme AI (acme)", "Idle Co (idle-co)",
                                      {"en": "Unattributed", "zh-CN": "未归属"}[lang]]
    assert usage[alloc].tolist() == ["3.0", "0.0", "0.5"]
    devices = table_with(at, {"en": "Device", "zh-CN": "设备"}[lang])
    assert sorted(devices[{"en": "Device", "zh-CN": "设备"}[lang]]) == ["g0", "g1"]
    # the site filter from the URL is kept, and an unknown tenant to drill into falls back to the first
    at = run(page_db, "pages.tenants", lang=lang, drill="nobody", site="s1", **DAY)
    assert at.selectbox(key="tenant_drill").value == "acme"


def test_tenants_read_from_the_tenant_tier_as_from_the_group_tiers():
    """history_tenants_all.sql (rollup_tenant_1h) answers as history_tenants.sql (the group tiers)."""
    cfg = config.from_dict(history_centre())
    store = Store(":memory:")
    seed_history(store)
    views = [view(), view(start=T0 + timedelta(hours=1)), view(end=T0 + timedelta(hours=2)),
             view(start=T0 + timedelta(minutes=30), end=NOW + timedelta(hours=5))]

    def answers(scope=history.EVERYTHING):
        return [history.tenants(store, cfg, v, NOW, scope=scope).records() for v in views]

    def ladders(scope=history.EVERYTHING):          # history_utilisation_tenants and _clusters.sql
        return [history.utilisation(store, cfg, replace(v, step=step, by=by), NOW, scope=scope).to_json()
                for v in views for step in history.STEPS for by in history.BYS]

    mine = history.Scope(role="tenant", tenant="acme")
    before, before_mine, ladder, ladder_mine = answers(), answers(mine), ladders(), ladders(mine)
    assert not history._tenant_tier(store)
    rollup.fill_tenants(store)
    assert history._tenant_tier(store)
    assert answers() == before and answers(mine) == before_mine
    assert ladders() == ladder and ladders(mine) == ladder_mine
    assert [r["peak_gpus"] for r in before[0]] == [2.0, 0.0, 1.0]      # acme, idle-co, the pod's 5-minute peak
    store.close()


def test_an_empty_table_with_a_time_column_is_an_empty_answer():
    """No rows (a month without bills, a range before any data) is an answer of no rows, in JSON
    and CSV alike, never an error from converting an empty time column."""
    cols = (history.Col("bucket", "", "x", kind="time"), history.Col("kwh", "kWh", "x", kind="kwh"))
    table = history.HistoryTable(cols, pd.DataFrame({"bucket": pd.Series([], dtype="datetime64[us, UTC]"),
                                                     "kwh": pd.Series([], dtype="float64")}), tz=TZ)
    assert table.to_json() == {"columns": [{"name": "bucket", "unit": ""}, {"name": "kwh", "unit": "kWh"}],
                               "rows": []}
    assert table.to_csv() == "bucket,kwh\n"


def test_recent_months_follow_the_sites_calendar():
    """The month lists of the utilisation, billing and reports pages: 2026-11-30T23:00Z is already
    1 December in Shanghai (UTC+8), still November in UTC; a year boundary is crossed."""
    at = datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc)
    assert history.recent_months(at, "Asia/Shanghai", 3) == ["2026-12", "2026-11", "2026-10"]
    assert history.recent_months(at, "UTC", 2) == ["2026-11", "2026-10"]
    assert history.recent_months(at, "Asia/Shanghai", 2, ended=True) == ["2026-11", "2026-10"]
    assert history.recent_months(datetime(2027, 1, 5, tzinfo=timezone.utc), "UTC", 2, ended=True) == [
        "2026-12", "2026-11"]
    assert history.shift_month("2026-01", -1) == "2025-12" and history.shift_month("2026-12", 1) == "2027-01"
