"""The billing page (AppTest) in both languages, driven by its URL: the month's bills, a tenant's
lines and voucher caps, issuing from the page, the reconciliation and quotas; and quota_watch,
the near/over-quota list the tenants page draws.

The page runs through a small script that builds a PageContext over a seeded file (as
tests/test_history_pages.py does); the config travels as JSON, its dates as ISO text.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from queries import Store
from queries.catalogue import arrow_schema
from helpers import history_centre, run_script, table_with

UTC = timezone.utc
H100 = "H100-SXM"


def centre(db: str) -> dict:
    d = history_centre(database={"path": db})
    d["billing"] = {
        "prices": [{"model": H100, "effective": "2026-01-01", "per_gpu_hour": 20.0, "per_gpu_month": 60_000.0}],
        "contracts": [
            {"id": "L1", "tenant": "acme", "kind": "lease", "model": H100, "gpus": 8, "start": "2026-11-10",
             "end": "2027-11-10"},
            {"id": "U1", "tenant": "idle-co", "kind": "usage", "model": H100, "committed_gpus": 1,
             "start": "2026-01-01", "end": "2027-01-01"}],
        "programmes": [{"id": "sz", "name": "Suzhou compute vouchers", "name_zh": "苏州算力券", "rate": 0.2,
                        "enterprise_year_cap": 2_000_000.0}],
        "enrolments": [{"tenant": "acme", "programmes": ["sz"]}],
        "quotas": [{"tenant": "idle-co", "cluster": "c1", "gpus": 2}, {"tenant": "acme", "gpus": 8}],
    }
    return d


def _page_script(db: str, centre_json: str, module: str, writable: bool, tenant: str | None) -> None:
    import importlib
    import json
    import re
    from datetime import date

    import streamlit as st

    import config
    from pages.context import PageContext
    from queries import Store
    from queries.scope import EVERYTHING, Scope

    def dates(v):
        if isinstance(v, dict):
            return {k: dates(x) for k, x in v.items()}
        if isinstance(v, list):
            return [dates(x) for x in v]
        if isinstance(v, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
            return date.fromisoformat(v)
        return v

    @st.cache_resource
    def store(path: str, writable: bool) -> Store:
        return Store(path, read_only=not writable)

    d = json.loads(centre_json)
    d["billing"] = dates(d["billing"])
    ctx = PageContext(cfg=config.from_dict(d), store=store(db, writable), lang=st.query_params.get("lang") or "en",
                      scope=EVERYTHING if tenant is None else Scope(role="tenant", tenant=tenant, who=tenant))
    if module == "quota_watch":
        from datetime import datetime, timedelta, timezone

        from pages.billing import quota_watch
        from queries.history import View

        start = datetime(2026, 11, 20, tzinfo=timezone.utc)
        quota_watch(ctx, View(start=start, end=start + timedelta(hours=4), tz="Asia/Shanghai"))
    else:
        importlib.import_module(module).page(ctx)


@pytest.fixture
def page_db(tmp_path):
    db = tmp_path / "billing.duckdb"
    store = Store(db)
    t0 = datetime(2026, 11, 20, tzinfo=UTC)                     # 08:00 in Shanghai
    rows = [dict(bucket=t0 + timedelta(hours=h), site="s1", cluster="c1", model=H100, tenant="idle-co", devices=3,
                 samples=1, observed_s=gpus * 3600, available_s=gpus * 3600, allocated_s=gpus * 3600, busy_s=0.0,
                 useful_s=0.0, useful_basis=None, alloc_idle_s=0.0, util_s=0.0, util_obs_s=0.0, tflop_s=0.0,
                 energy_j=0.0) for h, gpus in enumerate((1.0, 3.0, 2.0))]
    store.insert("rollup_group_1h", pa.Table.from_pylist(rows, schema=arrow_schema("rollup_group_1h")))
    store.close()
    return str(db), json.dumps(centre(str(db)), default=str)


def run(page_db, module: str = "pages.billing", *, writable: bool = False, as_tenant: str | None = None,
        **params) -> AppTest:
    db, centre_json = page_db
    return run_script(_page_script, (db, centre_json, module, writable, as_tenant), params)


WORDS = {
    "en": {"title": "Billing", "tenant": "Tenant", "net": "Net", "kind": "Item", "lease": "Lease", "draft": "Draft",
           "quota": "Quota status", "over": "Over", "recon": "Enterprise cap remaining"},
    "zh-CN": {"title": "账单", "tenant": "租户", "net": "净额", "kind": "项目", "lease": "租赁", "draft": "草稿",
              "quota": "配额状态", "over": "超出", "recon": "企业年度额度剩余"},
}


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_billing_page_shows_the_months_bills_in_both_languages(page_db, lang):
    w = WORDS[lang]
    at = run(page_db, lang=lang, month="2026-11", tenant="acme")
    assert at.title[0].value == w["title"]
    summary = table_with(at, w["net"])
    # acme: 8 GPUs x 504/720 x 60,000 = 336,000 less 20 % = 268,800; idle-co: 6 GPU-h used of 720
    # committed: 6 x 20 + 714 x 20 = 14,400
    assert dict(zip(summary[w["tenant"]], summary[w["net"]])) == {"Acme AI (acme)": "268,800.00",
                                                                  "Idle Co (idle-co)": "14,400.00"}
    assert set(summary[{"en": "Status", "zh-CN": "状态"}[lang]]) == {w["draft"]}
    lines = table_with(at, w["kind"])
    assert lines[w["kind"]].tolist()[0] == w["lease"]
    caps = table_with(at, w["recon"])
    assert caps[w["recon"]].tolist()[0] == "1,932,800.00"                  # 2,000,000 - 67,200
    quotas = table_with(at, w["quota"])
    assert w["over"] in quotas[w["quota"]].tolist()                       # idle-co peaked at 3 of 2 GPUs
    labels = [b.label for b in at.get("download_button")]
    assert len(labels) >= 8 and any("XLSX" in x for x in labels)
    assert at.selectbox(key="billing_month").value == "2026-11"


def test_issuing_from_the_page_freezes_the_month(page_db):
    at = run(page_db, writable=True, month="2026-11")
    at.button(key="billing_issue").click().run()
    assert not at.exception, [e.message for e in at.exception]
    summary = table_with(at, "Net")
    assert set(summary["Status"]) == {"Issued"}
    assert any("Every bill of this month is issued" in s.value for s in at.success)


def test_issuing_on_a_read_only_store_says_why(page_db):
    at = run(page_db, month="2026-11")
    at.button(key="billing_issue").click().run()
    assert any("read-only" in e.value for e in at.error)


def test_the_page_keeps_its_url_values_on_their_lists(page_db):
    at = run(page_db, month="<script>", tenant="nobody", programme="zz", period="1999")
    assert at.selectbox(key="billing_month").value != "<script>"
    assert at.selectbox(key="billing_tenant").value == "acme"
    assert at.selectbox(key="billing_programme").value == "all"


def test_reconciliation_for_the_year_and_one_programme(page_db):
    at = run(page_db, month="2026-11", period="2026", programme="sz")
    table = table_with(at, "Enterprise cap used (year)")
    assert table["Subsidy"].tolist() == ["67,200.00"]


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_quota_watch_lists_tenants_near_or_over(page_db, lang):
    at = run(page_db, "quota_watch", lang=lang)
    table = table_with(at, WORDS[lang]["quota"])
    assert table[WORDS[lang]["tenant"]].tolist() == ["Idle Co (idle-co)"]
    assert table[WORDS[lang]["quota"]].tolist() == [WORDS[lang]["over"]]


def test_a_signed_in_tenant_sees_its_own_bill_and_cannot_issue(page_db):
    at = run(page_db, as_tenant="idle-co", month="2026-11", tenant="acme")
    summary = table_with(at, "Net")
    assert summary["Tenant"].tolist() == ["Idle Co (idle-co)"]
    assert not at.button
    assert "Budget used (year)" not in [c for df in at.dataframe for c in df.value.columns]


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_the_page_renders_with_no_billing_configured(tmp_path, lang):
    db = tmp_path / "empty.duckdb"
    Store(db).close()
    d = history_centre(database={"path": str(db)})
    d["billing"] = {}
    at = AppTest.from_function(_page_script, args=(str(db), json.dumps(d), "pages.billing", False, None),
                               default_timeout=60)
    at.query_params["lang"] = lang
    at.run()
    assert not at.exception and not at.error
    assert at.title[0].value == WORDS[lang]["title"]
    assert any(s.value == {"en": "No tenant has a contract or a bill in this month.",
                           "zh-CN": "本月没有租户有合同或账单。"}[lang] for s in at.info)
