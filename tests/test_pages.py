"""Every page renders from app.py (streamlit.testing AppTest) on a seeded store, in both languages."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import config
import i18n
from collectors.dcgm import DcgmCollector
from collectors.scheduler import Scheduler
from collectors.targets import ScrapeError
from pages import ui
from queries import Store
from helpers import A, B, FakeFloor, config_dict, config_dir, dcgm_text, table_with, text_b

PAGES = [p.script for p in ui.NAV]         # every page of the navigation, the default (live) first
assert PAGES[0] == "pages/live.py"


@pytest.fixture
def seeded(tmp_path, monkeypatch, cfg):
    db = tmp_path / "seed.duckdb"
    cdir = config_dir(tmp_path / "config", database={**config_dict()["database"], "path": str(db)})
    store = Store(db)
    floor = FakeFloor()
    sched = Scheduler(store, [(DcgmCollector(cfg, fetch=floor.fetch), [A, B])], interval_s=15)
    store.register_targets([A.as_row(), B.as_row()])
    now = datetime.now(timezone.utc)
    floor.responses[A.url] = dcgm_text(xid=(0, 48))
    floor.responses[B.url] = text_b()
    sched.run_cycle(now - timedelta(seconds=30))
    floor.responses[A.url] = dcgm_text(xid=(0, 48), throttle=(0x40, 0))
    # as fetch raises it: the message as a key
    floor.responses[B.url] = ScrapeError(i18n.msg("msg.http_status", code=503, reason="Service Unavailable"))
    sched.run_cycle(now - timedelta(seconds=15))
    sched.pool.shutdown()
    store.close()
    monkeypatch.setenv(config.ENV_VAR, str(cdir))
    st.cache_resource.clear()
    yield db
    st.cache_resource.clear()


def run_page(page: str, lang: str = "en") -> AppTest:
    at = AppTest.from_file(str(config.PROJECT_ROOT / "app.py"), default_timeout=30)
    at.query_params["lang"] = lang
    at.run()
    if page != PAGES[0]:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def metric_values(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_live_page_shows_fleet_and_problems(seeded):
    at = run_page("pages/live.py")
    assert at.title[0].value == "Live fleet"
    m = metric_values(at)
    assert m["GPUs owned"] == "512"           # the inventory in config; 4 have reported
    assert m["Faulted"] == "1"               # A1 carries XID 48
    assert m["No data"] == "508"             # B failed 15 s ago but its data is 30 s old, not stale yet
    problems = table_with(at, "Problem")
    kinds = set(problems["Problem"])
    assert {"XID error", "Thermal throttling", "Exporter not answering"} <= kinds
    detail = " ".join(problems["Detail"])
    assert "XID 48: Double-bit ECC error" in detail and "HTTP 503 Service Unavailable" in detail
    assert len(at.get("plotly_chart")) >= 1
    models = table_with(at, "Model")
    assert len(models) == 1
    row = models.iloc[0]
    assert (row["Vendor"], row["Model"], row["Clusters"]) == ("NVIDIA", "NVIDIA H100 80GB HBM3", "infer-b, train-a")
    # A0 thermal (still healthy), A1 XID 48 (faulted), B0/B1 healthy; util 87 on A0 and B0
    assert (row["Boards"], row["Healthy"], row["Busy"], row["Faulted"], row["No data"]) == (4, 3, 2, 1, 0)
    assert row["Power (kW)"] == "1.2"             # 300.5 + 301.5 W on each node


def test_live_page_in_chinese(seeded):
    at = run_page("pages/live.py", "zh-CN")
    assert at.title[0].value == "实时机群"
    assert metric_values(at)["GPU 总数"] == "512"
    assert "XID 错误" in set(table_with(at, "问题")["问题"])
    assert table_with(at, "厂商").iloc[0]["厂商"] == "英伟达"


def test_sources_page_lists_every_target_with_errors(seeded):
    at = run_page("pages/sources.py")
    assert at.title[0].value == "Sources"
    m = metric_values(at)
    assert (m["Targets"], m["Answering"], m["Failing"]) == ("2", "1", "1")
    table = table_with(at, "Target")
    row_b = table[table["Target"] == B.url].iloc[0]
    assert row_b["Status"] == "Failing" and row_b["Last error"].startswith("HTTP 503 Service Unavailable")
    row_a = table[table["Target"] == A.url].iloc[0]
    assert row_a["Status"] == "OK" and row_a["Rows"] == "2"


def test_collector_errors_read_in_chinese(seeded):
    """The stored error is English (logs, CSV); the Chinese pages show it in Chinese."""
    at = run_page("pages/sources.py", "zh-CN")
    table = table_with(at, "目标地址")
    row_b = table[table["目标地址"] == B.url].iloc[0]
    assert row_b["最近错误"].startswith("HTTP 错误 503 Service Unavailable"), row_b["最近错误"]
    live = run_page("pages/live.py", "zh-CN")
    detail = " ".join(table_with(live, "问题")["详情"])
    assert "HTTP 错误 503 Service Unavailable" in detail and "HTTP 503 Service" not in detail


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_every_page_renders_on_an_empty_store(tmp_path, monkeypatch, page, lang):
    base = config_dict()
    cdir = config_dir(tmp_path / "config", database={**base["database"], "path": str(tmp_path / "e.duckdb")})
    monkeypatch.setenv(config.ENV_VAR, str(cdir))
    st.cache_resource.clear()
    at = run_page(page, lang)
    assert at.title[0].value
    st.cache_resource.clear()


@pytest.fixture
def mixed_seeded(tmp_path, monkeypatch):
    """The mixed-fleet example centre after one live collection cycle from its simulator."""
    from collectors.runtime import Runtime
    from simulator import Floor
    from helpers import wait_for
    from helpers import calm_instant

    cdir = tmp_path / "mixed"
    cdir.mkdir()
    db = tmp_path / "mixed.duckdb"
    text = (config.PROJECT_ROOT / "config" / "examples" / "mixed-fleet" / "centre.toml").read_text()
    (cdir / "centre.toml").write_text(text.replace('path = "data/mixed-fleet.duckdb"', f'path = "{db}"'))
    cfg = config.load(cdir)
    store = Store(db)
    # an instant when every exporter answers (the simulator has outages; a calm one can be
    # over an hour away from now), and the page's clock pinned a few seconds after it
    at = calm_instant(Floor(cfg), datetime.now(timezone.utc).timestamp() - 600)
    monkeypatch.setattr(ui, "now", lambda: datetime.fromtimestamp(at + 5, timezone.utc))
    rt = Runtime(cfg, store, backfill=False, clock=lambda: at).start()
    try:
        assert wait_for(lambda: rt.scheduler.cycles >= 1, event=rt.scheduler.cycled), "no collection cycle"
    finally:
        rt.stop()
        store.close()
    monkeypatch.setenv(config.ENV_VAR, str(cdir))
    st.cache_resource.clear()
    yield db
    st.cache_resource.clear()


@pytest.mark.parametrize("lang, names", [
    ("en", {"NVIDIA": "NVIDIA H100 80GB HBM3", "AMD": "AMD Instinct MI300X OAM", "Huawei Ascend": "910B3-Ascend-V1"}),
    ("zh-CN", {"英伟达": "NVIDIA H100 80GB HBM3", "AMD": "AMD Instinct MI300X OAM", "华为昇腾": "910B3-Ascend-V1"}),
])
def test_live_page_shows_a_mixed_fleet_by_vendor_and_model(mixed_seeded, lang, names):
    at = run_page("pages/live.py", lang)
    vendor, model, boards = ("Vendor", "Model", "Boards") if lang == "en" else ("厂商", "型号", "卡数")
    table = table_with(at, vendor)
    assert dict(zip(table[vendor], table[model])) == names
    assert dict(zip(table[model], table[boards])) == {"NVIDIA H100 80GB HBM3": 128, "AMD Instinct MI300X OAM": 32,
                                                      "910B3-Ascend-V1": 32}
    owned = "GPUs owned" if lang == "en" else "GPU 总数"
    assert metric_values(at)[owned] == "192"


@pytest.fixture
def status_only(tmp_path, monkeypatch, cfg):
    """A fresh file with what an owner wrote (targets, runs, job runs, its status) and no runtime
    in this process: the Sources page must show it all from the database."""
    from collectors.jobs import Every

    db = tmp_path / "status.duckdb"
    cdir = config_dir(tmp_path / "config", database={**config_dict()["database"], "path": str(db)})
    store = Store(db, owner=("sh-lingang", "collector-1"))
    floor = FakeFloor()
    sched = Scheduler(store, [(DcgmCollector(cfg, fetch=floor.fetch), [A, B])], interval_s=15, sleep=lambda s: None)
    store.register_targets([A.as_row(), B.as_row()])
    now = datetime.now(timezone.utc)
    floor.responses[A.url] = dcgm_text()
    floor.responses[B.url] = ScrapeError(i18n.msg("msg.refused"))
    sched.run_cycle(now - timedelta(seconds=15))
    sched.pool.shutdown()
    store.put_status("collector", {
        "running": True, "simulated": False, "targets": 2, "cycles": 7,
        "last_cycle": {"targets": 2, "ok": 1, "failed": 1, "skipped": 0, "rows": 2, "stored": 2,
                       "scrape_s": 0.123, "write_s": 0.045, "write_error": None},
        "spool": {"pending_batches": 3, "pending_rows": 1234, "disk_bytes": 3 * 2**20,
                  "dropped_batches": 0, "dropped_rows": 0}})
    store.put_status("backfill", {"state": "running", "done": 30, "total": 120, "error": None})
    store.put_status("jobs", {"jobs": [
        {"job": "reopen", "schedule": i18n.dumps([Every(3 * 3600).describe()]),
         "next_run": "2030-01-01T03:00:00+00:00"},
        {"job": "nightly-rollup", "schedule": None, "next_run": None}]})
    store.record_job_run(job="reopen", started_at=now - timedelta(minutes=5), duration_s=0.42, ok=True, rows=1)
    store.record_job_run(job="nightly-rollup", started_at=now - timedelta(minutes=1), duration_s=1.5, ok=False,
                         rows=0, error="no answer within 5 s", error_msg=i18n.dumps([i18n.msg("msg.timeout", s="5")]))
    store.close()
    monkeypatch.setenv(config.ENV_VAR, str(cdir))
    st.cache_resource.clear()
    yield db
    st.cache_resource.clear()


def test_sources_page_reads_the_collector_status_and_jobs_from_the_database(status_only):
    at = run_page("pages/sources.py")
    m = metric_values(at)
    assert (m["Targets"], m["Answering"], m["Failing"]) == ("2", "1", "1")
    assert m["History back-fill"] == "25%"                   # 30 of 120 steps
    captions = " ".join(c.value for c in at.caption)
    assert "Last cycle: 2 targets, 1 answered, 1 failed, 2 device rows; scrape 0.12 s, store 0.04 s." in captions
    assert any("3 batch(es), 1,234 samples (3.0 MiB spilled to disk)" in w.value for w in at.warning)
    jobs = table_with(at, "Job").set_index("Job")
    reopen, rollup = jobs.loc["Reopen the database"], jobs.loc["nightly-rollup"]   # a job with no name key: as is
    assert (reopen["Schedule"], reopen["Result"], reopen["Duration"], reopen["Rows"]) == (
        "every 3 h", "OK", "0.42 s", "1")
    assert reopen["Next run"] == "2030-01-01 03:00:00 UTC" and reopen["Last error"] == ""
    assert (rollup["Result"], rollup["Failures (24 h)"], rollup["Last error"]) == (
        "Failed", "1", "no answer within 5 s")
    row_b = table_with(at, "Target").set_index("Target").loc[B.url]
    assert row_b["Last error"].startswith("connection refused (is the exporter running?) (")


def test_stored_message_keys_read_in_chinese(status_only):
    s = Store(status_only, read_only=True)
    try:
        stored = s.con.execute("SELECT error_msg FROM collector_runs WHERE target = ? ORDER BY started_at DESC "
                               "LIMIT 1", [B.url]).fetchone()[0]
    finally:
        s.close()
    assert i18n.loads(stored) == [i18n.msg("msg.refused")]      # the key itself, not English to be matched
    st.cache_resource.clear()
    at = run_page("pages/sources.py", "zh-CN")
    row_b = table_with(at, "目标地址").set_index("目标地址").loc[B.url]
    assert row_b["最近错误"].startswith("连接被拒绝（导出器是否在运行？）"), row_b["最近错误"]
    jobs = table_with(at, "任务").set_index("任务")
    assert jobs.loc["重新打开数据库"]["计划"] == "每 3 h"
    assert jobs.loc["nightly-rollup"]["最近错误"] == "5 秒内无应答"
    assert metric_values(at)["历史数据回填"] == "25%"


# ---- issue 11: health and quarantine shown, no traceback ever, labels are text -----------------------


def test_sources_page_names_the_health_reasons_and_each_quarantined_batch(status_only):
    from collectors.runtime import reason

    s = Store(status_only, owner=("sh-lingang", "collector-1"))
    folder = "/srv/zhisuan/data/spool/quarantine/batch-00000001795132800000000000-0badf00d"
    s.put_status("collector", {
        "running": True, "status": "degraded", "targets": 2, "cycles": 9,
        "reasons": [reason("quarantined", i18n.msg("health.quarantined", n=1, file=folder, why="rows is missing")),
                    reason("targets_empty", i18n.msg("health.targets_empty", n=3))],
        "spool": {"pending_batches": 0, "quarantined_batches": 1, "quarantined_rows": 512,
                  "quarantined": [{"file": folder, "reason": "batch-1/rows is missing", "at": 1795132800.0}]}})
    s.close()
    at = run_page("pages/sources.py")
    # the health reasons the page shows nowhere else; the quarantine has its own section
    [health] = [w.value for w in at.warning if w.value.startswith("Collection runs, but needs attention:")]
    assert health.endswith("- 3 target(s) answer but give no rows, cycle after cycle") and folder not in health
    assert any("1 spooled batch(es) could not be read back" in e.value and "512 samples" in e.value
               for e in at.error)
    q = table_with(at, "Why").iloc[0]
    assert (q["Folder"], q["Why"], q["Moved"]) == (folder, "batch-1/rows is missing", "2026-11-20 00:00:00 UTC")
    st.cache_resource.clear()
    zh = run_page("pages/sources.py", "zh-CN")
    assert any(w.value.startswith("采集在运行，但需要处理：") and "连续多个周期没有产生数据行" in w.value
               for w in zh.warning)
    assert any("移入隔离目录" in e.value for e in zh.error)


def test_a_failing_page_shows_the_error_in_words_not_a_traceback(seeded, monkeypatch):
    real = Store.query

    def broken(self, name, **params):
        if name == "sources":
            raise RuntimeError("Binder Error: something the query did not expect")
        return real(self, name, **params)

    monkeypatch.setattr(Store, "query", broken)
    at = run_page("pages/sources.py")                    # run_page asserts no exception reached Streamlit
    assert [e.value for e in at.error] == [
        "This part of the page could not be drawn: RuntimeError: Binder Error: something the query did not expect."
        " The details are in the server log."]
    assert at.title[0].value == "Sources"                 # the rest of the page is drawn


def test_a_meter_file_that_breaks_the_import_is_a_plain_message(seeded, monkeypatch):
    import _csv

    import collectors.meter_csv

    def boom(*_a, **_k):
        raise _csv.Error("field larger than field limit (131072)")

    from pages import context

    monkeypatch.setattr(collectors.meter_csv, "parse_readings", boom)
    owner = Store(seeded)                                  # as in the server: the page writes through the owner's store
    monkeypatch.setattr(context, "owner_store", lambda: owner)
    at = run_page("pages/sources.py")
    at.file_uploader[0].set_value(("meters.csv", b"meter,period_start,period_end,kwh\n", "text/csv"))
    at.run()
    at.button(key="meter_import").click()
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(e.value.startswith("The file could not be imported: Error: field larger than field limit (131072).")
               for e in at.error)
    owner.close()


def test_a_label_in_a_figure_is_text_never_a_link():
    import json

    import pandas as pd

    from pages.live import heatmap_figure

    evil = '<a href="http://x">h</a>'
    df = pd.DataFrame([{"host": evil, "gpu_index": 0, "util_pct": 50.0, "temp_c": 60.0, "power_w": 300.0,
                        "state": "xid", "tenant": evil, "namespace": None, "model": evil}])
    fig = heatmap_figure(df, "util", lambda key, **kw: i18n.t(key, "en", **kw))
    doc = json.dumps(json.loads(fig.to_json()), ensure_ascii=False)   # plotly's JSON writes < as \u003c
    assert "<a" not in doc and "&lt;a href=&quot;http://x&quot;&gt;h&lt;/a&gt;" in doc


def test_two_exporters_claiming_one_device_are_a_problem_on_the_live_page(seeded, cfg):
    s = Store(seeded)
    now = datetime.now(timezone.utc)
    sched = Scheduler(s, [(DcgmCollector(cfg, fetch=lambda u, to: dcgm_text()), [A, B])], interval_s=15)
    sched.run_cycle(now - timedelta(seconds=5))            # B now serves A's text: GPU-0000 and GPU-0001 twice
    sched.pool.shutdown()
    s.close()
    at = run_page("pages/live.py")
    problems = table_with(at, "Problem")
    twice = problems[problems["Problem"] == "Device id claimed twice"]
    assert len(twice) == 2
    assert all(A.url in d and B.url in d and d.startswith("two exporters report device GPU-000")
               for d in twice["Detail"])


def test_a_database_that_cannot_be_opened_is_a_message_on_the_page(seeded, monkeypatch):
    """Damaged, unusable or owned: whichever way the file cannot be opened, the page says it in words."""
    from pages import context
    from queries import DatabaseDamaged

    def damaged(_cfg):
        raise DatabaseDamaged(f"{seeded} is damaged (a bad checksum): move it aside and restore a copy")

    monkeypatch.setattr(context, "page_store", damaged)
    at = AppTest.from_file(str(config.PROJECT_ROOT / "app.py"), default_timeout=30)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.error[0].value == (f"The database cannot be read now: {seeded} is damaged (a bad checksum): "
                                 "move it aside and restore a copy")


def test_an_exporter_that_answers_with_nothing_is_named_so_in_the_problems(seeded, cfg):
    from collectors.scheduler import EMPTY_CYCLES

    s = Store(seeded)
    now = datetime.now(timezone.utc)
    sched = Scheduler(s, [(DcgmCollector(cfg, fetch=lambda u, to: "# HELP nothing\n"), [A])], interval_s=15)
    for i in range(EMPTY_CYCLES):                          # A answers with no rows 3 times in a row
        sched.run_cycle(now - timedelta(seconds=10 - i))
    sched.pool.shutdown()
    s.close()
    at = run_page("pages/live.py")
    problems = table_with(at, "Problem")
    [empty] = problems[problems["Problem"] == "Exporter gives no data"]["Detail"]
    assert "answered but gave no rows (3 cycle(s) in a row)" in empty
    st.cache_resource.clear()
    zh = run_page("pages/live.py", "zh-CN")
    assert "导出器无数据" in set(table_with(zh, "问题")["问题"])


def test_sources_page_shows_the_history_tiers_and_imports(status_only):
    """The rollup's tiers and a Prometheus source's history import, as the owner published them."""
    s = Store(status_only, owner=("sh-lingang", "collector-1"))
    try:
        s.put_status("rollups", {"state": "catching_up", "dirty_hours": 30, "behind_s": 5400.0, "tiers": {
            "rollup_device_1h": {"span": ["2026-11-01T00:00:00+00:00", "2026-11-20T07:00:00+00:00"],
                                 "rows": 23_456, "bytes": 3 * 2**20}}})
        s.put_status("history_imports", {"imports": [
            {"source": "central-prom", "state": "failed", "done": 120, "total": 720, "samples": 1_234_567,
             "rate": 180_843, "error": str(i18n.msg("msg.timeout", s="5")),
             "error_msg": i18n.dumps([i18n.msg("msg.timeout", s="5")])}]})
    finally:
        s.close()
    st.cache_resource.clear()
    at = run_page("pages/sources.py")
    assert any("30 hour(s) wait to be built, the oldest 1.5 h behind" in i.value for i in at.info)
    tier = table_with(at, "Tier").iloc[0]
    assert (tier["Tier"], tier["Rows"], tier["Size (MiB)"]) == ("Per GPU, hourly", "23,456", "3.0")
    assert tier["First bucket"] == "2026-11-01 00:00:00 UTC"
    imp = table_with(at, "Hours of history").iloc[0]
    assert (imp["Source"], imp["State"], imp["Hours of history"], imp["Samples"]) == (
        "central-prom", "Failed", "120 of 720", "1,234,567")
    assert imp["Error"] == "no answer within 5 s"
    st.cache_resource.clear()
    zh = run_page("pages/sources.py", "zh-CN")
    assert table_with(zh, "历史小时数").iloc[0]["错误"] == "5 秒内无应答"
    assert table_with(zh, "层级").iloc[0]["层级"] == "按 GPU，每小时"
