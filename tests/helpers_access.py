"""What the access tests share (tests/test_access*.py): an access.toml with OIDC sign-in, a
store of two tenants, AppTest runs signed in as an ID token's claims, and what a run drew."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
from streamlit.testing.v1 import AppTest

import config
from collectors.dcgm import DcgmCollector
from collectors.scheduler import Scheduler
from pages import ui
from queries import Store, rollup
from helpers import A, B, FakeFloor, dcgm_text, text_b

TENANTS = [{"id": "alpha", "name": "Alpha Labs", "namespaces": ["alpha-ns"]},
           {"id": "bravo", "name": "Bravo Robotics", "namespaces": ["bravo-ns"]}]
ACCESS_TOML = """sign_in = "oidc"
[oidc]
server_metadata_url = "http://127.0.0.1:9/.well-known/openid-configuration"
client_id = "zhisuan"
client_secret_file = "client-secret"
cookie_secret_file = "cookie-secret"
redirect_uri = "http://localhost:8501/oauth2callback"
"""


BILLING_TOML = """# both tenants on platform usage of H100s, so each has a bill to keep from the other
[[prices]]
model = "H100-SXM"
effective = 2026-01-01
per_gpu_hour = 16.0
per_gpu_month = 9200.0

[[contracts]]
id = "ALPHA-1"
tenant = "alpha"
kind = "usage"
model = "H100-SXM"
start = 2026-01-01
end = 2028-01-01

[[contracts]]
id = "BRAVO-1"
tenant = "bravo"
kind = "usage"
model = "H100-SXM"
start = 2026-01-01
end = 2028-01-01
"""


def write_access(cdir, text: str = ACCESS_TOML) -> None:
    (cdir / "client-secret").write_text("not-a-real-secret\n")
    (cdir / "cookie-secret").write_text("c" * 40 + "\n")
    (cdir / "access.toml").write_text(text)


def seed(db, cfg, now: datetime) -> None:
    store = Store(db)
    floor = FakeFloor()
    sched = Scheduler(store, [(DcgmCollector(cfg, fetch=floor.fetch), [A, B])], interval_s=15)
    store.register_targets([A.as_row(), B.as_row()])
    floor.responses[A.url] = dcgm_text(util=(80, 40), ns=("alpha-ns", "alpha-ns"))
    floor.responses[B.url] = text_b(util=(70, 30), ns=("bravo-ns", "bravo-ns"))
    start = now - timedelta(hours=2)
    for i in range(40):
        sched.run_cycle(start + timedelta(seconds=15 * i))
    sched.pool.shutdown()
    rollup.build(store, cfg, now)
    store.close()


def navigation_only(monkeypatch) -> None:
    """Runs go through app.py's navigation as in the server (app.py tells Streamlit the pages/
    folder is not a page directory; AppTest forgets that before each run)."""
    from streamlit.runtime.pages_manager import PagesManager
    init = PagesManager.__init__

    def without_pages_folder(self, *args, **kwargs):
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", without_pages_folder)


def claims(groups: list[str], who: str = "ann@alpha.example") -> dict:
    return {"is_logged_in": True, "email": who, "sub": who.split("@")[0], "groups": groups,
            "iat": int(datetime.now(timezone.utc).timestamp())}


def app_as(groups: list[str], lang: str = "en", **params: str) -> AppTest:
    at = AppTest.from_file(str(config.PROJECT_ROOT / "app.py"), default_timeout=60)
    at.user = claims(groups)
    at.query_params["lang"] = lang
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def drawn_text(at: AppTest) -> str:
    """Everything the run drew: each element's message (titles, metrics, captions, widget
    options, plotly figures' JSON), tables as CSV."""
    out: list[str] = []

    def walk(node: Any) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        if type(node).__name__ == "Dataframe":
            value = node.value
            if isinstance(value, pd.DataFrame):
                out.append(value.to_csv())
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(out)


def open_page(at: AppTest, page: ui.NavPage) -> AppTest:
    """Open a page of the navigation by its URL path, as a shared link would (hidden ones too)."""
    script = str(config.PROJECT_ROOT / page.script)
    hashes = [h for h, info in at._registered_pages.items()
              if info.get("url_pathname") == page.url_path or info.get("script_path") == script]
    assert hashes, (page.url_path, at._registered_pages)
    at._page_hash = hashes[0]
    at.run()
    assert not at.exception, (page.script, [e.message for e in at.exception])
    return at


def existing_pages() -> list[ui.NavPage]:
    """Every page of the navigation (each must exist: the page meta-test renders them all)."""
    pages = list(ui.NAV)
    assert all((config.PROJECT_ROOT / p.script).exists() for p in pages), "a NAV page has no script"
    return pages


