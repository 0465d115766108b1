"""Sign-in and sign-out in a real browser: `./manage start` with OIDC sign-in against
oidc-provider-mock (0.3.4) on 127.0.0.1, Debian's chromium through Playwright.

The mock IdP knows two people: ann (groups ["tenant:moonlake"]) and max (["role:manager"]); their
groups reach the dashboard in the ID token, as a real IdP must send them. Ann signs in, sees her
tenant's pages only, signs out; max signs in and sees the manager's. Screenshots of both views in
both languages go to artifacts/screenshots/access-*.png. Afterwards the server is stopped and
its audit read: each sign-in and sign-out is there. /healthz says only its status to a caller
without a token, and the API refuses one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import config
from queries import Store, audit, tokens
from helpers import DRAWN, config_dict, config_dir

CHROMIUM = "/usr/bin/chromium"
SHOTS = config.PROJECT_ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PEOPLE = {"ann": {"email": "ann@moonlake.example", "groups": ["tenant:moonlake"]},
          "max": {"email": "max@centre.example", "groups": ["role:manager"]}}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian's chromium is not installed (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def idp():
    """oidc-provider-mock's app served by werkzeug on 127.0.0.1 (its own helper binds "localhost")."""
    import werkzeug.serving
    from oidc_provider_mock import User, app

    server = werkzeug.serving.make_server("127.0.0.1", 0, app(
        user_claims=[User(sub=sub, claims=claims) for sub, claims in PEOPLE.items()]), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, idp):
    tmp = tmp_path_factory.mktemp("access-e2e")
    base = config_dict()
    db = tmp / "access.duckdb"
    cdir = config_dir(tmp / "config", database={**base["database"], "path": str(db)},
                      collection={**base["collection"], "interval_s": 5},
                      simulator={**base["simulator"], "backfill_days": 1})
    port = free_port()
    (cdir / "client-secret").write_text("mock-client-secret\n")
    (cdir / "cookie-secret").write_text("e2e-cookie-secret-" + "0123456789abcdef" * 2 + "\n")
    (cdir / "access.toml").write_text(f"""sign_in = "oidc"
[oidc]
server_metadata_url = "{idp}/.well-known/openid-configuration"
client_id = "zhisuan-e2e"
client_secret_file = "client-secret"
cookie_secret_file = "cookie-secret"
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
""")
    store = Store(db)                            # tokens made before the server owns the file
    made = {"noc": tokens.create(store, name="noc-wall", role="noc", by="e2e")[1],
            "moonlake": tokens.create(store, name="moonlake-grafana", role="tenant", tenant="moonlake", by="e2e",
                                      tenants=[t["id"] for t in base["tenants"]])[1]}
    store.close()
    log_path = tmp / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([str(config.PROJECT_ROOT / "manage"), "start", "--server.port", str(port),
                             "--server.address", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, config.ENV_VAR: str(cdir)}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    status = None
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
                status = r.status, json.loads(r.read())
                break
        except urllib.error.HTTPError as exc:
            if exc.code == 503:
                status = exc.code, json.loads(exc.read())
                if status[1].get("status") != "starting":
                    break
        except OSError:
            pass
        time.sleep(0.5)
    if status is None:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail(f"server did not come up; log:\n{log_path.read_text()[-3000:]}")
    state = {"url": url, "health": status, "proc": proc, "db": db, "log": log_path, "tokens": made}
    yield state
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def get(url: str, token: str | None = None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_healthz_says_only_its_status_and_the_api_wants_a_token(dashboard):
    code, body = dashboard["health"]
    assert set(body) == {"status"}, body
    url, made = dashboard["url"], dashboard["tokens"]
    assert "targets" in get(url + "/healthz", made["noc"])[1]              # the NOC's token: all of it
    assert get(url + "/api/v1/tenants")[0] == 401
    now = datetime.now(timezone.utc)
    span = urllib.parse.urlencode({"from": (now - timedelta(days=2)).isoformat(), "to": now.isoformat()})
    status, body = get(f"{url}/api/v1/tenants?{span}", made["moonlake"])
    assert status == 200 and [r["tenant"] for r in body["rows"]] == ["moonlake"], body
    assert get(f"{url}/api/v1/tenants?{span}", made["noc"])[0] == 403


def sign_in(page, url: str, sub: str) -> None:
    """Sign in as `sub` on the mock IdP's page. The button's click reaches the server through the
    page's websocket: a click before that is up does nothing, so it is clicked again."""
    page.goto(url + "/", wait_until="domcontentloaded")
    button = page.get_by_role("button", name="Sign in")
    for _ in range(4):
        button.click()
        try:
            page.wait_for_url("**/oauth2/authorize**", timeout=15_000)
            break
        except Exception:                  # playwright's TimeoutError: still on the sign-in page
            continue
    page.get_by_role("button", name=sub, exact=True).click()
    page.get_by_text(f"Signed in as {PEOPLE[sub]['email']}").first.wait_for(timeout=60_000)


def sign_out(page) -> None:
    """Sign out: Streamlit ends the IdP's session too (RP-initiated logout); the mock asks to confirm."""
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/oauth2/end_session**", timeout=30_000)
    page.get_by_role("button", name="End session").click()
    page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)


def shoot(page, url: str, path: str, heading: str, name: str) -> None:
    page.goto(url + path, wait_until="domcontentloaded")
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    page.locator('[data-testid="stDataFrame"] canvas').first.wait_for(timeout=60_000)
    page.wait_for_function(DRAWN, timeout=60_000)     # plotly and the tables drawn
    page.wait_for_timeout(500)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"access-{name}.png"), full_page=True)


def nav_links(page) -> list[str]:
    """The sidebar navigation's page titles (each link's text ends with its title, after its icon)."""
    return sorted(a.inner_text().strip().split("\n")[-1] for a in page.locator('[data-testid="stSidebarNav"] a').all())


def test_a_tenant_and_a_manager_sign_in_and_out(dashboard, browser):
    url = dashboard["url"]
    page = browser.new_page(viewport={"width": 1500, "height": 2000})
    sign_in(page, url, "ann")
    page.get_by_text("Signed in as ann@moonlake.example (Tenant: Moonlake AI)").first.wait_for(timeout=30_000)
    links = nav_links(page)
    assert {"Utilisation", "Tenant usage"} <= set(links) <= {"Utilisation", "Tenant usage", "Billing",
                                                             "Monthly reports"}
    shoot(page, url, "/tenants", "Tenant usage", "tenant")
    shoot(page, url, "/tenants?lang=zh-CN", "租户用量", "tenant-zh")
    page.goto(url + "/live", wait_until="domcontentloaded")
    page.get_by_text("may not open Live fleet").first.wait_for(timeout=60_000)
    page.goto(url + "/", wait_until="domcontentloaded")
    page.get_by_text("Signed in as ann@moonlake.example").first.wait_for(timeout=60_000)
    sign_out(page)
    page.close()

    page = browser.new_page(viewport={"width": 1500, "height": 2000})
    sign_in(page, url, "max")
    assert "Live fleet" in nav_links(page) and "Administration" not in nav_links(page)
    shoot(page, url, "/tenants", "Tenant usage", "manager")
    shoot(page, url, "/tenants?lang=zh-CN", "租户用量", "manager-zh")
    page.goto(url + "/", wait_until="domcontentloaded")
    page.get_by_text("Signed in as max@centre.example").first.wait_for(timeout=60_000)
    sign_out(page)
    page.close()

    proc = dashboard["proc"]
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    store = Store(dashboard["db"], read_only=True)
    try:
        now = datetime.now(timezone.utc)
        rows = audit.rows(store, start=now - timedelta(hours=1), end=now + timedelta(minutes=1))
    finally:
        store.close()
    seen = [(r.action, r.who, r.role) for r in rows.itertuples() if r.action in ("sign_in", "sign_out")]
    assert list(reversed(seen)) == [("sign_in", "ann@moonlake.example", "tenant"),
                                    ("sign_out", "ann@moonlake.example", "tenant"),
                                    ("sign_in", "max@centre.example", "manager"),
                                    ("sign_out", "max@centre.example", "manager")]
    assert ("denied", "page:live") in {(r.action, r.target) for r in rows.itertuples()}
