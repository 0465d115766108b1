"""The energy page (AppTest, both languages, driven by its URL), the /api/v1/pue and
/api/v1/energy routes, the tables' JSON and CSV, the tenant scope, and the energy job's
registration and incremental rebuild."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from streamlit.testing.v1 import AppTest

import config
from api import energy as api_energy
from queries import Store, energy
from queries.history import ParamError, View
from queries.scope import Scope
from helpers import history_centre, run_script, table_with
from helpers_energy import T0, energy_section, readings, write

NOW = T0 + timedelta(days=1)
DAY = {"range": "custom", "from": "2026-11-20", "to": "2026-11-20"}


def _centre(db: str | None = None) -> dict:
    c = history_centre(energy=energy_section())
    if db:
        c["database"] = {"path": db}
    return c


def _seed(store: Store, cfg: config.Config) -> None:
    """3 hours: facility 130 kWh/h, IT (two PDUs) 100 kWh/h, the cooling plant 20 kWh/h and its
    loop 20 kW; boards: acme 30 and _unallocated 10 kWh/h."""
    write(store, readings("fac", "facility", T0, 180, kwh_per_min=130 / 60)
          + readings("pdu-1", "it", T0, 180, kwh_per_min=60 / 60, category=2)
          + readings("pdu-2", "it", T0, 180, kwh_per_min=40 / 60, category=2)
          + readings("cool", "cooling", T0, 180, kwh_per_min=20 / 60)
          + readings("loop", "cooling", T0, 180, power_w=20_000.0))
    energy.build(store, cfg, NOW)
    import pyarrow as pa

    from queries.catalogue import arrow_schema
    rows = [dict(bucket=T0 + timedelta(hours=h), site="s1", cluster="c1", model="H100-SXM", tenant=tenant,
                 devices=1, samples=240, observed_s=7200.0, available_s=3600.0, allocated_s=3600.0, busy_s=3600.0,
                 useful_s=0.0, useful_basis=None, alloc_idle_s=0.0, util_s=0.0, util_obs_s=0.0, tflop_s=0.0,
                 energy_j=kwh * 3.6e6)
            for h in range(3) for tenant, kwh in (("acme", 30.0), ("_unallocated", 10.0))]
    store.insert("rollup_group_1h", pa.Table.from_pylist(rows, schema=arrow_schema("rollup_group_1h")))


@pytest.fixture
def seeded(store):
    cfg = config.from_dict(_centre())
    _seed(store, cfg)
    return cfg, store


def test_tables_agree_with_hand_computed_figures(seeded):
    cfg, store = seeded
    v = View(start=T0, end=T0 + timedelta(hours=3), tz="Asia/Shanghai")
    (pue,) = energy.pue_table(store, cfg, v, now=NOW).records()
    assert pue["pue"] == 1.3 and pue["category"] == 2              # 390 / 300
    assert pue["cooling_kwh"] == pytest.approx(60.0)               # the plant; the loop is its sub-meter
    assert pue["cooling_share_pct"] == 20.0                       # 60 / 300
    ppue = {r["part"]: r for r in energy.ppue_table(store, cfg, v, now=NOW).records()}
    # hall h1: (300 IT + 60 kWh of loop l1) / 300; the loop the same (one loop in the hall)
    assert ppue["h1"]["ppue"] == 1.2 and ppue["l1"]["ppue"] == 1.2
    (site,) = energy.energy_table(store, cfg, v, by="site", now=NOW).records()
    assert site["facility_kwh"] == 390.0 and site["overhead_kwh"] == 90.0
    # 08:00-11:00 Shanghai in November: peak hours at 1.0 CNY/kWh
    assert site["peak_kwh"] == 390.0 and site["energy_cny"] == 390.0
    # demand 130 kW x 40 CNY/kW-month = 5,200 for November; the 3 hours carry 3 of its 720
    assert site["demand_kw"] == 130.0 and site["demand_cny"] == pytest.approx(5200.0 * 3 / 720, abs=0.01)
    assert site["coal_kgce"] == pytest.approx(390 * 0.1229, abs=1e-3)
    tenants = {r["tenant"]: r for r in energy.energy_table(store, cfg, v, by="tenant", now=NOW).records()}
    assert tenants["acme"]["facility_kwh"] == pytest.approx(292.5)       # 390 x 30 / 40
    assert sum(r["facility_kwh"] for r in tenants.values()) == pytest.approx(390.0)
    clusters = energy.energy_table(store, cfg, v, by="cluster", now=NOW).records()
    assert [c["cluster"] for c in clusters] == ["c1"] and clusters[0]["facility_kwh"] == pytest.approx(390.0)


def test_a_tenant_sees_only_its_own_rows(seeded):
    cfg, store = seeded
    v = View(start=T0, end=T0 + timedelta(hours=3), tz="Asia/Shanghai")
    me = Scope(role="tenant", tenant="acme")
    rows = energy.energy_table(store, cfg, v, me, by="tenant", now=NOW).records()
    assert [r["tenant"] for r in rows] == ["acme"]
    # asking for another tenant still gives its own
    other = energy.energy_table(store, cfg, View(start=v.start, end=v.end, tz=v.tz, tenant="_unallocated"), me,
                                by="tenant", now=NOW).records()
    assert [r["tenant"] for r in other] == ["acme"]
    assert energy.energy_table(store, cfg, v, me, by="site", now=NOW).records() == []
    assert energy.pue_table(store, cfg, v, me, now=NOW).records() == []
    assert energy.headroom_table(store, cfg, v, me, now=NOW).records() == []


def test_api_routes_answer_json_and_csv(seeded):
    cfg, store = seeded
    params = {"from": "2026-11-20T00:00:00Z", "to": "2026-11-20T03:00:00Z", "step": "1h"}
    table, fmt = api_energy.pue_route(store, cfg, params, NOW, Scope())
    body = table.to_json()
    names = [c["name"] for c in body["columns"]]
    for col in ("pue", "category", "it_estimated", "facility_kwh", "it_kwh", "excluded_hours"):
        assert col in names
    assert fmt == "json" and len(body["rows"]) == 3 and body["rows"][0]["bucket"] == "2026-11-20T08:00:00+08:00"
    assert all(r["pue"] == 1.3 for r in body["rows"])
    t2, fmt2 = api_energy.energy_route(store, cfg, {**params, "by": "tenant", "step": "all", "format": "csv"},
                                       NOW, Scope())
    csv_text = t2.to_csv()
    assert fmt2 == "csv" and csv_text.splitlines()[0].startswith("bucket,tenant,board_kwh,it_kwh")
    for bad, param in (({"step": "2h"}, "step"), ({"by": "host"}, "by"), ({"category": "4"}, "category"),
                       ({"colour": "red"}, "colour"), ({"to": "2026-11-19T00:00:00Z"}, "to")):
        with pytest.raises(ParamError) as err:
            route = api_energy.energy_route if "by" in bad else api_energy.pue_route
            route(store, cfg, {**params, **bad}, NOW, Scope())
        assert err.value.param == param


def test_the_job_rebuilds_only_changed_quarters_and_late_readings(seeded):
    cfg, store = seeded
    before = store.query("energy_quarters", lo=T0, hi=NOW, site=None)
    res = energy.build(store, cfg, NOW, full=True)
    assert res.rows == 0                                          # nothing changed
    # a late reading of a new meter two hours back is found by the next run
    write(store, readings("ups", "it", T0, 30, kwh_per_min=2.0, category=1))
    res = energy.build(store, cfg, NOW)
    after = store.query("energy_quarters", lo=T0, hi=NOW, site=None)
    # its two quarters, and the quarter its last reading (00:30) opens, which covers nothing yet
    assert len(after) == len(before) + 3
    assert after[after["meter"] == "ups"]["kwh"].sum() == pytest.approx(60.0)
    # readings written into hours three days before now (a back-fill): found though older than
    # the recent check's two days
    write(store, readings("ups", "it", T0 - timedelta(days=2), 30, kwh_per_min=1.0, category=1))
    energy.build(store, cfg, NOW)
    old = store.query("energy_quarters", lo=T0 - timedelta(days=2), hi=T0 - timedelta(days=1), site=None)
    assert old["kwh"].sum() == pytest.approx(30.0)

    class Runner:
        def __init__(self):
            self.jobs = {}

        def add(self, name, schedule, fn):
            self.jobs[name] = (schedule, fn)
    r = Runner()
    energy.add_jobs(r, store, cfg)
    assert list(r.jobs) == ["energy", "energy-history"]      # a simulated centre: its older history too
    assert r.jobs["energy"][1](NOW).rows == 0


def _page_script(db: str, centre: str, tenant: str | None) -> None:
    import json

    import streamlit as st

    import config
    from pages.context import PageContext
    from queries import Store
    from queries.scope import Scope

    @st.cache_resource
    def store(path: str) -> Store:
        return Store(path, read_only=True)

    import pages.energy
    scope = Scope(role="tenant", tenant=tenant) if tenant else Scope()
    ctx = PageContext(cfg=config.from_dict(json.loads(centre)), store=store(db),
                      lang=st.query_params.get("lang") or "en", scope=scope)
    pages.energy.page(ctx)


@pytest.fixture
def page_db(tmp_path):
    db = str(tmp_path / "energy.duckdb")
    centre = _centre(db)
    store = Store(db)
    _seed(store, config.from_dict(centre))
    store.close()
    return db, json.dumps(centre)


def run(page_db, tenant: str | None = None, **params) -> AppTest:
    db, centre = page_db
    return run_script(_page_script, (db, centre, tenant), params)


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_energy_page_in_both_languages(page_db, lang):
    at = run(page_db, lang=lang, step="1h", **DAY)
    assert at.title[0].value == {"en": "Energy and PUE", "zh-CN": "能耗与 PUE"}[lang]
    pue = table_with(at, "PUE")
    # the Shanghai day hour by hour: 08:00-11:00 metered, the other 21 hours have no readings
    metered = pue[pue["PUE"] != "—"]
    assert list(metered["PUE"]) == ["1.300"] * 3
    cat = {"en": "Category", "zh-CN": "类别"}[lang]
    assert list(metered[cat]) == ["2"] * 3
    excluded = {"en": "Hours excluded (h)", "zh-CN": "剔除小时 (h)"}[lang]
    assert list(metered[excluded]) == ["0"] * 3 and list(pue[excluded]).count("1") == 21
    assert table_with(at, "pPUE")["pPUE"].tolist() == ["1.200", "1.200"]
    assert len(at.get("download_button")) >= 4                   # every table has its CSV
    metrics = [m.value for m in at.metric]
    assert "1.300" in metrics


def test_energy_page_by_tenant_from_its_url(page_db):
    at = run(page_db, by="tenant", **DAY)
    table = table_with(at, "Tenant")
    assert "Acme AI (acme)" in list(table["Tenant"])
    assert table.loc[table["Tenant"] == "Acme AI (acme)", "Facility (kWh)"].iloc[0] == "292.5"


def test_energy_page_for_a_tenant_shows_only_its_own(page_db):
    at = run(page_db, tenant="acme", **DAY)
    table = table_with(at, "Tenant")
    assert list(table["Tenant"]) == ["Acme AI (acme)"]
    assert not any("PUE" in df.value.columns for df in at.dataframe)


def test_meter_readings_off_the_bill_beside_the_metered_energy(seeded):
    cfg, store = seeded
    from collectors.meter_csv import parse_readings

    csv_text = ("site,meter,category,period_start,period_end,kwh\n"
                "s1,fac,facility,2026-11-20T00:00:00Z,2026-11-20T03:00:00Z,400\n"
                "s1,grid-main,facility,2026-11-20T00:00:00Z,2026-11-20T03:00:00Z,390\n")
    parsed = parse_readings(csv_text, cfg, source_file="bill.csv")
    assert not parsed.rejected
    store.import_facility_readings(parsed.rows)
    v = View(start=T0, end=T0 + timedelta(hours=3), tz="Asia/Shanghai")
    rows = {r["meter"]: r for r in energy.readings_table(store, cfg, v, now=NOW).records()}
    # the meter itself: 390 kWh metered over the whole period against 400 read: (390 - 400) / 400
    assert rows["fac"]["meter_kwh"] == pytest.approx(390.0) and rows["fac"]["covered_pct"] == 100.0
    assert rows["fac"]["difference_pct"] == pytest.approx(-2.5)
    # a bill meter the dashboard does not read: the site's facility total, 390 against 390
    assert rows["grid-main"]["meter_kwh"] is None and rows["grid-main"]["site_kwh"] == pytest.approx(390.0)
    assert rows["grid-main"]["difference_pct"] == pytest.approx(0.0)
    assert energy.readings_table(store, cfg, v, Scope(role="tenant", tenant="acme"), now=NOW).records() == []
