"""The monthly report (issue 17): figures against hand-computed numbers on a tiny seeded history,
incidents and meter gaps, a tenant's statement, the archive and its versions, the job on a fake
clock, the shell command, configuration, and the reports page (AppTest) in both languages.

The simulated centre's whole last month, both languages and formats, read back against the API,
is tests/test_reports_simulated.py (it back-fills a month of the simulator first).

The tiny seed (helpers.seed_history): c1's two GPUs over three hours from 2026-11-20T00:00Z
(Asia/Shanghai), c2's four GPUs never reporting: the month 2026-11 has 6 GPUs x 720 h owned.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import openpyxl
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

import config
from collectors.jobs import JobRunner
from queries import Store, rollup
from queries.catalogue import arrow_schema
from queries.scope import Scope
from reports import archive, data, jobs
from helpers import HISTORY_T0, config_dir, history_centre, seed_history, wait_for

T0 = datetime.fromtimestamp(HISTORY_T0, timezone.utc)          # 2026-11-20T00:00Z
NOW = datetime(2026, 12, 2, tzinfo=timezone.utc)
MONTH = "2026-11"
ROOT = Path(__file__).resolve().parent.parent
NO_BROWSER = "/nonexistent/chromium"


def centre(tmp_path: Path, **reports) -> dict:
    return history_centre(reports={"archive_dir": str(tmp_path / "archive"), "chromium": NO_BROWSER, **reports})


def seeded(store: Store, cfg: config.Config) -> None:
    """The tiny history with the tiers the rollup job derives from the seeded ones (the device
    tenants, the tenant and cluster tiers)."""
    seed_history(store)
    rollup.attribute_devices(store, cfg)
    rollup.fill_tenants(store)


def insert_group_hours(store: Store, rows: list[dict]) -> None:
    """Hours written straight into the hourly group tier, and the tiers derived from it rebuilt
    (as the rollup job builds them together)."""
    store.insert("rollup_group_1h", pa.Table.from_pylist(rows, schema=arrow_schema("rollup_group_1h")))
    rollup.fill_tenants(store)


@pytest.fixture
def hist(tmp_path):
    cfg = config.from_dict(centre(tmp_path))
    store = Store(":memory:")
    seeded(store, cfg)
    yield cfg, store
    store.close()


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    src = tmp_path / "r.pdf"
    src.write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-layout", str(src), "-"], capture_output=True, check=True)
    return out.stdout.decode("utf-8")


def figure(report: data.Report, key: str) -> dict:
    rows = [r for r in report.headline.table.records() if r["figure"] == key]
    assert len(rows) == 1, key
    return rows[0]


def group_row(bucket: datetime, **sums) -> dict:
    row = dict(bucket=bucket, site="s1", cluster="c1", model="H100-SXM", tenant="acme", devices=1, samples=240,
               observed_s=0.0, available_s=0.0, allocated_s=0.0, busy_s=0.0, useful_s=0.0, useful_basis="tensor",
               alloc_idle_s=0.0, util_s=0.0, util_obs_s=0.0, tflop_s=0.0, energy_j=0.0)
    row.update(sums)
    return row


# ---- figures ------------------------------------------------------------------------------

def test_headline_is_hand_computed(hist):
    cfg, store = hist
    # October (744 hours, Shanghai): all 6 GPUs reported every hour at 50 % utilisation
    first = datetime(2026, 9, 30, 16, tzinfo=timezone.utc)
    october = [group_row(first + timedelta(hours=h), devices=6, observed_s=21600.0, available_s=21600.0,
                         allocated_s=21600.0, busy_s=21600.0, util_s=10800.0, util_obs_s=21600.0) for h in range(744)]
    insert_group_hours(store, october)
    report = data.gather(store, cfg, MONTH, NOW)
    assert (report.start, report.end) == (datetime(2026, 10, 31, 16, tzinfo=timezone.utc),
                                          datetime(2026, 11, 30, 16, tzinfo=timezone.utc))
    util = figure(report, "util_pct")
    assert util["value"] == 38.889                  # (2520 + 2880 + 0 + 900) / 16200 s, as the history page
    assert util["target"] == 60.0
    assert util["last_month"] == 50.0               # 1800 / 3600 s
    assert util["change_last_month"] == -11.111     # points: 38.889 - 50
    assert util["last_year"] is None                # November 2025: the history does not reach it
    assert figure(report, "available_share")["value"] == 0.104      # 4.5 GPU-h / (6 GPUs x 720 h) = 0.1042 %
    assert figure(report, "no_data_share")["value"] == 99.896       # (4320 - 4.5) / 4320
    assert figure(report, "installed_pflops")["value"] == 5.934     # 6 x 989 TFLOPS
    assert figure(report, "delivered_pflops")["value"] == 0.001     # 3600 s x 989 TFLOPS / 1000 / 2,592,000 s
    # of the history table's delivered PFLOPS (rounded there to 0.0014): 0.0014 / 5.934 = 0.0236 %
    assert figure(report, "effective_ratio")["value"] == 0.024
    assert figure(report, "board_energy_kwh")["value"] == 1.5       # 5.4e6 J / 3.6e6
    assert figure(report, "gpu_hours_lost")["value"] == 0.0


def test_a_month_the_history_barely_reaches_is_no_comparison(hist):
    cfg, store = hist
    # October: one GPU-hour out of 6 GPUs x 744 h
    insert_group_hours(store, [group_row(
        datetime(2026, 10, 15, 4, tzinfo=timezone.utc), observed_s=3600.0, available_s=3600.0, util_s=1800.0,
        util_obs_s=3600.0)])
    report = data.gather(store, cfg, MONTH, NOW)
    assert figure(report, "util_pct")["last_month"] is None
    # 1 / 4464 GPU-hours = 0.02 %
    assert "No comparison with 2026-10: the history holds only 0.0 % of that month's GPU-hours." in [
        str(n) for n in report.notes]


def test_report_tables_are_the_history_tables(hist):
    cfg, store = hist
    report = data.gather(store, cfg, MONTH, NOW)
    util = report.section("utilisation")
    ladder = util.block("ladder").table.records()[0]
    assert (ladder["owned_gpu_hours"], ladder["observed_gpu_hours"], ladder["allocated_gpu_hours"]) == (4320.0, 4.5,
                                                                                                       3.5)
    daily = util.block("daily").table.records()
    assert len(daily) == 30                                           # the days of November, site-local
    assert [d for d in daily if d["observed_gpu_hours"]][0]["bucket"] == "2026-11-20T00:00:00+08:00"
    reclaim = util.block("reclaim_tenants").table.records()
    assert reclaim[0]["tenant"] == "acme" and reclaim[0]["idle_allocated_gpu_hours"] == 1.0   # h0: 2 x half an hour
    assert reclaim[0]["idle_cost_cny"] == 12.5                        # 1 GPU-h x 12.5 CNY
    usage = {r["tenant"]: r for r in report.section("tenants").block("usage").table.records()}
    assert usage["acme"]["allocated_gpu_hours"] == 3.0 and usage["_unattributed"]["allocated_gpu_hours"] == 0.5


def test_incidents_and_worst_hosts_count_gpu_hours_lost(hist):
    cfg, store = hist
    h5 = T0 + timedelta(hours=5)
    dev = dict(namespace=None, pod=None, job=None, job_user=None, samples=240, allocated_s=0.0, busy_s=0.0,
               useful_s=0.0, useful_basis=None, alloc_idle_s=0.0, util_s=0.0, util_obs_s=0.0, tflop_s=0.0,
               energy_j=0.0)
    # hour 5: g0 reported all hour but was healthy for half of it, an XID at 05:10
    store.insert("rollup_device_1h", pa.Table.from_pylist(
        [dict(bucket=h5, device_id="g0", observed_s=3600.0, available_s=1800.0, **dev)],
        schema=arrow_schema("rollup_device_1h")))
    ev = dict(site="s1", cluster="c1", host="n1-001", code=None, detail=None, source="t")
    store.insert("device_events", pa.Table.from_pylist([
        dict(ts=h5 + timedelta(minutes=10), device_id="g0", gpu_index=0, kind="xid", **{**ev, "code": 79}),
        # g1 off the bus from 06:00 to 09:30: 3.5 GPU-hours
        dict(ts=T0 + timedelta(hours=6), device_id="g1", gpu_index=1, kind="lost", **ev),
        dict(ts=T0 + timedelta(hours=9, minutes=30), device_id="g1", gpu_index=1, kind="back", **ev),
        # an event of December is not November's
        dict(ts=datetime(2026, 12, 1, 1, tzinfo=timezone.utc), device_id="g0", gpu_index=0, kind="xid",
             **{**ev, "code": 48}),
    ], schema=arrow_schema("device_events")))
    rel = data.gather(store, cfg, MONTH, NOW).section("reliability")
    inc = {r["kind"]: r for r in rel.block("incidents").table.records()}
    assert (inc["xid"]["events"], inc["xid"]["devices"], inc["xid"]["gpu_hours_lost"]) == (1, 1, 0.5)
    assert (inc["lost"]["events"], inc["lost"]["gpu_hours_lost"]) == (1, 3.5)
    assert inc["ecc"]["events"] == 0 and inc["ecc"]["gpu_hours_lost"] == 0.0
    hosts = rel.block("worst_hosts").table.records()
    assert hosts[0]["host"] == "n1-001"
    assert hosts[0]["unavailable_gpu_hours"] == 0.5                  # 3600 - 1800 s
    assert (hosts[0]["xid_events"], hosts[0]["lost_events"]) == (1, 1)
    report = data.gather(store, cfg, MONTH, NOW)
    assert figure(report, "gpu_hours_lost")["value"] == 4.0          # 0.5 + 3.5


def facility_rows(site: str, meter: str, start: datetime, end: datetime, skip: tuple[datetime, datetime]) -> list:
    rows, t, kwh = [], start, 1000.0
    while t < end:
        kwh += 25.0
        if not skip[0] <= t < skip[1]:
            rows.append(dict(ts=t, site=site, meter=meter, scope="facility", pue_category=None, power_w=100_000.0,
                             energy_kwh=kwh, source="meter"))
        t += timedelta(minutes=15)
    return rows


@pytest.mark.parametrize("lang, words", [
    ("en", "Meter grid-main at s1: no readings from 2026-11-10 02:00 to 2026-11-10 05:00 (3 h)."),
    ("zh-CN", "站点 s1 的电表 grid-main：2026-11-10 02:00 至 2026-11-10 05:00 无读数（3 小时）。"),
])
def test_a_month_with_a_meter_gap_states_the_gap(hist, tmp_path, lang, words):
    cfg, store = hist
    start, end = datetime(2026, 10, 31, 16, tzinfo=timezone.utc), datetime(2026, 11, 30, 16, tzinfo=timezone.utc)
    # 02:00 to 05:00 on 10 November in Shanghai
    gap = (datetime(2026, 11, 9, 18, tzinfo=timezone.utc), datetime(2026, 11, 9, 21, tzinfo=timezone.utc))
    store.insert("facility_samples", pa.Table.from_pylist(facility_rows("s1", "grid-main", start, end, gap),
                                                          schema=arrow_schema("facility_samples")))
    report, outs = archive.produce(store, cfg, MONTH, now=NOW, langs=[lang], formats=["pdf", "xlsx"])
    gaps = report.section("reliability").block("meter_gaps").table.records()
    assert [(g["meter"], g["hours"]) for g in gaps] == [("grid-main", 3)]
    assert gaps[0]["gap_start"] == "2026-11-10T02:00:00+08:00" and gaps[0]["gap_end"] == "2026-11-10T05:00:00+08:00"
    assert words in [n.render(lang) for n in report.notes]
    text = pdf_text(outs[0].content, tmp_path)
    assert words.replace(" ", "") in text.replace(" ", "").replace("\n", "")
    book = openpyxl.load_workbook(io.BytesIO(outs[1].content))
    cover = [c.value for c in book.worksheets[0]["A"] if c.value]
    assert words in cover


def test_a_month_not_over_is_refused(hist):
    cfg, store = hist
    with pytest.raises(data.ReportError, match="not over yet"):
        data.gather(store, cfg, "2026-12", NOW)
    with pytest.raises(data.ReportError, match="is not a month"):
        data.gather(store, cfg, "2026-13", NOW)


# ---- a tenant's statement --------------------------------------------------------------------

def test_a_tenant_gets_its_own_statement_and_no_centre_total(hist, tmp_path):
    cfg, store = hist
    scope = Scope(role="tenant", tenant="acme", who="alice")
    report, outs = archive.produce(store, cfg, MONTH, now=NOW, scope=scope, langs=["en"], formats=["pdf", "xlsx"])
    assert [s.key for s in report.sections] == ["statement"]
    assert {r["figure"] for r in report.headline.table.records()} == {
        "tenant_allocated", "tenant_busy", "tenant_util", "tenant_peak", "tenant_energy"}
    assert figure(report, "tenant_allocated")["value"] == 3.0          # 2 (h0) + 1 (h1)
    usage = report.section("statement").block("usage").table.records()
    assert [r["tenant"] for r in usage] == ["acme"]
    book = openpyxl.load_workbook(io.BytesIO(outs[1].content))
    cells = {str(c.value) for ws in book.worksheets for row in ws.iter_rows() for c in row if c.value is not None}
    assert not any("idle-co" in c for c in cells)                    # the other tenant
    assert not any("Installed" in c or "Owned" in c for c in cells)   # no fleet figure
    text = pdf_text(outs[0].content, tmp_path)
    assert "Tenant statement · acme" in text and "Idle Co" not in text
    with pytest.raises(ValueError, match="not archived"):
        archive.archive(store, cfg, outs, trigger="page", now=NOW)


# ---- without a browser; the archive ------------------------------------------------------------

def test_without_chromium_the_report_says_it_has_no_charts(hist, tmp_path):
    cfg, store = hist
    report, outs = archive.produce(store, cfg, MONTH, now=NOW, langs=["en"], formats=["pdf"])
    assert not report.charts and not outs[0].charts
    text = pdf_text(outs[0].content, tmp_path)
    assert f"Charts are left out: no browser at {NO_BROWSER}" in text
    assert "produced without charts" in text


def test_generating_a_month_again_keeps_the_earlier_version(hist, tmp_path):
    cfg, store = hist
    _, _, first = archive.generate(store, cfg, MONTH, trigger="cli", now=NOW, langs=["en"], formats=["xlsx"])
    _, _, second = archive.generate(store, cfg, MONTH, trigger="page", now=NOW + timedelta(hours=1), langs=["en"],
                                    formats=["xlsx"])
    assert [r["version"] for r in first + second] == [1, 2]
    listing = archive.listing(store, MONTH)
    assert list(listing["version"]) == [2, 1] and list(listing["trigger"]) == ["page", "cli"]
    for r in first + second:
        content = archive.read(cfg, r["path"])
        assert len(content) == r["bytes"]
        openpyxl.load_workbook(io.BytesIO(content))
    with pytest.raises(ValueError, match="not in the report archive"):
        archive.read(cfg, "../../etc/passwd")


# ---- the job -----------------------------------------------------------------------------

class Clock:
    def __init__(self, at: datetime):
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now

    def timer(self) -> float:
        return 0.0


def test_the_job_makes_last_months_report_on_the_first_at_its_hour(tmp_path):
    cfg = config.from_dict(centre(tmp_path, day=1, hour=6, minute=0, formats=["xlsx"]))
    store = Store(":memory:")
    seeded(store, cfg)
    # 1 December 06:00 in Shanghai is 30 November 22:00 UTC
    clock = Clock(datetime(2026, 11, 30, 21, 0, tzinfo=timezone.utc))
    runner = JobRunner(store, clock=clock, timer=clock.timer)
    jobs.add_jobs(runner, store, cfg)
    assert runner.jobs[jobs.JOB].due == datetime(2026, 11, 30, 22, 0, tzinfo=timezone.utc)
    clock.now = datetime(2026, 11, 30, 21, 59, tzinfo=timezone.utc).timestamp()
    assert runner.run_due() == []                                    # a minute early: nothing
    clock.now = datetime(2026, 11, 30, 22, 0, tzinfo=timezone.utc).timestamp()
    runner.start()
    try:
        assert wait_for(lambda: runner.jobs[jobs.JOB].last is not None, event=runner.ran), "the job did not run"
    finally:
        runner.stop()
    run = runner.jobs[jobs.JOB].last
    assert run is not None and run.ok, run
    assert run.rows == 2 and run.detail == "2026-11: 2 files, version 1"
    listing = archive.listing(store)
    assert sorted(zip(listing["month"], listing["lang"], listing["version"])) == [
        ("2026-11", "en", 1), ("2026-11", "zh-CN", 1)]
    assert runner.jobs[jobs.JOB].due == datetime(2026, 12, 31, 22, 0, tzinfo=timezone.utc)   # 1 January 06:00
    again = jobs.run(store, cfg, datetime(2026, 12, 5, tzinfo=timezone.utc))           # by hand: version 2
    assert again.detail == "2026-11: 2 files, version 2"
    assert len(archive.listing(store, MONTH)) == 4
    assert all((tmp_path / "archive" / p).exists() for p in archive.listing(store)["path"])
    store.close()


def test_schedule_false_registers_no_job(tmp_path):
    cfg = config.from_dict(centre(tmp_path, schedule=False))
    runner = JobRunner(Store(":memory:"))
    jobs.add_jobs(runner, runner.store, cfg)
    assert jobs.JOB not in runner.jobs


# ---- configuration -----------------------------------------------------------------------

@pytest.mark.parametrize("bad, words", [
    ({"day": 31}, "reports.day"),
    ({"hour": "6"}, "reports.hour"),
    ({"languages": ["en", "en"]}, "each value once"),
    ({"formats": ["docx"]}, "reports.formats"),
    ({"top_tenants": 0}, "reports.top_tenants"),
])
def test_bad_report_settings_are_named(tmp_path, bad, words):
    with pytest.raises(config.ConfigError, match=words.replace(".", r"\.")):
        config.from_dict(centre(tmp_path, **bad))


# ---- the shell command ---------------------------------------------------------------------

def _cli(cfg_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ZHISUAN_CONFIG": str(cfg_dir), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "reports", "generate", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def file_db(tmp_path):
    db = tmp_path / "centre.duckdb"
    d = centre(tmp_path)
    d["database"] = {"path": str(db)}
    cfg = config.from_dict(d)
    store = Store(db)
    seeded(store, cfg)
    store.close()
    return db, config_dir(tmp_path / "cfg", d)


def test_the_command_writes_a_months_files(file_db, tmp_path):
    _, cfg_dir = file_db
    out = tmp_path / "out"
    done = _cli(cfg_dir, "--month", MONTH, "--out", str(out), "--format", "xlsx")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["report-2026-11-en.xlsx", "report-2026-11-zh-CN.xlsx"]
    bad = _cli(cfg_dir, "--month", "2026-13", "--out", str(out))
    assert bad.returncode == 2 and "is not a month" in bad.stderr


def test_the_command_says_to_use_the_page_while_the_dashboard_owns_the_database(file_db, tmp_path):
    db, cfg_dir = file_db
    # a stand-in for the dashboard: its command line names app.py, as `streamlit run app.py` does
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            # stand-in for streamlit run app.py
            import sys
            sys.path.insert(0, {str(ROOT)!r})
            from queries import Store
            s = Store({str(db)!r})
            print("ready", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        done = _cli(cfg_dir, "--month", MONTH, "--out", str(tmp_path / "out"))
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    assert done.returncode == 3, done.stderr
    assert "in use by process" in done.stderr
    assert "open its Reports page, pick the month 2026-11" in done.stderr


# ---- the page ------------------------------------------------------------------------------

def _page_script(db: str, centre_json: str) -> None:
    import json
    from datetime import datetime, timezone

    import streamlit as st

    import config
    from pages import reports, ui
    from pages.context import PageContext
    from queries import Store

    @st.cache_resource
    def store(path: str) -> Store:
        return Store(path)

    ctx = PageContext(cfg=config.from_dict(json.loads(centre_json)), store=store(db),
                      lang=st.query_params.get("lang") or "en")
    real_now = ui.now
    ui.now = lambda: datetime(2026, 12, 2, tzinfo=timezone.utc)     # this run's clock; put back after it
    try:
        reports.page(ctx)
    finally:
        ui.now = real_now


@pytest.mark.parametrize("lang, title, generate", [("en", "Monthly reports", "Generate PDF and XLSX"),
                                                   ("zh-CN", "月度报告", "生成 PDF 和 XLSX")])
def test_reports_page_previews_generates_and_archives(file_db, tmp_path, lang, title, generate):
    db, cfg_dir = file_db
    d = centre(tmp_path, formats=["xlsx"])
    d["database"] = {"path": str(db)}
    at = AppTest.from_function(_page_script, args=(str(db), json.dumps(d)), default_timeout=120)
    at.query_params["lang"] = lang
    at.query_params["month"] = MONTH
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.title[0].value == title
    headline = at.dataframe[0].value
    assert headline.iloc[0, 1] == "38.89"                           # average utilisation, as the PDF prints it
    button = next(b for b in at.button if b.label == generate)
    button.click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("download_button")) >= 2                      # the new XLSX and an archived file
    archived = at.dataframe[-1].value
    assert len(archived) == 2                                        # en and zh-CN XLSX, version 1
    assert sorted(archived.iloc[:, 1]) == ["en", "zh-CN"]
