"""End to end: `./manage start` as the README says, then Debian's chromium via Playwright.

Starts the real server on the simulated centre (a private config and database
under tmp), waits for /healthz to report a collection cycle, opens the live
page and the sources page, checks what a NOC operator would look for, and
saves screenshots under artifacts/screenshots/ for a person to open.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import config
from helpers import DRAWN, config_dict, config_dir

CHROMIUM = "/usr/bin/chromium"
SHOTS = config.PROJECT_ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian's chromium is not installed (apt-get install chromium)"),
]


_STATE: dict = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, json.loads(r.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    base = config_dict()
    cdir = config_dir(tmp / "config", database={**base["database"], "path": str(tmp / "e2e.duckdb")},
                      collection={**base["collection"], "interval_s": 5},
                      ui={**base.get("ui", {}), "refresh_s": 5},
                      simulator={**base["simulator"], "backfill_days": 1})
    for area in ("energy", "billing", "capacity", "reports"):      # the simulated centre's areas, as shipped
        shutil.copy(config.CONFIG_DIR / f"{area}.toml", cdir / f"{area}.toml")
    port = free_port()
    log = open(tmp / "server.log", "w")
    env = {**os.environ, config.ENV_VAR: str(cdir)}
    proc = subprocess.Popen([str(config.PROJECT_ROOT / "manage"), "start", "--server.port", str(port),
                             "--server.address", "127.0.0.1"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _STATE.update(proc=proc, env=env, log=tmp / "server.log", db=tmp / "e2e.duckdb")
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    health = None
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            status, health = get_json(base + "/healthz")
            if status == 200 and health["cycles"] >= 1:
                break
        except OSError:
            pass
        time.sleep(0.5)
    if health is None or health.get("cycles", 0) < 1:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail(f"server did not come up; log:\n{(tmp / 'server.log').read_text()[-3000:]}")
    yield base, health
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


@pytest.fixture(scope="module")
def server_proc(server, tmp_path_factory):
    """The running server's process and environment, for the ownership and shutdown tests."""
    return _STATE


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_healthz_reports_collection(server):
    _, health = server
    assert health["simulated"] is True
    assert health["targets"] == 64 + 1          # one exporter per node, one facility meter
    assert health["last_cycle"]["ok"] >= 60
    # the owner's jobs: store maintenance and the simulated history's back-fill
    # and the areas' jobs: meter energy, the older simulated months, forecasts, the monthly report
    assert {j["job"] for j in health["jobs"]} == {"reopen", "release-memory", "backfill", "rollup", "retention",
                                                  "energy", "energy-history", "history-generate", "forecast",
                                                  "monthly-report"}
    assert health["rollups"]["state"] in ("current", "catching_up")


def test_live_page_in_chromium(server, browser, cfg):
    base, _ = server
    page = browser.new_page(viewport={"width": 1600, "height": 2300})
    page.goto(base + "/", wait_until="domcontentloaded")
    page.get_by_text("GPUs owned").first.wait_for(timeout=60_000)
    owned = page.locator('[data-testid="stMetric"]', has_text="GPUs owned").locator('[data-testid="stMetricValue"]')
    assert owned.inner_text().strip() == f"{cfg.total_gpus():,}"
    page.get_by_text("Problems (").first.wait_for(timeout=30_000)
    heading = page.get_by_text("Problems (").first.inner_text()
    assert int(heading.split("(")[1].split(")")[0]) > 0
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)
    page.wait_for_timeout(1500)                  # let plotly finish drawing
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "live.png"), full_page=True)
    page.goto(base + "/?lang=zh-CN", wait_until="domcontentloaded")
    page.get_by_text("GPU 总数").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(SHOTS / "live-zh.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("path, heading, zh_heading, name", [
    ("/utilisation", "Where the GPU-hours went", "GPU 时长去向", "utilisation"),
    ("/tenants", "Usage per tenant", "各租户用量", "tenants"),
])
def test_history_pages_in_chromium(server, browser, path, heading, zh_heading, name):
    """The history pages on the simulated centre's back-filled day, in both languages."""
    base, _ = server
    page = browser.new_page(viewport={"width": 1600, "height": 2600})
    for lang, text, suffix in (("en", heading, ""), ("zh-CN", zh_heading, "-zh")):
        page.goto(f"{base}{path}?lang={lang}&range=24h", wait_until="domcontentloaded")
        page.get_by_text(text).first.wait_for(timeout=60_000)
        page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)              # let plotly finish drawing
        assert not page.locator('[data-testid="stException"]').count()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}{suffix}.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("path, heading, zh_heading, name", [
    ("/energy", "Energy and PUE", "能耗与 PUE", "energy"),
    ("/billing", "Billing", "账单", "billing"),
    ("/capacity", "Capacity planning", "容量规划", "capacity"),
    ("/reports", "Monthly reports", "月度报告", "reports"),
])
def test_business_pages_in_chromium(server, browser, path, heading, zh_heading, name):
    """The energy, billing, capacity and reports pages on the simulated centre, in both languages:
    each page's own heading (not the navigation's link), drawn to the end without an error."""
    base, _ = server
    page = browser.new_page(viewport={"width": 1600, "height": 2600})
    for lang, text, suffix in (("en", heading, ""), ("zh-CN", zh_heading, "-zh")):
        page.goto(f"{base}{path}?lang={lang}", wait_until="domcontentloaded")
        page.get_by_role("heading", name=text, exact=True).first.wait_for(timeout=60_000)
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=90_000)
        page.wait_for_function(DRAWN, timeout=90_000)
        page.wait_for_timeout(1000)
        assert not page.locator('[data-testid="stException"]').count()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}{suffix}.png"), full_page=True)
    page.close()


def test_sources_page_in_chromium(server, browser):
    base, _ = server
    page = browser.new_page(viewport={"width": 1600, "height": 1100})
    page.goto(base + "/sources", wait_until="domcontentloaded")
    page.get_by_text("Targets").first.wait_for(timeout=60_000)
    targets = page.locator('[data-testid="stMetric"]', has_text="Targets").locator('[data-testid="stMetricValue"]')
    assert targets.inner_text().strip() == "65"
    page.get_by_text("Jobs", exact=True).first.wait_for(timeout=30_000)    # read from job_runs and owner status
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "sources.png"), full_page=True)
    page.close()


def test_second_dashboard_is_told_who_owns_the_database(server, server_proc):
    proc = subprocess.run([str(config.PROJECT_ROOT / "manage"), "start", "--server.port", str(free_port()),
                           "--server.address", "127.0.0.1"], env=server_proc["env"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-1500:]
    assert f"The database {server_proc['db']} is in use by process" in proc.stderr
    assert "streamlit run app.py" in proc.stderr and "Traceback" not in proc.stderr


def test_zz_server_stops_cleanly(server, server_proc):
    """Last in this module: SIGTERM stops the collector runtime through the lifespan."""
    proc = server_proc["proc"]
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)
    log = server_proc["log"].read_text()
    assert "collector runtime stopped" in log
    assert "Traceback" not in log
