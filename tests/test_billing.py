"""Bills, vouchers, issuing and quotas (queries/billing.py, queries/quotas.py) against hand-computed
figures, the arithmetic beside each; the config's checks; the XLSX read back; the API route.

Usage is written straight into rollup_group_1h (the rollup job's output, by hand): `gpu_hours` of
allocated time at noon (Shanghai) of a day. The site is Asia/Shanghai (no daylight saving), so a
30-day month has 720 hours.
"""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta, timezone

import openpyxl
import pandas as pd
import pyarrow as pa
import pytest

import config
from queries import Store, billing, quotas
from queries.catalogue import arrow_schema
from queries.history import ParamError, View
from queries.scope import Scope
from helpers import history_centre

UTC = timezone.utc
NOW = datetime(2026, 12, 2, 3, tzinfo=UTC)          # 2 December 2026, 11:00 in Shanghai
H100 = "H100-SXM"
LIST = [{"model": H100, "effective": date(2026, 1, 1), "per_gpu_hour": 20.0, "per_gpu_month": 60_000.0}]


def make(billing_section: dict, **tables) -> config.Config:
    d = history_centre(**tables)
    d["billing"] = {"prices": LIST, **billing_section}
    return config.from_dict(d)


def lease(cid: str, tenant: str, gpus: int, start: date, end: date, **kw) -> dict:
    return {"id": cid, "tenant": tenant, "kind": "lease", "model": H100, "gpus": gpus, "start": start, "end": end,
            **kw}


def usage_contract(cid: str, tenant: str, start: date, end: date, **kw) -> dict:
    return {"id": cid, "tenant": tenant, "kind": "usage", "model": H100, "start": start, "end": end, **kw}


def add_usage(store: Store, tenant: str, day: date, gpu_hours: float, *, hour: int = 12, cluster: str = "c1") -> None:
    """`gpu_hours` of allocated time in the UTC hour that starts at `hour`:00 Shanghai time on `day`."""
    bucket = datetime(day.year, day.month, day.day, hour, tzinfo=UTC) - timedelta(hours=8)
    row = dict(bucket=bucket, site="s1", cluster=cluster, model=H100, tenant=tenant, devices=1, samples=1,
               observed_s=gpu_hours * 3600, available_s=gpu_hours * 3600, allocated_s=gpu_hours * 3600,
               busy_s=0.0, useful_s=0.0, useful_basis=None, alloc_idle_s=0.0, util_s=0.0, util_obs_s=0.0,
               tflop_s=0.0, energy_j=0.0)
    store.insert("rollup_group_1h", pa.Table.from_pylist([row], schema=arrow_schema("rollup_group_1h")))


@pytest.fixture
def store():
    s = Store(":memory:")
    yield s
    s.close()


def kinds(b: billing.Bills, tenant: str) -> list[tuple]:
    return [(r["kind"], None if pd.isna(r["quantity"]) else r["quantity"], r["amount"])
            for r in b.tenant_lines(tenant).to_dict("records")]


def row(b: billing.Bills, tenant: str) -> dict:
    rows = b.summary[b.summary["tenant"] == tenant].to_dict("records")
    assert len(rows) == 1, b.summary
    return rows[0]


# ---- charges --------------------------------------------------------------------------------

def test_a_lease_starting_on_the_tenth_of_a_30_day_month_is_pro_rated_by_the_hour(store):
    cfg = make({"contracts": [lease("L1", "acme", 8, date(2026, 11, 10), date(2027, 11, 10))]})
    b = billing.bills(store, cfg, "2026-11", now=NOW)
    # 10..30 November: 21 days = 504 h of the month's 720 h; 8 GPUs x 504/720 = 5.6 GPU-months x 60,000
    assert kinds(b, "acme") == [("lease", 5.6, 336_000.0)]
    line = b.tenant_lines("acme").iloc[0]
    assert line["period_start"] == datetime(2026, 11, 9, 16, tzinfo=UTC)       # 10 Nov 00:00 in Shanghai
    assert line["period_end"] == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert row(b, "acme")["net"] == 336_000.0
    # December is in progress at NOW (2 Dec 11:00 local = 35 h of 744): 8 x 35/744 x 60,000 = 22,580.645...
    dec = billing.bills(store, cfg, "2026-12", now=NOW)
    assert kinds(dec, "acme") == [("lease", round(8 * 35 / 744, 6), 22_580.65)]


def test_a_lease_of_hosts_and_devices_counts_their_gpus(store):
    # c1's nodes have 2 GPUs, c2's 4: hosts n1-001 and n2-001 plus one device = 2 + 4 + 1 = 7 GPUs
    c = {"id": "L1", "tenant": "acme", "kind": "lease", "model": H100, "hosts": ["n1-001", "n2-001"],
         "devices": ["GPU-x"], "start": date(2026, 1, 1), "end": date(2027, 1, 1)}
    b = billing.bills(store, make({"contracts": [c]}), "2026-11", now=NOW)
    assert kinds(b, "acme") == [("lease", 7.0, 420_000.0)]             # 7 x 60,000
    with pytest.raises(config.ConfigError, match=r"hosts\[0\]': host 'zz-001' is in no cluster"):
        make({"contracts": [{**c, "hosts": ["zz-001"]}]})


def test_a_usage_contract_with_an_underused_commitment_bills_the_shortfall(store):
    cfg = make({"contracts": [usage_contract("U1", "acme", date(2026, 1, 1), date(2027, 1, 1), committed_gpus=4)]})
    for day in range(1, 11):
        add_usage(store, "acme", date(2026, 11, day), 100.0)           # 10 days x 100 GPU-h = 1,000 GPU-h
    add_usage(store, "_unattributed", date(2026, 11, 3), 50.0)          # nobody's: never billed
    b = billing.bills(store, cfg, "2026-11", now=NOW)
    # committed 4 GPUs x 720 h = 2,880 GPU-h; used 1,000 at 20 = 20,000; unused 1,880 x 20 = 37,600
    assert kinds(b, "acme") == [("usage", 1000.0, 20_000.0), ("shortfall", 1880.0, 37_600.0)]
    assert row(b, "acme")["gross"] == 57_600.0
    assert list(b.summary["tenant"]) == ["acme"]


def test_usage_beyond_the_commitment_is_overage_at_its_own_price(store):
    cfg = make({"contracts": [usage_contract("U1", "acme", date(2026, 1, 1), date(2027, 1, 1), committed_gpus=1,
                                             overage_per_gpu_hour=30.0)]})
    for day in range(1, 31):
        add_usage(store, "acme", date(2026, 11, day), 30.0)            # 900 GPU-h
    b = billing.bills(store, cfg, "2026-11", now=NOW)
    # committed 1 x 720 = 720 GPU-h at 20 = 14,400; 180 over at 30 = 5,400
    assert kinds(b, "acme") == [("usage", 720.0, 14_400.0), ("overage", 180.0, 5_400.0)]


def test_a_price_change_applies_from_its_date(store):
    prices = LIST + [{"model": H100, "effective": date(2026, 11, 16), "per_gpu_hour": 15.0, "per_gpu_month": 45_000.0}]
    cfg = make({"prices": prices, "contracts": [usage_contract("U1", "acme", date(2026, 1, 1), date(2027, 1, 1)),
                                                lease("L1", "idle-co", 2, date(2026, 1, 1), date(2027, 1, 1))]})
    add_usage(store, "acme", date(2026, 11, 15), 10.0, hour=23)        # 15 Nov 23:00 local: the old price
    add_usage(store, "acme", date(2026, 11, 16), 10.0, hour=0)         # 16 Nov 00:00 local: the new one
    b = billing.bills(store, cfg, "2026-11", now=NOW)
    assert kinds(b, "acme") == [("usage", 10.0, 200.0), ("usage", 10.0, 150.0)]
    # 2 GPUs: 15 days at 60,000 (2 x 360/720 x 60,000 = 60,000) + 15 days at 45,000 (45,000)
    assert kinds(b, "idle-co") == [("lease", 1.0, 60_000.0), ("lease", 1.0, 45_000.0)]


def test_energy_is_passed_through_or_surcharged_per_kwh(store):
    cfg = make({"contracts": [lease("L1", "acme", 1, date(2026, 1, 1), date(2027, 1, 1), energy="pass_through"),
                              lease("L2", "idle-co", 1, date(2026, 1, 1), date(2027, 1, 1), energy="surcharge",
                                    energy_per_kwh=0.25)]})
    asked = []

    def energy(start, end):
        asked.append((start, end))
        return pd.DataFrame({"tenant": ["acme", "idle-co"], "it_kwh": [900.0, 400.0], "overhead_kwh": [100.0, 100.0],
                             "facility_kwh": [1000.0, 500.0], "cost_cny": [812.5, 400.0], "demand_cny": [87.5, 50.0],
                             "carbon_kg": [570.0, 285.0]})

    b = billing.bills(store, cfg, "2026-11", now=NOW, energy=energy)
    # at cost: 812.5 by time of use + 87.5 of the demand charge
    assert kinds(b, "acme") == [("lease", 1.0, 60_000.0), ("energy", 1000.0, 900.0)]
    assert kinds(b, "idle-co") == [("lease", 1.0, 60_000.0), ("energy", 500.0, 125.0)]      # 500 kWh x 0.25
    assert b.tenant_lines("acme").iloc[1]["unit_price"] == 0.9                               # 900 / 1000 kWh
    # November's span alone: the months before it are computed for the caps, but their energy
    # changes nothing here unless a programme pays on energy
    nov = (datetime(2026, 10, 31, 16, tzinfo=UTC), datetime(2026, 11, 30, 16, tzinfo=UTC))
    assert asked == [nov]
    paying = make({"contracts": [lease("L1", "acme", 1, date(2026, 1, 1), date(2027, 1, 1), energy="pass_through")],
                   "programmes": [{**SZ, "lines": ["lease", "energy"]}],
                   "enrolments": [{"tenant": "acme", "programmes": ["sz"]}]})
    asked.clear()
    b = billing.bills(store, paying, "2026-11", now=NOW, energy=energy)
    assert len(asked) == 11 and asked[-1] == nov                        # the lease: January to November 2026
    assert b.claims.iloc[0]["base"] == 60_900.0                         # 60,000 + 900 of energy


# ---- vouchers -------------------------------------------------------------------------------

SZ = {"id": "sz", "name": "Suzhou compute vouchers", "name_zh": "苏州算力券", "rate": 0.2,
      "enterprise_year_cap": 2_000_000.0}


def test_a_yearly_cap_reached_mid_year_pays_exactly_what_remains(store):
    # 50 GPUs x 60,000 = 3,000,000 a month; 20 % = 600,000 a month within 2,000,000 a year
    cfg = make({"contracts": [lease("L1", "acme", 50, date(2026, 1, 1), date(2027, 1, 1))],
                "programmes": [SZ], "enrolments": [{"tenant": "acme", "programmes": ["sz"]}]})
    subsidy = {m: row(billing.bills(store, cfg, m, now=NOW), "acme")["subsidy"]
               for m in ("2026-01", "2026-02", "2026-03", "2026-04", "2026-05")}
    # fees to date pass 10 M in April (9 M after March, 12 M after April): 2,000,000 - 3 x 600,000 = 200,000
    assert subsidy == {"2026-01": 600_000.0, "2026-02": 600_000.0, "2026-03": 600_000.0, "2026-04": 200_000.0,
                       "2026-05": 0.0}
    april = billing.bills(store, cfg, "2026-04", now=NOW)
    claim = april.claims.iloc[0]
    assert (claim["base"], claim["subsidy"], claim["capped_by"]) == (3_000_000.0, 200_000.0, "enterprise_year")
    assert (claim["enterprise_year_used"], claim["enterprise_year_remaining"]) == (2_000_000.0, 0.0)
    assert row(april, "acme")["net"] == 2_800_000.0
    # a new calendar year starts the cap again (the lease runs to 2027-01-01: January has no fees)
    assert billing.bills(store, cfg, "2027-01", now=datetime(2027, 2, 2, tzinfo=UTC)).summary.empty


def test_two_programmes_apply_in_the_configured_order(store):
    sh = {"id": "sh", "name": "Shanghai", "rate": 0.2}
    other = {"id": "tenth", "name": "Ten per cent", "rate": 0.1}
    contracts = [lease("L1", "acme", 1, date(2026, 1, 1), date(2027, 1, 1)),
                 lease("L2", "idle-co", 1, date(2026, 1, 1), date(2027, 1, 1))]
    cfg = make({"contracts": contracts, "programmes": [sh, other],
                "enrolments": [{"tenant": "acme", "programmes": ["sh", "tenth"]},
                               {"tenant": "idle-co", "programmes": ["tenth", "sh"]}]})
    b = billing.bills(store, cfg, "2026-11", now=NOW)
    # acme: 20 % of 60,000 = 12,000, then 10 % of the 48,000 left = 4,800; net 43,200
    assert [(r["programme"], r["base"], -r["amount"]) for r in b.tenant_lines("acme").to_dict("records")
            if r["kind"] == "voucher"] == [("sh", 60_000.0, 12_000.0), ("tenth", 48_000.0, 4_800.0)]
    assert (row(b, "acme")["subsidy_sh"], row(b, "acme")["subsidy_tenth"], row(b, "acme")["net"]) == (
        12_000.0, 4_800.0, 43_200.0)
    # idle-co the other way round: 10 % = 6,000, then 20 % of 54,000 = 10,800; net 43,200 - 0 = 43,200
    assert (row(b, "idle-co")["subsidy_tenth"], row(b, "idle-co")["subsidy_sh"]) == (6_000.0, 10_800.0)


def test_a_contract_signed_before_the_eligibility_date_gets_nothing(store):
    city = {"id": "city", "name": "City plan", "rate": 0.2, "signed_from": date(2023, 9, 1), "max_term_months": 12}
    cfg = make({"contracts": [lease("OLD", "acme", 1, date(2026, 1, 1), date(2027, 1, 1), signed=date(2023, 8, 15)),
                              lease("NEW", "idle-co", 1, date(2026, 1, 1), date(2027, 1, 1), signed=date(2023, 9, 1)),
                              lease("LONG", "idle-co", 1, date(2026, 1, 1), date(2027, 6, 1))],
                "programmes": [city],
                "enrolments": [{"tenant": "acme", "programmes": ["city"]},
                               {"tenant": "idle-co", "programmes": ["city"]}]})
    b = billing.bills(store, cfg, "2026-11", now=NOW)
    assert row(b, "acme")["subsidy"] == 0.0                             # signed 2023-08-15: before 2023-09-01
    # NEW: signed on the date, one year: 20 % of 60,000; LONG: 17 months, beyond the 12-month term
    assert [(r["contract"], r["subsidy"]) for r in b.claims.to_dict("records")] == [("NEW", 12_000.0)]


def test_flags_decide_eligibility(store):
    sme = {"id": "sme", "name": "SME plan", "rate": 0.1, "flags": ["sme"]}
    cfg = make({"contracts": [lease("L1", "acme", 1, date(2026, 1, 1), date(2027, 1, 1)),
                              lease("L2", "idle-co", 1, date(2026, 1, 1), date(2027, 1, 1))],
                "programmes": [sme], "enrolments": [{"tenant": "acme", "flags": ["sme"], "programmes": ["sme"]},
                                                    {"tenant": "idle-co", "programmes": ["sme"]}]})
    b = billing.bills(store, cfg, "2026-11", now=NOW)
    assert (row(b, "acme")["subsidy"], row(b, "idle-co")["subsidy"]) == (6_000.0, 0.0)


def test_a_programme_of_one_claim_per_contract_pays_once(store):
    once = {"id": "once", "name": "One claim", "rate": 0.2, "base": "contract", "claims": "once",
            "per_claim_cap": 50_000.0}
    cfg = make({"contracts": [lease("L1", "acme", 1, date(2026, 9, 1), date(2027, 9, 1), amount=720_000.0)],
                "programmes": [once], "enrolments": [{"tenant": "acme", "programmes": ["once"]}]})
    subsidy = {m: row(billing.bills(store, cfg, m, now=NOW), "acme")["subsidy"]
               for m in ("2026-09", "2026-10", "2026-11")}
    # 20 % of the contract amount 720,000 = 144,000, cut to the per-claim cap 50,000; claimed once
    assert subsidy == {"2026-09": 50_000.0, "2026-10": 0.0, "2026-11": 0.0}
    sept = billing.bills(store, cfg, "2026-09", now=NOW).claims.iloc[0]
    assert (sept["base"], sept["capped_by"]) == (720_000.0, "per_claim")
    # issued, the claim still counts when the sequence no longer reaches back to it
    billing.issue_month(store, cfg, "2026-09", "finance", now=NOW)
    later = datetime(2028, 2, 2, tzinfo=UTC)
    assert row(billing.bills(store, cfg, "2027-08", now=later), "acme")["subsidy"] == 0.0


def test_a_programme_budget_is_first_come_first_served(store):
    small = {"id": "small", "name": "Small budget", "rate": 0.5, "budget_year": 50_000.0}
    cfg = make({"contracts": [lease("L1", "acme", 1, date(2026, 11, 1), date(2027, 1, 1)),
                              lease("L2", "idle-co", 1, date(2026, 11, 1), date(2027, 1, 1))],
                "programmes": [small], "enrolments": [{"tenant": "acme", "programmes": ["small"]},
                                                      {"tenant": "idle-co", "programmes": ["small"]}]})
    b = billing.bills(store, cfg, "2026-11", now=NOW)
    # acme (first by id) 50 % of 60,000 = 30,000; idle-co gets the 20,000 left of the 50,000 budget
    assert (row(b, "acme")["subsidy"], row(b, "idle-co")["subsidy"]) == (30_000.0, 20_000.0)
    assert b.claims["budget_year_remaining"].tolist() == [0.0, 0.0]
    # a tenant's own view: its own bill, and no budget figures (they tell what others claimed)
    mine = billing.bills(store, cfg, "2026-11", now=NOW, scope=Scope(role="tenant", tenant="idle-co"), tenant="acme")
    assert list(mine.summary["tenant"]) == ["idle-co"] and set(mine.lines["tenant"]) == {"idle-co"}
    assert row(mine, "idle-co")["subsidy"] == 20_000.0
    assert "budget_year_used" not in [c.name for c in billing.claims_table(mine).columns]


# ---- issuing --------------------------------------------------------------------------------

def test_a_late_sample_after_issue_is_an_adjustment_and_the_issued_bill_stays(store):
    cfg = make({"contracts": [usage_contract("U1", "acme", date(2026, 1, 1), date(2027, 1, 1))],
                "programmes": [SZ], "enrolments": [{"tenant": "acme", "programmes": ["sz"]}]})
    add_usage(store, "acme", date(2026, 10, 5), 100.0)
    assert billing.issue_month(store, cfg, "2026-10", "finance", now=NOW) == ["acme"]
    oct_issued = billing.bills(store, cfg, "2026-10", now=NOW)
    # 100 GPU-h x 20 = 2,000; 20 % = 400; net 1,600
    assert (row(oct_issued, "acme")["status"], row(oct_issued, "acme")["net"]) == ("issued", 1_600.0)
    add_usage(store, "acme", date(2026, 10, 20), 10.0)                  # arrives after the issue
    again = billing.bills(store, cfg, "2026-10", now=NOW)
    assert kinds(again, "acme") == kinds(oct_issued, "acme") == [("usage", 100.0, 2_000.0),
                                                                 ("voucher", None, -400.0)]
    # 10 GPU-h x 20 = 200 more, 40 more subsidy: 160 more to pay
    assert (row(again, "acme")["net"], row(again, "acme")["difference"]) == (1_600.0, 160.0)
    nov = billing.bills(store, cfg, "2026-11", now=NOW)
    adj = [(r["kind"], r["ref_month"], None if pd.isna(r["programme"]) else r["programme"], r["amount"])
           for r in nov.tenant_lines("acme").to_dict("records") if r["kind"] in ("adjustment", "voucher_adjustment")]
    assert adj == [("adjustment", "2026-10", None, 200.0), ("voucher_adjustment", "2026-10", "sz", -40.0)]
    assert row(nov, "acme")["net"] == 160.0                              # November's own usage: none
    billing.issue_month(store, cfg, "2026-11", "finance", now=NOW)
    assert row(billing.bills(store, cfg, "2026-10", now=NOW), "acme")["difference"] == 0.0
    dec = billing.bills(store, cfg, "2026-12", now=NOW)
    assert not [r for r in dec.tenant_lines("acme").to_dict("records") if r["kind"] == "adjustment"]
    # the year's claims count the adjustment: 400 + 40
    assert dec.summary.empty or row(dec, "acme")["subsidy"] == 0.0
    recon = billing.reconciliation(store, cfg, "2026", programme="sz", now=NOW).records()
    assert [(r["month"], r["subsidy"], r["status"]) for r in recon] == [("2026-10", 400.0, "issued")]


def test_issuing_is_refused_for_an_open_month_and_recorded_in_the_audit(store):
    cfg = make({"contracts": [lease("L1", "acme", 1, date(2026, 1, 1), date(2027, 1, 1))]})
    with pytest.raises(billing.BillingError, match="2026-12 is not over"):
        billing.issue_month(store, cfg, "2026-12", "finance", now=NOW)
    for role, tenant in (("tenant", "acme"), ("noc", None), ("planner", None)):
        with pytest.raises(billing.BillingError, match="managers and admins"):
            billing.issue_month(store, cfg, "2026-11", Scope(role=role, tenant=tenant, who="x"), now=NOW)
    issued = billing.issue_month(store, cfg, "2026-11", Scope(role="manager", who="li.wei"), now=NOW)
    assert issued == ["acme"]
    assert billing.issue_month(store, cfg, "2026-11", "finance", now=NOW) == []       # issued once
    with store.cursor() as cur:
        who, action, target = cur.execute("SELECT who, action, target FROM audit_log").fetchone()
        stored = cur.execute("SELECT rules FROM bill_rules").fetchone()[0]
        issued_by = cur.execute("SELECT issued_by, net FROM bill_issues").fetchone()
    assert (who, action, target) == ("li.wei", "bill_issue", "2026-11")
    assert '"L1"' in stored and issued_by == ("li.wei", 60_000.0)
    # a changed price list is a new rules version; the issued bill keeps its own
    changed = make({"prices": [{**LIST[0], "per_gpu_month": 70_000.0}],
                    "contracts": [lease("L1", "acme", 1, date(2026, 1, 1), date(2027, 1, 1))]})
    assert billing.rules_version(changed) != billing.rules_version(cfg)
    b = billing.bills(store, changed, "2026-11", now=NOW)
    assert (row(b, "acme")["net"], row(b, "acme")["difference"]) == (60_000.0, 10_000.0)
    assert row(b, "acme")["rules_version"] == billing.rules_version(cfg)


def test_issuing_on_a_read_only_store_is_refused(tmp_path):
    path = tmp_path / "b.duckdb"
    Store(path).close()
    ro = Store(path, read_only=True)
    cfg = make({"contracts": [lease("L1", "acme", 1, date(2026, 1, 1), date(2027, 1, 1))]})
    with pytest.raises(billing.BillingError, match="read-only"):
        billing.issue_month(ro, cfg, "2026-11", "finance", now=NOW)
    ro.close()


# ---- tables, downloads, API ---------------------------------------------------------------

def two_tenants(store) -> config.Config:
    return make({"contracts": [lease("L1", "acme", 8, date(2026, 11, 10), date(2027, 11, 10)),
                               usage_contract("U1", "idle-co", date(2026, 1, 1), date(2027, 1, 1), committed_gpus=4)],
                 "programmes": [SZ], "enrolments": [{"tenant": "acme", "programmes": ["sz"]}]})


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_the_workbook_reads_back_in_both_languages(store, lang):
    cfg = two_tenants(store)
    data = billing.bills_xlsx(store, cfg, "2026-11", lang, now=NOW)
    book = openpyxl.load_workbook(io.BytesIO(data))
    names = {"en": ["Summary", "Line items", "Vouchers"], "zh-CN": ["汇总", "明细", "算力券"]}[lang]
    assert book.sheetnames == names
    summary = list(book[names[0]].iter_rows(min_row=3, values_only=True))
    header = summary[0]
    net = header.index({"en": "Net", "zh-CN": "净额"}[lang])
    sub = header.index({"en": "Subsidy: Suzhou compute vouchers", "zh-CN": "补贴：苏州算力券"}[lang])
    tenant = header.index({"en": "Tenant", "zh-CN": "租户"}[lang])
    rows = {r[tenant]: r for r in summary[1:]}
    # acme: 336,000 - 20 % = 268,800; idle-co: the shortfall 2,880 GPU-h x 20 = 57,600, no voucher
    assert rows["Acme AI (acme)"][net] == 268_800.0 and rows["Acme AI (acme)"][sub] == 67_200.0
    assert rows["Idle Co (idle-co)"][net] == 57_600.0
    lines = list(book[names[1]].iter_rows(min_row=4, values_only=True))
    assert {"en": "Lease", "zh-CN": "租赁"}[lang] in [r[2] for r in lines]


def test_people_csv_and_tables_in_chinese(store):
    cfg = two_tenants(store)
    b = billing.bills(store, cfg, "2026-11", now=NOW)
    people = billing.bill_table(b).for_people("zh-CN")
    assert list(people.columns[:4]) == ["租户", "状态", "币种", "应收"]
    assert people.iloc[0]["应收"] == "336,000.00" and people.iloc[0]["状态"] == "草稿"
    text = billing.bill_table(b).to_people_csv("zh-CN").decode("utf-8-sig")
    assert text.splitlines()[0].startswith("租户,状态,币种,应收,补贴：苏州算力券")
    assert "268800.0" in text                                            # numbers stay numbers
    machine = billing.bill_table(b).to_json()
    assert [c["name"] for c in machine["columns"]][:4] == ["tenant", "status", "currency", "gross"]


def test_the_bills_route_answers_json_and_csv_and_checks_its_parameters(store):
    from api import billing as api

    cfg = two_tenants(store)
    paths = [p for p, _, _ in api.ROUTES]
    assert "/api/v1/bills" in paths and "/api/v1/vouchers" in paths
    build = dict((p, b) for p, _, b in api.ROUTES)["/api/v1/bills"]
    table, fmt = build(store, cfg, {"month": "2026-11"}, NOW, Scope())
    assert fmt == "json" and [r["net"] for r in table.to_json()["rows"]] == [268_800.0, 57_600.0]
    table, fmt = build(store, cfg, {"month": "2026-11", "tenant": "idle-co", "format": "csv"}, NOW, Scope())
    assert fmt == "csv" and table.to_csv().splitlines()[1].startswith("idle-co,draft,CNY,57600.0")
    lines, _ = build(store, cfg, {"month": "2026-11", "lines": "true"}, NOW, Scope())
    assert [r["kind"] for r in lines.to_json()["rows"]] == ["lease", "voucher", "usage", "shortfall"]
    # a tenant's token sees its own bill whatever it asks for
    mine, _ = build(store, cfg, {"month": "2026-11", "tenant": "acme"}, NOW, Scope(role="tenant", tenant="idle-co"))
    assert [r["tenant"] for r in mine.to_json()["rows"]] == ["idle-co"]
    for params, bad in (({"month": "2026-13"}, "month"), ({}, "month"), ({"month": "2026-11", "tenant": "nobody"},
                                                                         "tenant"),
                        ({"month": "2026-11", "format": "xml"}, "format"), ({"month": "2026-11", "x": "1"}, "x")):
        with pytest.raises(ParamError) as err:
            build(store, cfg, params, NOW, Scope())
        assert err.value.param == bad
    vouchers = dict((p, b) for p, _, b in api.ROUTES)["/api/v1/vouchers"]
    table, _ = vouchers(store, cfg, {"period": "2026-11", "programme": "sz"}, NOW, Scope())
    assert [(r["tenant"], r["subsidy"], r["enterprise_year_remaining"]) for r in table.to_json()["rows"]] == [
        ("acme", 67_200.0, 1_932_800.0)]
    with pytest.raises(ParamError) as err:
        vouchers(store, cfg, {"period": "soon"}, NOW, Scope())
    assert err.value.param == "period"


# ---- quotas ---------------------------------------------------------------------------------

def test_quotas_hand_computed(store):
    cfg = make({"quotas": [{"tenant": "acme", "cluster": "c1", "gpus": 2},
                           {"tenant": "idle-co", "gpus": 4}], "quota_near_pct": 75})
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    for h, gpus in enumerate((1.0, 3.0, 2.0)):                          # acme on c1: 1, 3, 2 GPUs
        add_usage(store, "acme", date(2026, 11, 20), gpus, hour=8 + h)
    add_usage(store, "idle-co", date(2026, 11, 20), 3.0, hour=8)        # 3 of 4 GPUs in one hour
    v = View(start=t0, end=t0 + timedelta(hours=4), tz="Asia/Shanghai")
    table = quotas.quota_table(store, cfg, v, NOW)
    acme, idle = table.records()
    # 4 hours: acme 1, 3, 2, 0 GPUs against 2: mean 1.5, peak 3 (150 %), 1 hour over by 1 GPU-h,
    # idle under quota 1 + 0 + 0 + 2 = 3 GPU-h
    assert (acme["mean_gpus"], acme["peak_gpus"], acme["peak_share_pct"], acme["hours_over"],
            acme["over_gpu_hours"], acme["idle_under_gpu_hours"], acme["status"]) == (1.5, 3.0, 150.0, 1, 1.0, 3.0,
                                                                                        "over")
    # idle-co: 3, 0, 0, 0 against 4: peak 75 % is near (at least 75 %); idle 1 + 4 + 4 + 4 = 13 GPU-h
    assert (idle["peak_gpus"], idle["status"], idle["idle_under_gpu_hours"]) == (3.0, "near", 13.0)
    watch = quotas.watch_table(store, cfg, v, NOW).records()
    assert [r["tenant"] for r in watch] == ["acme", "idle-co"]
    mine = quotas.quota_table(store, cfg, v, NOW, scope=Scope(role="tenant", tenant="idle-co")).records()
    assert [r["tenant"] for r in mine] == ["idle-co"]
    series = quotas.quota_series(store, cfg, v, NOW, cfg.billing.quotas[0]).records()
    assert [r["gpus"] for r in series] == [1.0, 3.0, 2.0, 0.0]
    assert quotas.quota_table(store, cfg, v, NOW).for_people("zh-CN").iloc[0]["配额状态"] == "超出"


# ---- config ---------------------------------------------------------------------------------

def test_bad_billing_config_names_file_key_and_what_was_expected():
    with pytest.raises(config.ConfigError) as err:
        make({"contracts": [lease("L1", "nobody", 1, date(2026, 1, 1), date(2025, 1, 1)),
                            usage_contract("L1", "acme", date(2026, 1, 1), date(2027, 1, 1), model="H100-SXM",
                                           gpus=3),
                            {**lease("L3", "acme", 1, date(2026, 1, 1), date(2027, 1, 1)), "model": "A100"}],
              "programmes": [{"id": "p", "name": "P", "rate": 0.2, "base": "contract"}],
              "enrolments": [{"tenant": "acme", "programmes": ["p", "q"]}],
              "quotas": [{"tenant": "acme", "cluster": "c9", "gpus": 1}]})
    text = str(err.value)
    for expected in ("key 'billing.contracts[0].tenant': unknown tenant 'nobody'",
                     "key 'billing.contracts[0].end': must be after start",
                     "key 'billing.contracts[1].id': duplicate id 'L1'",
                     "key 'billing.contracts[1].gpus': is a lease's key",
                     "key 'billing.contracts[2].per_gpu_month': no lease price for A100",
                     "key 'billing.programmes[0].claims'",
                     "key 'billing.contracts[1].amount': programme 'p' pays on the contract amount",
                     "key 'billing.enrolments[0].programmes[1]': unknown programme 'q'",
                     "key 'billing.quotas[0].cluster': unknown cluster 'c9'"):
        assert expected in text, (expected, text)
    with pytest.raises(config.ConfigError, match=r"billing.programmes\[0\].rate"):
        make({"programmes": [{"id": "p", "name": "P", "rate": 1.5}]})
    with pytest.raises(config.ConfigError, match=r"billing.contracts\[0\].start': Input should be a valid date"):
        make({"contracts": [lease("L1", "acme", 1, "2026-01-01", date(2027, 1, 1))]})


def test_the_simulated_centres_billing_file_is_valid_and_bills_every_tenant(cfg):
    b = cfg.billing
    assert len(b.programmes) == 2 and b.contracts and b.quotas
    assert {c.tenant for c in b.contracts} == {t.id for t in cfg.tenants}
    store = Store(":memory:")
    try:
        bills = billing.bills(store, cfg, "2026-11", now=NOW, energy=lambda s, e: None)
        assert set(bills.summary["tenant"]) == {t.id for t in cfg.tenants}
        # with no usage yet: leases and commitments are billed, pay-as-you-go is 0
        gross = dict(zip(bills.summary["tenant"], bills.summary["gross"]))
        assert gross["bioforge"] == 0.0 and gross["moonlake"] == 64 * 9200.0
        assert (bills.summary["subsidy"] > 0).any()
    finally:
        store.close()


def test_energy_comes_from_the_energy_module_when_none_is_given(store):
    cfg = make({"contracts": [lease("L1", "acme", 1, date(2026, 1, 1), date(2027, 1, 1), energy="pass_through")]})
    b = billing.bills(store, cfg, "2026-11", now=NOW)
    assert billing.energy_available() and not b.energy_missing
    assert kinds(b, "acme") == [("lease", 1.0, 60_000.0), ("energy", 0.0, 0.0)]           # no meter, no energy


def test_a_bad_month_is_a_parameter_error(store):
    cfg = make({})
    for bad in ("2026-13", "26-11", "", "2026-1"):
        with pytest.raises(ParamError) as err:
            billing.bills(store, cfg, bad, now=NOW)
        assert err.value.param == "month"


def test_the_bills_route_over_http(store):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    import api

    cfg = two_tenants(store)
    client = TestClient(Starlette(routes=api.routes(lambda: store, cfg, clock=lambda: NOW)),
                        raise_server_exceptions=False)
    r = client.get("/api/v1/bills", params={"month": "2026-11"})
    assert r.status_code == 200
    assert [(row["tenant"], row["net"]) for row in r.json()["rows"]] == [("acme", 268_800.0), ("idle-co", 57_600.0)]
    r = client.get("/api/v1/bills", params={"month": "2026-11", "tenant": "acme", "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines()[1].startswith("acme,draft,CNY,336000.0,67200.0,67200.0,0.0,268800.0")
    r = client.get("/api/v1/bills", params={"month": "November"})
    assert r.status_code == 400 and r.json()["parameter"] == "month"
    r = client.get("/api/v1/vouchers", params={"period": "2026"})
    # the year so far: November's claim and December's, a draft of the month in progress
    assert r.status_code == 200
    assert [(row["month"], row["status"]) for row in r.json()["rows"]] == [("2026-11", "draft"), ("2026-12", "draft")]
