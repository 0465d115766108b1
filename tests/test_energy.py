"""Energy (issue 13): meter energy from registers and power, PUE from energy with its category and
gaps, tariffs, carbon and coal, energy per tenant. Figures against hand-computed numbers."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

import config
from queries import energy
from queries.history import View
from helpers import history_centre
from helpers_energy import T0, UTC, energy_section, readings, write


def make(**changes) -> config.Config:
    return config.from_dict(history_centre(energy=energy_section(**changes)))


@pytest.fixture
def ecfg():
    return make()


def view(start=T0, hours=3, step="all", **kw) -> View:
    return View(start=start, end=start + timedelta(hours=hours), step=step, tz="Asia/Shanghai", **kw)


NOW = T0 + timedelta(days=1)


def test_pue_from_energy_is_facility_over_it_of_one_category(ecfg, store):
    # 3 hours: facility register 1,250 kWh, two PDU registers 600 + 400 = 1,000 kWh (category 2),
    # a UPS-output meter not listed (category 1) that must not mix in
    write(store, readings("fac", "facility", T0, 180, kwh_per_min=1250 / 180, register_at=5000.0)
          + readings("pdu-1", "it", T0, 180, kwh_per_min=600 / 180, category=2)
          + readings("pdu-2", "it", T0, 180, kwh_per_min=400 / 180, category=2)
          + readings("ups", "it", T0, 180, kwh_per_min=1100 / 180, category=1))
    energy.build(store, ecfg, NOW)
    t = energy.pue_table(store, ecfg, view(), now=NOW)
    (row,) = t.records()
    assert row["facility_kwh"] == pytest.approx(1250.0) and row["it_kwh"] == pytest.approx(1000.0)
    assert row["pue"] == pytest.approx(1.25)                   # 1,250 / 1,000
    assert row["category"] == 2 and row["it_estimated"] is False
    assert row["hours"] == 3 and row["excluded_hours"] == 0
    assert row["grade"] == 2                                   # 1.20 < 1.25 <= 1.30
    hourly = energy.pue_table(store, ecfg, view(step="1h"), now=NOW).records()
    assert [r["pue"] for r in hourly] == pytest.approx([1.25] * 3)
    # category 1 asked for: 1,250 / 1,100
    (c1,) = energy.pue_table(store, ecfg, view(), now=NOW, category=1).records()
    assert c1["pue"] == pytest.approx(1250 / 1100, abs=1e-4) and c1["category"] == 1


def test_a_three_hour_gap_is_excluded_from_both_sides(ecfg, store):
    # 6 hours; the facility meter is silent from 01:00 to 04:00 (readings 60..239 missing): those
    # three hours leave numerator and denominator alike, and are stated
    write(store, readings("fac", "facility", T0, 360, kwh_per_min=2.5, skip=(61, 240))
          + readings("pdu-1", "it", T0, 360, kwh_per_min=1.0, category=2)
          + readings("pdu-2", "it", T0, 360, kwh_per_min=1.0, category=2))
    energy.build(store, ecfg, NOW)
    (row,) = energy.pue_table(store, ecfg, view(hours=6), now=NOW).records()
    assert row["hours"] == 3 and row["excluded_hours"] == 3
    assert row["facility_kwh"] == pytest.approx(3 * 60 * 2.5)      # 450 kWh in the 3 covered hours
    assert row["it_kwh"] == pytest.approx(3 * 60 * 2.0)            # 360 kWh in the same hours
    assert row["pue"] == pytest.approx(1.25)


def test_a_register_reset_mid_month_gives_the_month_energy(ecfg, store):
    # a register rising 1 kWh a minute over 2 hours, set back to zero at reading 50 (it reads
    # 0.5 kWh there: half a minute's energy since the reset): 120 kWh either way
    write(store, readings("fac", "facility", T0, 120, kwh_per_min=1.0, register_at=99_000.0, reset_at=50))
    energy.build(store, ecfg, NOW)
    q = store.query("energy_quarters", lo=T0, hi=T0 + timedelta(hours=2), site="s1")
    # the reading after the reset counts what it read (0.5), not the half minute before: 119.5 kWh
    assert q["kwh"].sum() == pytest.approx(120.0 - 0.5)
    assert q["resets"].sum() == 1


def test_a_register_rollover_counts_across_the_top():
    cfg = make(meters=[{"site": "s1", "meter": "fac", "scope": "facility", "register_max_kwh": 100_000.0}])
    from queries import Store
    store = Store(":memory:")
    write(store, readings("fac", "facility", T0, 60, kwh_per_min=2.0, register_at=99_950.0))
    # the register passes 100,000 after 25 minutes and reads from 0 again
    with store.cursor() as cur:
        cur.execute("UPDATE facility_samples SET energy_kwh = energy_kwh - 100000 WHERE energy_kwh >= 100000")
    energy.build(store, cfg, NOW)
    q = store.query("energy_quarters", lo=T0, hi=T0 + timedelta(hours=1), site="s1")
    assert q["kwh"].sum() == pytest.approx(120.0)                   # 60 minutes x 2 kWh
    store.close()


def test_power_only_meters_are_integrated(ecfg, store):
    # cooling loop reports 120 kW for an hour: 120 kWh
    write(store, readings("loop", "cooling", T0, 60, power_w=120_000.0))
    energy.build(store, ecfg, NOW)
    q = store.query("energy_quarters", lo=T0, hi=T0 + timedelta(hours=1), site="s1")
    assert q["kwh"].sum() == pytest.approx(120.0) and (q["covered_s"] == 900).all()
    assert (q["register_s"] == 0).all()


def test_four_period_tariff_with_summer_variant_prices_hour_by_hour():
    cfg = make()
    # 2026-07-15 is a summer day: local 12:00-14:00 sharp at 1.5; 2026-11-20 has no sharp peak
    summer = datetime(2026, 7, 15, 4, 30, tzinfo=UTC)          # 12:30 in Shanghai
    assert energy.period_at(cfg, "s1", summer) == ("sharp", 1.5)
    assert energy.period_at(cfg, "s1", datetime(2026, 11, 20, 4, 30, tzinfo=UTC)) == ("flat", 0.6)
    assert energy.price_kwh(cfg, "s1", datetime(2026, 7, 15, 15, 0, tzinfo=UTC)) == 0.3    # 23:00 valley
    # a summer day's flat load: 10 h valley (0.3) + 8 h peak (1.0) + 2 h sharp (1.5) + 4 h flat (0.6)
    # mean = (3 + 8 + 3 + 2.4) / 24 over July's 31 days, the same each day
    assert energy.mean_price_kwh(cfg, "s1", "2026-07") == pytest.approx(16.4 / 24)


def test_known_load_profile_costs_exactly_with_demand_charge(store):
    cfg = make()
    # 2026-07-15 04:00-06:00 UTC = 12:00-14:00 Shanghai (sharp) and 06:00-07:00 UTC = 14:00 (peak):
    # facility 100 kWh in each hour, then 300 kWh in the last, with IT 80 kWh / h
    start = datetime(2026, 7, 15, 4, 0, tzinfo=UTC)
    fac = (readings("fac", "facility", start, 120, kwh_per_min=100 / 60)
           + readings("fac", "facility", start + timedelta(hours=2), 60, kwh_per_min=300 / 60,
                      register_at=200.0)[1:])
    it = readings("pdu-1", "it", start, 180, kwh_per_min=80 / 60, category=2) + readings(
        "pdu-2", "it", start, 180, kwh_per_min=0.0, category=2)
    write(store, fac + it)
    now = datetime(2026, 8, 2, tzinfo=UTC)
    energy.build(store, cfg, now)
    # one tenant used every board kWh of the hours
    _seed_boards(store, start, 3, {"acme": 10.0})
    t = energy.tenant_energy(store, cfg, start, start + timedelta(hours=3), now=now)
    row = t.set_index("tenant").loc["acme"]
    assert row["facility_kwh"] == pytest.approx(500.0)            # all of the site's facility energy
    # cost: 100 x 1.5 + 100 x 1.5 + 300 x 1.0 = 600 CNY
    assert row["cost_cny"] == pytest.approx(600.0)
    # demand: the largest quarter hour is 75 kWh -> 300 kW; 300 x 40 CNY/kW-month = 12,000 for July,
    # of which a 3-hour range carries 3 of July's 744 hours
    assert row["demand_cny"] == pytest.approx(12_000.0 * 3 / 744)
    # the whole month (as a bill asks): the whole charge
    month = energy.tenant_energy(store, cfg, *energy.month_bounds(cfg, "s1", "2026-07"), now=now)
    assert month.set_index("tenant").loc["acme", "demand_cny"] == pytest.approx(12_000.0)
    assert month.set_index("tenant").loc["acme", "cost_cny"] == pytest.approx(600.0)
    assert row["it_kwh"] == pytest.approx(240.0) and row["overhead_kwh"] == pytest.approx(260.0)


def _seed_boards(store, start: datetime, hours: int, tenants_kwh: dict[str, float]) -> None:
    """Board energy per tenant per hour in rollup_group_1h (cluster c1)."""
    import pyarrow as pa

    from queries.catalogue import arrow_schema

    rows = []
    for h in range(hours):
        for tenant, kwh in tenants_kwh.items():
            rows.append(dict(bucket=start + timedelta(hours=h), site="s1", cluster="c1", model="H100-SXM",
                             tenant=tenant, devices=1, samples=240, observed_s=3600.0, available_s=3600.0,
                             allocated_s=3600.0, busy_s=3600.0, useful_s=0.0, useful_basis=None,
                             alloc_idle_s=0.0, util_s=0.0, util_obs_s=0.0, tflop_s=0.0, energy_j=kwh * 3.6e6))
    store.insert("rollup_group_1h", pa.Table.from_pylist(rows, schema=arrow_schema("rollup_group_1h")))


def test_tenant_overhead_shares_sum_to_the_site_facility_energy(ecfg, store):
    # 2 hours; facility 130 kWh/h, IT 100 kWh/h; boards: acme 30, idle-co 10, unallocated 10 kWh/h
    write(store, readings("fac", "facility", T0, 120, kwh_per_min=130 / 60)
          + readings("pdu-1", "it", T0, 120, kwh_per_min=100 / 60, category=2)
          + readings("pdu-2", "it", T0, 120, kwh_per_min=0.0, category=2))
    energy.build(store, ecfg, NOW)
    _seed_boards(store, T0, 2, {"acme": 30.0, "idle-co": 10.0, "_unallocated": 10.0})
    t = energy.tenant_energy(store, ecfg, T0, T0 + timedelta(hours=2), now=NOW).set_index("tenant")
    assert t["facility_kwh"].sum() == pytest.approx(260.0)        # the site's facility energy
    assert t["it_kwh"].sum() == pytest.approx(200.0)
    # acme: 60 of 100 board kWh -> 120 IT kWh, x PUE 1.3 = 156 facility kWh
    assert t.loc["acme", "board_kwh"] == pytest.approx(60.0)
    assert t.loc["acme", "it_kwh"] == pytest.approx(120.0)
    assert t.loc["acme", "facility_kwh"] == pytest.approx(156.0)
    assert t.loc["acme", "overhead_kwh"] == pytest.approx(36.0)
    # cost: 08:00-10:00 Shanghai in November is peak (1.0): 156 CNY
    assert t.loc["acme", "cost_cny"] == pytest.approx(156.0)
    # carbon: grid factor 0.58 (history_centre's site default), no green share: 156 x 0.58
    assert t.loc["acme", "carbon_kg"] == pytest.approx(156.0 * 0.58)
    only = energy.tenant_energy(store, ecfg, T0, T0 + timedelta(hours=2), tenant="acme", now=NOW)
    assert list(only["tenant"]) == ["acme"] and only["facility_kwh"].iloc[0] == pytest.approx(156.0)


def test_coal_and_carbon_check_case():
    # 8,559 servers x 10 kW x 24 h x PUE 1.2 = 2,464,992 kWh; "302.94 t of standard coal, 745.2 t CO2"
    cfg = make(carbon={"method": "coal", "coal_kgce_per_kwh": 0.1229, "co2_t_per_tce": 2.46})
    kwh = 8559 * 10 * 24 * 1.2
    assert kwh == pytest.approx(2_464_992)
    tce = energy.coal_kgce(cfg, kwh) / 1000                   # 2,464,992 x 0.1229 = 302,947.5 kg
    assert tce == pytest.approx(302.9475, abs=1e-3) and int(tce * 100) / 100 == 302.94   # the analysis truncates
    co2_t = energy.carbon_kg(cfg, "s1", kwh) / 1000            # 302.9475 t x 2.46 = 745.25 t
    assert co2_t == pytest.approx(745.25, abs=0.01) and int(co2_t * 10) / 10 == 745.2
    f = energy.factors(cfg, "s1")
    assert f.method == "coal" and f.emission_kg_per_kwh == pytest.approx(0.1229 * 2.46)
    # the grid method: the national 2022 average 0.5703 kg/kWh, a 20 % green share left out
    cfg2 = config.from_dict(history_centre(
        sites=[{"id": "s1", "name": "Site One", "timezone": "Asia/Shanghai", "grid_emission_kg_per_kwh": 0.5703}],
        energy=energy_section(green=[{"site": "s1", "month": "2026-11", "share_pct": 20.0}])))
    assert energy.carbon_kg(cfg2, "s1", 1000.0, "2026-11") == pytest.approx(1000 * 0.8 * 0.5703)
    assert energy.carbon_kg(cfg2, "s1", 1000.0, "2026-10") == pytest.approx(570.3)


def test_site_power_daily_and_capacity(ecfg, store):
    write(store, readings("fac", "facility", T0, 120, kwh_per_min=130 / 60)
          + readings("pdu-1", "it", T0, 120, kwh_per_min=100 / 60, category=2)
          + readings("pdu-2", "it", T0, 120, kwh_per_min=0.0, category=2))
    energy.build(store, ecfg, NOW)
    d = energy.site_power_daily(store, ecfg, T0, T0 + timedelta(hours=2), now=NOW)
    (row,) = d.to_dict("records")
    assert row["site"] == "s1" and str(row["day"].tz) == "Asia/Shanghai"
    assert row["facility_kw_mean"] == pytest.approx(130.0) and row["facility_kw_peak"] == pytest.approx(130.0)
    assert row["it_kw_mean"] == pytest.approx(100.0)
    assert row["cooling_kw_mean"] != row["cooling_kw_mean"]       # NaN: no cooling reading
    cap = energy.site_capacity(ecfg)["s1"]
    assert (cap.power_kw, cap.cooling_kw, cap.contracted_kw) == (2000.0, 500.0, 1500.0)


def test_live_power_adds_one_it_category_and_no_sub_meters(ecfg, store):
    at = T0 + timedelta(minutes=30)
    rows = [{"ts": at, "site": "s1", "meter": m, "scope": sc, "pue_category": c, "power_w": w, "energy_kwh": None,
             "source": "test"}
            for m, sc, c, w in (("fac", "facility", None, 1300.0), ("ups", "it", 1, 1050.0),
                                ("pdu-1", "it", 2, 600.0), ("pdu-2", "it", 2, 400.0),
                                ("cool", "cooling", None, 200.0), ("loop", "cooling", None, 200.0))]
    write(store, rows)
    (row,) = energy.live_power(store, ecfg, at, 60).to_dict("records")
    # category 2 (the highest metered): 600 + 400; the loop is the plant's sub-meter
    assert (row["facility_w"], row["it_w"], row["cooling_w"], row["pue_category"]) == (1300.0, 1000.0, 200.0, 2)
    assert row["pue"] == pytest.approx(1.3)


def test_the_simulated_centre_meters_pue_at_two_categories_and_ppue(cfg, store):
    """The simulator's meters of config/energy.toml, read every 15 minutes (the back-fill's step)
    through the facility collector: PUE at category 1 (UPS output) and 2 (the halls' PDUs, a
    little lower IT after the PDU losses), pPUE per hall and loop, nothing excluded."""
    from collectors.facility import FacilityCollector
    from collectors.targets import Target
    from simulator import Floor

    floor = Floor(cfg)
    col = FacilityCollector(cfg)
    target = Target(url="sim://facility", source="sim-facility", kind="facility", site="sh-lingang",
                    cluster="train-a", host=None)
    start = datetime(2026, 11, 20, tzinfo=UTC)
    for k in range(6 * 4 + 1):
        at = start + timedelta(minutes=15 * k)
        text = floor.facility_text("sh-lingang", at.timestamp())
        store.write_scrape(facility=col.from_text(text, target, at).facility)
    energy.build(store, cfg, start + timedelta(days=1))
    v = View(start=start, end=start + timedelta(hours=6), step="all", tz="Asia/Shanghai")
    (one,) = energy.pue_table(store, cfg, v, now=start + timedelta(days=1)).records()
    (two,) = energy.pue_table(store, cfg, v, now=start + timedelta(days=1), category=2).records()
    assert one["category"] == 1 and two["category"] == 2 and one["excluded_hours"] == 0 and one["hours"] == 6
    assert 1.1 < one["pue"] < 1.5
    assert two["it_kwh"] == pytest.approx(one["it_kwh"] * (1 - 0.012), rel=2e-3)     # the PDUs' losses
    # the facility register's delta over the 6 hours is the facility energy
    a, b = (floor.facility_values("sh-lingang", (start + timedelta(hours=h)).timestamp()) for h in (0, 6))
    assert one["facility_kwh"] == pytest.approx(b["energy_kwh"]["facility"] - a["energy_kwh"]["facility"], rel=1e-6)
    ppue = {r["part"]: r for r in energy.ppue_table(store, cfg, v, now=start + timedelta(days=1)).records()}
    assert set(ppue) == {"hall-a", "hall-b", "chw-a", "chw-b"}
    assert all(1.05 < r["ppue"] < 1.4 and r["excluded_hours"] == 0 for r in ppue.values())


def test_bad_energy_settings_are_named_with_their_key():
    bad_tariff = {"id": "t", "seasons": [{"name": "all", "months": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                                          "prices": {"peak": 1.0, "valley": 0.3},
                                          "hours": {"peak": ["08-20"], "valley": ["19-08"], "noon": ["12-13"]}}]}
    with pytest.raises(config.ConfigError) as err:
        make(sites=[{"site": "nowhere", "tariff": "missing"}],
             meters=[{"site": "s1", "meter": "ups", "scope": "it"},
                     {"site": "s1", "meter": "c", "scope": "cooling", "submeter_of": "ups"},
                     {"site": "s1", "meter": "f", "scope": "facility", "category": 1}],
             tariffs=[bad_tariff], green=[{"site": "s1", "month": "2026-11", "kwh": 5.0, "share_pct": 3.0}])
    text = str(err.value)
    for key, words in (("energy.sites[0].site", "unknown site 'nowhere'"),
                       ("energy.sites[0].tariff", "unknown tariff 'missing'"),
                       ("energy.meters[0].category", "needs its ISO/IEC 30134-2 category"),
                       ("energy.meters[1].submeter_of", "measures it, this one cooling"),
                       ("energy.meters[2].category", "only IT meters"),
                       ("energy.tariffs[0].seasons[0].hours.valley", "hour 19:00 is also in period 'peak'"),
                       ("energy.tariffs[0].seasons[0]", "unknown period 'noon'"),
                       ("energy.tariffs[0].seasons", "months [12] have no season"),
                       ("energy.green[0]", "either kwh or share_pct")):
        assert f"key '{key}'" in text and words in text, (key, text)
    with pytest.raises(config.ConfigError) as err:
        make(pue={"target": 0.9})
    assert "energy.pue.target" in str(err.value)


def test_simulated_history_is_what_the_job_makes_of_quarter_hour_readings(cfg, store):
    """energy.simulated_history writes the simulator's older quarters straight into the tier: the
    same kWh as the facility collector's readings every 15 minutes through the job (registers
    exactly; power-only loops within the readings' 0.2 % noise), and never over measured ones."""
    from collectors.facility import FacilityCollector
    from collectors.targets import Target
    from queries import Store
    from simulator import Floor

    floor = Floor(cfg)
    start = datetime(2026, 11, 20, tzinfo=UTC)
    col = FacilityCollector(cfg)
    target = Target(url="sim://facility", source="sim-facility", kind="facility", site="sh-lingang",
                    cluster="train-a", host=None)
    for k in range(3 * 4 + 1):
        at = start + timedelta(minutes=15 * k)
        text = floor.facility_text("sh-lingang", at.timestamp())
        store.write_scrape(facility=col.from_text(text, target, at).facility)
    energy.build(store, cfg, start + timedelta(days=1))
    measured = store.query("energy_quarters", lo=start, hi=start + timedelta(hours=3), site=None)
    other = Store(":memory:")
    assert energy.simulated_history(other, cfg, floor, start, start + timedelta(hours=3)) == len(measured)
    made = other.query("energy_quarters", lo=start, hi=start + timedelta(hours=3), site=None)
    a, b = measured.set_index(["meter", "quarter"]), made.set_index(["meter", "quarter"])
    for meter in {m.meter for m in cfg.energy.meters}:
        got, want = b.loc[meter, "kwh"].to_numpy(), a.loc[meter, "kwh"].to_numpy()
        if meter.startswith("chw"):         # power only: the printed readings carry +-0.2 % noise
            assert got == pytest.approx(want, rel=5e-3), meter
        else:                               # registers, printed to 0.001 kWh: a delta within 0.001
            assert got == pytest.approx(want, abs=1.001e-3), meter
    assert (made["samples"] == 0).all() and (made["covered_s"] == 900).all()
    # measured quarters are kept: nothing written over them
    assert energy.simulated_history(store, cfg, floor, start, start + timedelta(hours=3)) == 0
    other.close()


def test_the_history_job_walks_back_a_chunk_at_a_time_until_done(store, monkeypatch):
    from helpers import config_dict

    d = config_dict()
    d["simulator"] = {**d["simulator"], "backfill_days": 1.0}
    d["capacity"] = {"simulated_history_days": 3}
    monkeypatch.setattr(energy, "HISTORY_CHUNK", timedelta(hours=20))     # several chunks over the two days
    cfg = config.from_dict(d)

    class Runner:
        def __init__(self):
            self.jobs = {}

        def add(self, name, schedule, fn):
            self.jobs[name] = fn
    r = Runner()
    energy.add_jobs(r, store, cfg)
    assert set(r.jobs) == {"energy", "energy-history"}
    now = datetime(2026, 11, 20, 0, 7, 30, tzinfo=UTC)      # off a quarter: the chunks still meet on one
    first = r.jobs["energy-history"](now)                 # 1 day back to 1 day 20 h back
    assert first.rows == 20 * 4 * 3            # no energy.toml here: the classic three meters
    while r.jobs["energy-history"](now).detail != "done":
        pass
    now = datetime(2026, 11, 20, tzinfo=UTC)
    q = store.query("energy_quarters", lo=now - timedelta(days=3), hi=now, site=None)
    assert q["quarter"].min() == pd.Timestamp(now - timedelta(days=3)) and q["quarter"].max() < pd.Timestamp(
        now - timedelta(days=1))
    # every quarter of the two days, no seam between chunks
    assert q["quarter"].nunique() == 2 * 96


def test_without_an_it_meter_it_is_estimated_and_says_so(store):
    # only a facility meter: 150 kWh/h; boards 80 kWh/h on c1 (2 GPUs a node) over 7,200 GPU-s an
    # hour = 1 node-hour at 1,000 W: IT = 80 + 1 = 81 kWh/h, PUE 150 / 81, category none
    cfg = make(meters=[{"site": "s1", "meter": "fac", "scope": "facility"}], halls=[], loops=[])
    write(store, readings("fac", "facility", T0, 120, kwh_per_min=150 / 60))
    energy.build(store, cfg, NOW)
    import pyarrow as pa

    from queries.catalogue import arrow_schema
    rows = [dict(bucket=T0 + timedelta(hours=h), site="s1", cluster="c1", model="H100-SXM", tenant="acme",
                 devices=2, samples=480, observed_s=7200.0, available_s=7200.0, allocated_s=7200.0, busy_s=7200.0,
                 useful_s=0.0, useful_basis=None, alloc_idle_s=0.0, util_s=0.0, util_obs_s=0.0, tflop_s=0.0,
                 energy_j=80 * 3.6e6) for h in range(2)]
    store.insert("rollup_group_1h", pa.Table.from_pylist(rows, schema=arrow_schema("rollup_group_1h")))
    (row,) = energy.pue_table(store, cfg, view(hours=2), now=NOW).records()
    assert row["it_estimated"] is True and row["category"] is None
    assert row["it_kwh"] == pytest.approx(162.0) and row["pue"] == pytest.approx(round(300 / 162, 4))


def test_green_share_by_the_site_local_month():
    cfg = make(green=[{"site": "s1", "month": "2026-12", "share_pct": 50.0},
                      {"site": "s1", "month": "2026-11", "kwh": 250.0}])
    # 2026-11-30T17:00Z is 2026-12-01 01:00 in Shanghai: December's share
    assert energy.green_share(cfg, "s1", datetime(2026, 11, 30, 17, tzinfo=UTC)) == 0.5
    # green kWh: a share of the month's facility energy (250 of 1,000), none without it
    assert energy.green_share(cfg, "s1", "2026-11", month_kwh=1000.0) == 0.25
    assert energy.green_share(cfg, "s1", "2026-11") == 0.0
