"""The capacity page (AppTest) over a seeded store with the forecast job's results, in both
languages, each section driven by its URL; a tenant's scope is refused."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from streamlit.testing.v1 import AppTest

from queries import Store
from queries import capacity as cap
from queries import scenarios as sc
from helpers import run_script, table_with
from helpers_capacity import centre, make_cfg, seed, trend_week

NOW = datetime(2026, 6, 8, 3, 0, tzinfo=timezone.utc)


def _page_script(db: str, centre_json: str, role: str | None, write: bool = False) -> None:
    import json

    import streamlit as st

    import config
    from pages.capacity import page
    from pages.context import PageContext
    from queries import Store
    from queries.scope import Scope

    @st.cache_resource
    def store(path: str) -> Store:
        return Store(path, read_only=not write)

    scope = Scope(role="tenant", tenant="t1") if role == "tenant" else Scope()
    ctx = PageContext(cfg=config.from_dict(json.loads(centre_json)), store=store(db),
                      lang=st.query_params.get("lang") or "en", scope=scope)
    page(ctx)


@pytest.fixture(scope="module")
def page_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("capacity") / "capacity.duckdb"
    body = centre(models=["AAA", "ANA"])
    body["database"] = {"path": str(db)}
    cfg = make_cfg(models=["AAA", "ANA"])
    store = Store(db)
    seed(store, 200, {("c1", "t1"): trend_week(20, 0.2, 4), ("c2", "t2"): trend_week(30, 0.0, 3)})
    cap.fit_all(store, cfg, NOW, only=["peak_gpus:fleet", "allocated_gpus:fleet", "peak_gpus:cluster:c1",
                                       "peak_gpus:tenant:t1", "allocated_gpus:tenant:t1", "peak_gpus:model:H100-SXM"])
    sc.save(store, sc.parse("more", "More GPUs", [{"kind": "add_gpus", "on": "2026-07-01", "cluster": "c1",
                                                   "model": "H100-SXM", "count": 64}], 12, cfg), NOW)
    store.close()
    return str(db), json.dumps(body, default=str)


def run(page_db, role: str | None = None, **params) -> AppTest:
    db, body = page_db
    return run_script(_page_script, (db, body, role), params, errors_allowed=role == "tenant", timeout=90)


TITLE = {"en": "Capacity planning", "zh-CN": "容量规划"}


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_forecast_view_shows_the_series_its_band_and_backtest(page_db, lang):
    at = run(page_db, lang=lang, series="peak_gpus:cluster:c1", horizon="6")
    assert at.title[0].value == TITLE[lang]
    assert at.selectbox(key="cap_series").value == "peak_gpus:cluster:c1"
    bt = table_with(at, {"en": "Hold-out (weeks)", "zh-CN": "留出期（周）"}[lang])
    assert sorted(bt[{"en": "Hold-out (weeks)", "zh-CN": "留出期（周）"}[lang]].tolist()) == ["4", "8"]
    capacity = {"en": "Capacity (GPUs)", "zh-CN": "容量 (GPUs)"}[lang]
    assert any(m.label == capacity and m.value == "64" for m in at.metric)
    assert len(at.get("plotly_chart")) == 1
    assert len(at.get("download_button")) >= 2


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_exhaustion_and_scenarios_views(page_db, lang):
    at = run(page_db, lang=lang, view="exhaustion")
    runs_out = {"en": "Runs out (median)", "zh-CN": "耗尽日期（中位数）"}[lang]
    table = table_with(at, runs_out)
    assert len(table) == 3                                          # fleet, c1 and the model have capacities
    at = run(page_db, lang=lang, view="scenarios", compare="more")
    assert at.multiselect(key="cap_compare").value == ["more"]
    ex = table_with(at, {"en": "GPUs run out", "zh-CN": "GPU 耗尽"}[lang])
    assert ex[{"en": "Scenario", "zh-CN": "情景"}[lang]].tolist() == [{"en": "Baseline", "zh-CN": "基线"}[lang], "more"]
    months = table_with(at, {"en": "GPUs owned (GPUs)", "zh-CN": "拥有 GPU (GPUs)"}[lang])
    assert "192" in months[{"en": "GPUs owned (GPUs)", "zh-CN": "拥有 GPU (GPUs)"}[lang]].tolist()


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_calculator_view_reads_its_url(page_db, lang):
    at = run(page_db, lang=lang, view="calculator", pfd="3640", days="30", model="H100-SXM")
    gpus = {"en": "Accelerators", "zh-CN": "加速卡数量"}[lang]
    # 3,640 / (0.989 PFLOPS x 0.4 measured) / 30 days = 306.7 -> 307
    assert next(m for m in at.metric if m.label == gpus).value == "307"
    assert "8,559" in at.caption[1].value or any("8,559" in c.value for c in at.caption)


def test_a_tenant_is_refused_and_bad_url_values_fall_back(page_db):
    at = run(page_db, role="tenant")
    assert at.error and "tenant" in at.error[0].value.lower()
    at = run(page_db, view="<script>", series="nope")
    assert at.selectbox(key="cap_series").value == "peak_gpus:fleet"


def test_a_scenario_saved_from_the_page_is_compared_and_in_the_url(tmp_path):
    """The editor starts from an example (64 more GPUs of the first cluster's model a quarter
    ahead); saving it stores it under its name and puts it in the URL's comparison."""
    db = tmp_path / "edit.duckdb"
    body = centre(models=["ANA"])
    body["database"] = {"path": str(db)}
    store = Store(db)
    seed(store, 100, {("c1", "t1"): trend_week(20, 0.2, 4)})
    cap.fit_all(store, make_cfg(models=["ANA"]), NOW, only=["peak_gpus:fleet", "allocated_gpus:fleet"])
    store.close()
    at = AppTest.from_function(_page_script, args=(str(db), json.dumps(body, default=str), None, True),
                               default_timeout=90)
    at.query_params["view"] = "scenarios"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    at.text_input(key="cap_name_").set_value("q1-plus-64")
    at.button(key="cap_save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.query_params["compare"] == ["q1-plus-64"] or at.query_params["compare"] == "q1-plus-64"
    assert at.multiselect(key="cap_compare").value == ["q1-plus-64"]
    ex = table_with(at, "GPUs run out")
    assert ex["Scenario"].tolist() == ["Baseline", "q1-plus-64"]
    at.text_input(key="cap_name_").set_value("baseline")          # a reserved name: refused in words
    at.button(key="cap_save").click().run()
    assert at.error and "baseline" in at.error[0].value


def test_calculator_reproduces_the_check_case_with_a_server_of_its_own(page_db):
    """17,117 PFLOPS-days on 2-PFLOPS, 10-kW servers in one day at ratio 1 and PUE 1.2: 8,559
    servers and 2,464,992 kWh; and 314 x 10^21 FLOPs read as 3,634.3 PFLOPS-days."""
    at = run(page_db, view="calculator", model="custom", pfd="17117", days="1", spf="2", skw="10")
    assert at.number_input(key="cap_ratio").value == 1.0
    at.number_input(key="cap_pue").set_value(1.2).run()
    metric = {m.label: m.value for m in at.metric}
    assert metric["Accelerators"] == "8,559"
    assert metric["Facility energy (kWh)"] == "2,464,992"
    assert metric["IT energy (kWh)"] == "2,054,160"
    at = run(page_db, view="calculator", unit="zflop", pfd="314")
    assert any("3,634.3 PFLOPS-days" in c.value for c in at.caption)
    assert cap.pflops_days(3.14e23) == pytest.approx(3634.26, abs=0.01)
