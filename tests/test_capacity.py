"""Capacity planning: forecasts of known series, trust, exhaustion, the forecast job and its
tables, what-if scenarios against hand-computed dates, the sizing calculator's check case, the
API and scope. The series are made here (helpers_capacity: a linear trend with a weekly cycle
written straight into the hourly group tier), so every expected figure is known."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

import api
import config
from collectors.jobs import JobRunner
from queries import Store
from queries import capacity as cap
from queries import forecast as fc
from queries import scenarios as sc
from queries.history import ParamError
from queries.scope import Scope
from helpers_capacity import DAY0, make_cfg, seed, trend_week

NOW = datetime(2026, 6, 8, 3, 0, tzinfo=timezone.utc)     # 11:00 in Asia/Shanghai: 200 days after DAY0
TENANT = Scope(role="tenant", tenant="t1", who="t1-user")


def noisy_line(n: int, base: float, per_day: float, amp: float, sd: float, seed_: int = 7) -> pd.Series:
    rng = np.random.default_rng(seed_)
    i = np.arange(n)
    return pd.Series(base + per_day * i + amp * np.sin(2 * np.pi * i / 7) + rng.normal(0, sd, n),
                     index=pd.date_range("2026-01-01", periods=n, freq="D"))


# ---- the forecast of one series ------------------------------------------------------------

def test_a_linear_trend_with_a_weekly_cycle_is_forecast_and_its_exhaustion_found():
    """y = 100 + 0.5 d + 10 sin(2 pi d / 7) + N(0, 2) over 300 days (d = 0..299); capacity 300.
    The trend reaches 300 at d = 400, i.e. 101 days after the last day (2026-10-27) ->
    2027-02-05. Stated error: 4- and 8-week MAPE below 3 %; the exhaustion date within 7 days
    of the truth; the 95 % band holds at least 80 % of the held-out days."""
    y = noisy_line(300, 100, 0.5, 10, 2.0)
    cfg = make_cfg().capacity
    f = fc.fit_series(y, cfg)
    assert f.trusted and f.reason is None
    assert f.model in ("AAA", "AAdA", "ANA") and f.label.startswith("ETS(")
    assert f.model == min(f.scores, key=f.scores.get)               # the backtest chose it
    assert [b.weeks for b in f.backtests] == [4, 8]
    for b in f.backtests:
        assert b.mape_pct < 3.0, b
        assert b.cover95_pct >= 80.0, b
    assert len(f.points) == cfg.horizon_days
    assert f.points["day"].iloc[0] == date(2026, 10, 28)            # the day after the last
    truth = date(2026, 10, 27) + timedelta(days=101)
    median, upper = fc.exhaustion(f.points, 300.0)
    assert truth == date(2027, 2, 5)
    assert abs((median - truth).days) <= 7, median
    assert upper <= median                                          # the upper band crosses first
    # the median tracks the trend: 90 days out, 100 + 0.5 x 389 = 294.5 within 3 %
    assert abs(f.points["median_smooth"].iloc[89] - 294.5) / 294.5 < 0.03


def test_a_series_too_short_for_two_cycles_past_the_holdout_is_refused_with_the_reason():
    """70 days = the 8-week hold-out + 2 weekly cycles; 60 days is short of it."""
    cfg = make_cfg().capacity
    assert fc.min_history_days(cfg) == 70                           # 8 x 7 + 2 x 7
    f = fc.fit_series(noisy_line(60, 50, 0.1, 3, 1.0), cfg)
    assert not f.trusted
    assert f.reason.key == "capacity.why.short" and f.reason.params == {"days": 60, "cycles": 2, "need": 70}
    assert "60 days of history" in f.reason.render("en") and "70" in f.reason.render("zh-CN")
    g = fc.fit_series(noisy_line(10, 50, 0.1, 3, 1.0), cfg)        # under two cycles: nothing fitted
    assert not g.trusted and g.model is None and g.points.empty


def test_an_error_above_the_bound_is_not_trusted():
    """White noise around 50 with a tight MASE bound: the forecast says why it is not trusted."""
    cfg = make_cfg(max_mase=0.2, models=["ANA"]).capacity
    rng = np.random.default_rng(3)
    y = pd.Series(50 + rng.normal(0, 10, 120), index=pd.date_range("2026-01-01", periods=120, freq="D"))
    f = fc.fit_series(y, cfg)
    assert not f.trusted and f.reason.key == "capacity.why.error_mase"
    assert f.reason.params["bound"] == "0.2"
    assert fc.exhaustion(f.points, 1e9) == (None, None)


def test_crossing_reads_the_first_day_at_or_above_capacity():
    days = [date(2027, 1, 1) + timedelta(days=i) for i in range(5)]
    assert fc.crossing(days, np.array([1, 2, 3, 4, 5.0]), 3.0) == date(2027, 1, 3)
    assert fc.crossing(days, np.array([1, 2, 3, 4, 5.0]), 6.0) is None
    assert fc.crossing(days, np.array([1, 2, 3, 4, 5.0]), None) is None
    assert list(fc.smooth([0, 0, 7, 0, 0], 7)) == pytest.approx([7 / 4, 7 / 5, 7 / 5, 7 / 5, 7 / 4])


# ---- the job and its tables --------------------------------------------------------------

@pytest.fixture
def seeded():
    """c1: t1 holds 20 + 0.2 d + 4 sin GPUs; c2: t2 holds 30 + 3 sin; 200 days to 2026-06-07."""
    cfg = make_cfg(models=["AAA", "ANA"])
    store = Store(":memory:")
    seed(store, 200, {("c1", "t1"): trend_week(20, 0.2, 4), ("c2", "t2"): trend_week(30, 0.0, 3)})
    yield cfg, store
    store.close()


def test_daily_series_come_from_the_hourly_tier(seeded):
    cfg, store = seeded
    s = cap.all_series(store, cfg, NOW)
    names = {k.name for k in s}
    assert {"peak_gpus:fleet", "allocated_gpus:fleet", "peak_gpus:cluster:c1", "peak_gpus:model:H100-SXM",
            "peak_gpus:tenant:t1", "allocated_gpus:tenant:t2"} <= names
    c1 = s[cap.SeriesId("peak_gpus", "cluster", "c1")]
    assert len(c1) == 200 and c1.index[0].date() == DAY0
    # day 10: 20 + 0.2 x 10 + 4 sin(20 pi / 7) = 22 + 4 x 0.43388 = 23.7355
    assert c1.iloc[10] == pytest.approx(22 + 4 * math.sin(2 * math.pi * 10 / 7))
    fleet = s[cap.SeriesId("allocated_gpus", "fleet")]
    assert fleet.iloc[10] == pytest.approx(23.7355 + 30 + 3 * math.sin(2 * math.pi * 10 / 7), abs=1e-3)


def test_the_forecast_job_stores_its_newest_run_and_the_exhaustion_table(seeded):
    """The job fits every series, keeps one run, and c1 (64 GPUs, demand 20 + 0.2 d) runs out
    when 20 + 0.2 d + the weekly peak reaches 64: the smoothed trend at d = 220, i.e. 21 days
    after the last day (2026-06-07) -> 2026-06-28 (the weekly cycle averages out)."""
    cfg, store = seeded
    clock = [NOW.timestamp()]
    runner = JobRunner(store, clock=lambda: clock[0])
    cap.add_jobs(runner, store, cfg)
    runner.ran.clear()
    runner.run_due(NOW)
    assert runner.ran.wait(5)
    assert runner.jobs["forecast"].last.ok, runner.jobs["forecast"].last.error
    fits = cap.latest_fits(store)
    assert (fits["unit"] == "GPUs").sum() == 12 and fits["run_at"].nunique() == 1
    assert runner.run_now("forecast").detail == "forecasts current"     # nothing changed: no refit
    clock[0] += 7 * 3600                                              # fit_every_hours (6) passed: refit
    assert "series fitted" in runner.run_now("forecast").detail
    assert len(store.query("capacity_fits_latest")) == len(fits)
    with store.cursor() as cur:
        assert cur.execute("SELECT count(DISTINCT run_at) FROM capacity_fits").fetchone()[0] == 1
    table = cap.exhaustion_table(store, cfg)
    rows = {r["series"]: r for r in table.records()}
    c1 = rows["peak_gpus:cluster:c1"]
    assert c1["capacity"] == 64.0 and c1["trusted"] is True
    # measured now: the highest of the last 7 days (193..199): 20 + 0.2 x 199 + 4 sin(...)
    last7 = [20 + 0.2 * d + 4 * math.sin(2 * math.pi * d / 7) for d in range(193, 200)]
    assert c1["measured_now"] == pytest.approx(max(last7), abs=0.01)
    assert c1["headroom_now"] == pytest.approx(64 - max(last7), abs=0.01)
    assert abs((date.fromisoformat(c1["exhaust_median"]) - date(2026, 6, 28)).days) <= 4
    assert "peak_gpus:tenant:t1" not in rows                        # tenants have no capacity
    people = table.for_people("zh-CN")
    assert "耗尽日期（中位数）" in people.columns
    bt = cap.backtest_table(store, cfg).records()
    assert {r["weeks"] for r in bt} == {4, 8} and all(r["cover95_pct"] is not None for r in bt)


def test_forecast_table_and_the_api(seeded):
    cfg, store = seeded
    cap.fit_all(store, cfg, NOW, only=["peak_gpus:cluster:c1", "peak_gpus:fleet"])
    client = TestClient(Starlette(routes=api.routes(lambda: store, cfg, clock=lambda: NOW)),
                        raise_server_exceptions=False)
    r = client.get("/api/v1/forecast", params={"series": "peak_gpus:cluster:c1", "horizon_days": "120"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == cap.forecast_table(store, cfg, "peak_gpus:cluster:c1", 120).to_json()
    assert len(body["rows"]) == 120 and body["rows"][0]["day"] == "2026-06-08"
    assert body["model"] in ("AAA", "ANA") and body["trusted"] is True and body["capacity"] == 64.0
    assert [b["weeks"] for b in body["backtests"]] == [4, 8]
    assert body["exhaust_median"] is not None
    row = body["rows"][0]
    assert row["lo95"] <= row["lo80"] <= row["median"] <= row["hi80"] <= row["hi95"]
    csv_text = client.get("/api/v1/forecast", params={"series": "peak_gpus:fleet", "format": "csv"}).text
    assert csv_text.splitlines()[0] == "day,median,lo80,hi80,lo95,hi95,median_smooth,upper_smooth"
    for bad, param in (({"series": "peak_gpus:cluster:nope"}, "series"), ({"horizon_days": "30"}, "horizon_days"),
                       ({"horizon_days": "x"}, "horizon_days"), ({"colour": "red"}, "colour")):
        r = client.get("/api/v1/forecast", params=bad)
        assert r.status_code == 400 and r.json()["parameter"] == param, r.text
    every = client.get("/api/v1/forecast").json()
    assert {row["series"] for row in every["rows"]} == {"peak_gpus:cluster:c1", "peak_gpus:fleet"}


def test_untrusted_forecasts_carry_no_points():
    """30 days of history: past two weekly cycles, short of the 70 a backtest needs."""
    cfg = make_cfg(models=["ANA"])
    store = Store(":memory:")
    seed(store, 30, {("c1", "t1"): trend_week(20, 0.2, 4)}, first=date(2026, 5, 9))
    cap.fit_all(store, cfg, NOW, only=["peak_gpus:fleet"])
    t = cap.forecast_table(store, cfg, "peak_gpus:fleet", 90, lang="zh-CN")
    assert t.rows.empty and t.about["trusted"] is False
    assert "不可信" in t.about["why_not"]
    assert t.about["exhaust_median"] is None


def test_a_tenant_scope_is_refused(seeded):
    cfg, store = seeded
    with pytest.raises(ParamError) as e:
        cap.exhaustion_table(store, cfg, TENANT)
    assert e.value.param == "scope"
    with pytest.raises(ParamError):
        cap.forecast_table(store, cfg, "peak_gpus:fleet", 90, TENANT)


# ---- what-if ------------------------------------------------------------------------------

def linear_baseline(cfg: config.Config, n: int = 200) -> sc.Baseline:
    """Demand 100 + 1 GPU a day against 128 owned; IT 200 + 0.5 kW a day against 250 kW;
    PUE 1.25, cooling ratio 0.2; facility capacity 320 kW, cooling 50 kW."""
    days = [date(2027, 1, 1) + timedelta(days=i) for i in range(n)]
    i = np.arange(n, dtype=float)
    frame = pd.DataFrame({"day": days, "d_med": 100 + i, "d_up": 110 + i, "a_med": 80 + i, "cap_gpus": 128.0,
                          "it_med": 200 + 0.5 * i, "it_mean": 180 + 0.5 * i, "fac_ratio": 1.25, "cool_ratio": 0.2,
                          "price": 0.7, "grid": 0.5, "t_med:t1": 40 + 0 * i, "t_up:t1": 45 + 0 * i,
                          "t_mean:t1": 30 + 0 * i})
    return sc.Baseline(frame, "H100-SXM", {}, True, {"it": 250.0, "facility": 320.0, "cooling": 50.0})


def test_adding_gpus_moves_the_gpu_date_later_and_the_power_dates_earlier_by_hand_computed_days():
    """Baseline: demand reaches 128 on day 28 (100 + d >= 128); IT 250 kW on day 100; facility
    (IT x 1.25) 320 kW on day 112 (250 + 0.625 d >= 320); cooling (IT x 0.2) 50 kW on day 100.
    Adding 32 H100 (700 W) on day 0: capacity 160 -> GPUs run out on day 60 (32 days later);
    IT rises by 32 x 0.7 x 1.5 x 0.3 = 10.08 kW -> 210.08 + 0.5 d >= 250 on d = 79.84 -> day 80
    (20 days earlier); facility 262.6 + 0.625 d >= 320 -> d = 91.84 -> day 92 (20 days earlier)."""
    cfg = make_cfg()
    base = linear_baseline(cfg)
    d0 = date(2027, 1, 1)
    before = sc.exhaustion(sc.apply(base, [], cfg), base)
    assert before == {"gpus": d0 + timedelta(28), "gpus_upper": d0 + timedelta(18), "it": d0 + timedelta(100),
                      "facility": d0 + timedelta(112), "cooling": d0 + timedelta(100)}
    add = sc.parse_change(0, {"kind": "add_gpus", "on": "2027-01-01", "cluster": "c1", "model": "H100-SXM",
                              "count": 32}, cfg)
    after = sc.exhaustion(sc.apply(base, [add], cfg), base)
    assert after["gpus"] == d0 + timedelta(60)
    assert after["it"] == d0 + timedelta(80)
    assert after["facility"] == d0 + timedelta(92)


def test_demand_changes_and_ratios_move_the_frame_by_hand():
    """t1 (40 GPUs) grows 10 %/month from day 0: after 30.4375 days it holds 44 (+4); a new
    tenant of 8 GPUs from day 10; PUE 1.1 from day 50; price 1.0 from day 20."""
    cfg = make_cfg()
    base = linear_baseline(cfg)
    changes = [sc.parse_change(i, c, cfg) for i, c in enumerate([
        {"kind": "tenant_growth", "on": "2027-01-01", "tenant": "t1", "pct": 10},
        {"kind": "new_tenant", "on": "2027-01-11", "tenant": "newco", "count": 8},
        {"kind": "pue", "on": "2027-02-20", "value": 1.1},
        {"kind": "price", "on": "2027-01-21", "value": 1.0}])]
    f = sc.apply(base, changes, cfg).set_index("day")
    busy, idle = 0.7 * 1.5, 0.7 * 1.5 * 0.3                   # 1.05 and 0.315 kW per GPU
    day = date(2027, 1, 1) + timedelta(days=30)               # k = 30 / 30.4375 months
    grow = 40 * (1.1 ** (30 / 30.4375) - 1)
    assert f.loc[day, "d_med"] == pytest.approx(130 + grow + 8)
    assert f.loc[day, "it_med"] == pytest.approx(215 + (grow + 8) * (busy - idle))
    assert f.loc[date(2027, 1, 10), "d_med"] == pytest.approx(109 + 40 * (1.1 ** (9 / 30.4375) - 1))
    late = date(2027, 2, 20)                                   # day 50
    assert f.loc[late, "fac_ratio"] == 1.1 and f.loc[late, "cool_ratio"] == pytest.approx(0.2 * 0.1 / 0.25)
    assert f.loc[date(2027, 1, 20), "price"] == 0.7 and f.loc[date(2027, 1, 21), "price"] == 1.0
    ppue = sc.apply(base, [sc.parse_change(0, {"kind": "ppue", "on": "2027-01-01", "value": 1.05}, cfg)], cfg)
    assert ppue["cool_ratio"].iloc[0] == pytest.approx(0.05) and ppue["fac_ratio"].iloc[0] == pytest.approx(1.1)
    retire = sc.apply(base, [sc.parse_change(0, {"kind": "retire_hosts", "on": "2027-01-01", "cluster": "c2",
                                                 "count": 2}, cfg)], cfg)
    assert retire["cap_gpus"].iloc[0] == 112 and retire["it_med"].iloc[0] == pytest.approx(200 - 16 * idle)


def test_bad_changes_are_refused_naming_what_was_wrong():
    cfg = make_cfg()
    cases = [({"kind": "grow"}, "capacity.bad.kind"),
             ({"kind": "pue", "on": "soon", "value": 1.2}, "capacity.bad.date"),
             ({"kind": "add_gpus", "on": "2027-01-01", "cluster": "c9", "model": "H100-SXM", "count": 8},
              "capacity.bad.cluster"),
             ({"kind": "add_gpus", "on": "2027-01-01", "cluster": "c1", "model": "Z9", "count": 8},
              "capacity.bad.model"),
             ({"kind": "add_gpus", "on": "2027-01-01", "cluster": "c1", "model": "H100-SXM", "count": "8"},
              "capacity.bad.number"),
             ({"kind": "retire_hosts", "on": "2027-01-01", "cluster": "c1", "count": 9}, "capacity.bad.hosts"),
             ({"kind": "pue", "on": "2027-01-01", "value": 0.9}, "capacity.bad.ratio"),
             ({"kind": "new_tenant", "on": "2027-01-01", "tenant": "t1", "count": 8}, "capacity.bad.new_tenant"),
             ({"kind": "tenant_step", "on": "2027-01-01", "tenant": "t1"}, "capacity.bad.missing"),
             ({"kind": "price", "on": "2027-01-01", "value": 1, "tenant": "t1"}, "capacity.bad.key")]
    for raw, key in cases:
        with pytest.raises(sc.ScenarioError) as e:
            sc.parse_change(0, raw, cfg)
        assert e.value.key == key, (raw, e.value)
        assert "1" in e.value.message("en") and e.value.message("zh-CN") != e.value.message("en")
    with pytest.raises(sc.ScenarioError):
        sc.parse("baseline", "x", [], 12, cfg)
    with pytest.raises(sc.ScenarioError):
        sc.parse("ok", "x", [], 24, cfg)


def test_scenarios_are_saved_compared_and_served(seeded):
    cfg, store = seeded
    cap.fit_all(store, cfg, NOW, only=["peak_gpus:fleet", "allocated_gpus:fleet", "peak_gpus:tenant:t1",
                                       "allocated_gpus:tenant:t1"])
    more = sc.parse("more-gpus", "64 more GPUs", [{"kind": "add_gpus", "on": "2026-07-01", "cluster": "c1",
                                                   "model": "H100-SXM", "count": 64}], 12, cfg)
    sc.save(store, more, NOW)
    sc.save(store, more, NOW + timedelta(hours=1))                  # saving again replaces it
    assert [s.name for s in sc.saved(store)] == ["more-gpus"]
    assert sc.load(store, "more-gpus").changes == more.changes
    cmp = sc.compare(store, cfg, [more], NOW)
    ex = {r["scenario"]: r for r in cmp.exhaustion.records()}
    assert ex["baseline"]["gpus"] is not None
    assert ex["more-gpus"]["gpus"] is None or ex["more-gpus"]["gpus"] > ex["baseline"]["gpus"]
    months = cmp.months.records()
    assert {m["scenario"] for m in months} == {"baseline", "more-gpus"}
    july = {m["scenario"]: m for m in months if m["month"] == "2026-07"}
    assert july["more-gpus"]["gpu_capacity"] == july["baseline"]["gpu_capacity"] + 64 == 192
    client = TestClient(Starlette(routes=api.routes(lambda: store, cfg, clock=lambda: NOW)),
                        raise_server_exceptions=False)
    r = client.get("/api/v1/scenario", params={"name": "more-gpus"})
    assert r.status_code == 200, r.text
    assert r.json()["scenarios"][0]["changes"][0]["count"] == 64
    assert client.get("/api/v1/scenario", params={"name": "nope"}).status_code == 400
    csv_text = client.get("/api/v1/scenario", params={"name": "more-gpus", "format": "csv"}).text
    assert csv_text.startswith("scenario,month")
    sc.delete(store, "more-gpus")
    assert sc.saved(store) == []


# ---- the calculator ------------------------------------------------------------------------

def test_sizing_calculator_gpt3_check_case():
    """17,117 PFLOPS-days on 2-PFLOPS, 10-kW servers in one day: 17,117 / 2 = 8,558.5 -> 8,559
    servers; 8,559 x 10 kW x 24 h = 2,054,160 kWh IT, x 1.2 = 2,464,992 kWh."""
    s = cap.size_training_run(17_117, 2.0, 10.0, days=1, ratio=1.0, pue=1.2)
    assert s.units == 8_559 and s.unit_days == 8_558.5
    assert s.it_kwh == pytest.approx(2_054_160) and s.facility_kwh == pytest.approx(2_464_992)
    # the same need over 30 days at 40 % effective: 17,117 / (2 x 0.4) / 30 = 713.2 -> 714 servers
    t = cap.size_training_run(17_117, 2.0, 10.0, days=30, ratio=0.4, pue=1.2, price_per_unit_hour=10.0,
                              grid_kg_per_kwh=0.5)
    assert t.units == 714
    assert t.cost_cny == pytest.approx(714 * 24 * 30 * 10.0)
    assert t.carbon_kg == pytest.approx(714 * 10 * 24 * 30 * 1.2 * 0.5)
    with pytest.raises(ValueError):
        cap.size_training_run(100, 2.0, 10.0, ratio=0)


def test_delivered_ratio_reads_the_tier(seeded):
    """The seed's allocated time does tensor work at 0.4 of peak (tflop_s = s x 0.4 x 989)."""
    cfg, store = seeded
    ratio, source = cap.delivered_ratio(store, cfg, "H100-SXM", NOW)
    assert ratio == pytest.approx(0.4) and "rollup_group_1h" in source
    assert cap.delivered_ratio(store, cfg, "MI300X", NOW)[0] is None


def test_config_cross_checks():
    with pytest.raises(config.ConfigError) as e:
        make_cfg(history_days=60)
    assert "capacity.history_days" in str(e.value) and "70 days" in str(e.value)
    with pytest.raises(config.ConfigError) as e:
        make_cfg(models=["AAA", "AAA"])
    assert "capacity.models" in str(e.value)
    with pytest.raises(config.ConfigError):
        make_cfg(exhaustion_band=90)


def test_series_names_parse_both_ways():
    for text in ("peak_gpus:fleet", "allocated_gpus:cluster:c1", "facility_kw_peak:site:s1"):
        assert cap.SeriesId.parse(text).name == text
    for bad in ("peak_gpus", "peak_gpus:fleet:x", "peak_gpus:site:s1", "it_kw_peak:cluster:c1", "x:fleet"):
        with pytest.raises(ValueError):
            cap.SeriesId.parse(bad)
    assert json.loads(json.dumps(cap.SeriesId("peak_gpus", "tenant", "t1").name)) == "peak_gpus:tenant:t1"


def test_power_series_run_out_against_the_sites_capacity():
    """The default centre's energy.toml: power_kw 640 (transformers), cooling_kw 160; IT has none."""
    cfg = config.load(config.CONFIG_DIR)
    site = cfg.sites[0].id
    assert cap.capacity_of(cfg, cap.SeriesId("facility_kw_peak", "site", site)) == 640.0
    assert cap.capacity_of(cfg, cap.SeriesId("cooling_kw_peak", "site", site)) == 160.0
    assert cap.capacity_of(cfg, cap.SeriesId("it_kw_peak", "site", site)) is None
    assert cap.capacity_of(cfg, cap.SeriesId("peak_gpus", "cluster", "train-a")) == 256.0
    assert cap.capacity_of(cfg, cap.SeriesId("peak_gpus", "tenant", "moonlake")) is None
