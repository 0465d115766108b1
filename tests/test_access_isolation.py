"""Tenant isolation, end to end: every page of the navigation (pages/ui.py NAV, each that exists,
so pages added later are walked too) and every API route (api.modules(), each ROUTES) as tenant
alpha over a store holding alpha's and bravo's GPUs, finding no row, figure, name, host or
device id of bravo anywhere in what is drawn or answered.

The store: two hosts of the default simulated centre's clusters, node-a (GPU-0000, GPU-0001)
held by alpha (namespace alpha-ns) and node-b (GPU-B000, GPU-B001) held by bravo (bravo-ns),
collected for 10 minutes two hours ago and rolled up. Pages run from app.py (AppTest) with
sign-in on and `AppTest.user` as an ID token's claims; the API through its middleware with
alpha's bearer token. Each walk first checks, as a manager, that bravo's marks do show, so a
walk that shows nothing cannot pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
import warnings
from typing import Any, Iterator

import pytest
import streamlit as st
from starlette.applications import Starlette
from starlette.testclient import TestClient

import api
import config
import i18n
from queries import Store, audit, tokens
from queries.scope import Scope
from queries.store import set_shared_store
from helpers import config_dict, config_dir
from helpers_access import (BILLING_TOML, TENANTS, app_as, drawn_text, existing_pages, navigation_only, open_page, seed,
                            write_access)

B_MARKS = ("bravo", "Bravo Robotics", "node-b", "GPU-B00")       # bravo's id, name, host, device ids
A_MARKS = ("Alpha Labs", "node-a", "GPU-000")
INTERNAL = i18n.t("history.error.internal", "en")


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory) -> Iterator[tuple[Any, config.Config, Any]]:
    tmp = tmp_path_factory.mktemp("isolation")
    db = tmp / "two.duckdb"
    centre = config_dict()
    centre.update(tenants=TENANTS, database={**centre["database"], "path": str(db)})
    cdir = config_dir(tmp / "config", centre)
    write_access(cdir)
    (cdir / "billing.toml").write_text(BILLING_TOML)
    cfg = config.load(cdir)
    seed(db, cfg, datetime.now(timezone.utc))
    yield cdir, cfg, db


@pytest.fixture
def served_pages(two_tenants, monkeypatch):
    cdir, cfg, db = two_tenants
    navigation_only(monkeypatch)
    store = Store(db)
    set_shared_store(store)                   # the pages' store, writable: what they audit is read back
    monkeypatch.setenv(config.ENV_VAR, str(cdir))
    st.cache_resource.clear()
    yield store
    set_shared_store(None)
    st.cache_resource.clear()
    store.close()


def leaks(text: str, marks: tuple[str, ...] = B_MARKS) -> list[str]:
    return [m for m in marks if m.lower() in text.lower()]


def test_a_manager_sees_both_tenants_so_the_walk_can_fail(served_pages):
    at = app_as(["role:manager"], drill="bravo")
    seen = ""
    for page in existing_pages():
        seen += drawn_text(open_page(at, page))
    assert not leaks(seen, ("Sign in",)), "the manager is signed in"
    assert set(leaks(seen)) == set(B_MARKS), leaks(seen)
    assert {"Alpha Labs", "node-a"} <= set(leaks(seen, A_MARKS))


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_tenant_alpha_finds_nothing_of_bravo_on_any_page(served_pages, lang):
    # the URL asks for bravo every way a page reads one: they must be ignored
    at = app_as(["tenant:alpha"], lang, tenant="bravo", drill="bravo", view_as="tenant:bravo")
    scope = Scope("tenant", "alpha", "ann@alpha.example")
    opened, refused = [], []
    own = ""
    for page in existing_pages():
        text = drawn_text(open_page(at, page))
        assert not leaks(text), (page.script, leaks(text))
        own += text
        (opened if page.visible(scope) else refused).append(page.url_path)
        if not page.visible(scope):
            assert any(w.icon == ":material/block:" for w in at.warning), page.script
    assert {"utilisation", "tenants"} <= set(opened)
    assert {"live", "sources"} <= set(refused)
    assert "Alpha Labs" in own and "node-a" in own            # alpha does see its own
    denied = audit.rows(served_pages, start=datetime.now(timezone.utc) - timedelta(hours=1),
                        end=datetime.now(timezone.utc) + timedelta(minutes=1), action="denied")
    assert {f"page:{p}" for p in refused} <= set(denied[denied["tenant"] == "alpha"]["target"])


# ---- the API ------------------------------------------------------------------------

def param_sets(now: datetime) -> list[dict[str, str]]:
    """Every route is called with each of these (a route refuses what it does not know with a
    400): ranges, steps and keys, months and years, and a tenant filter asking for bravo, alpha
    or none, as JSON and as CSV. A route that needs another parameter adds its typical values
    here (the test warns of a route no set gets an answer from)."""
    span = {"from": (now - timedelta(days=1)).isoformat(), "to": now.isoformat()}
    month, last = now.strftime("%Y-%m"), (now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    bases: list[dict[str, str]] = [
        {}, span, {"month": month}, {"month": last}, {"month": month, "lines": "true"}, {"period": now.strftime("%Y")},
        {"period": month}, {"horizon_days": "30"}, {"name": "default"},
        *({**span, "step": step, "by": by} for step in ("1h", "all") for by in ("fleet", "tenant", "cluster", "site",
                                                                               "model")),
    ]
    return [variant for base in bases for variant in (
        base, {**base, "tenant": "bravo"}, {**base, "tenant": "bravo", "format": "csv"}, {**base, "tenant": "alpha"})]


@pytest.fixture(scope="module")
def api_client(two_tenants):
    _, cfg, db = two_tenants
    store = Store(db)
    app = Starlette(routes=api.routes(lambda: store, cfg), middleware=api.middleware(lambda: store, cfg))
    client = TestClient(app, raise_server_exceptions=False)
    yield client, cfg, store
    store.close()


def routes() -> list[str]:
    return [path for module in api.modules() for path, _, _ in module.ROUTES]


def test_every_api_route_as_tenant_alpha_answers_nothing_of_bravo(api_client):
    client, cfg, store = api_client
    _, alpha = tokens.create(store, name="alpha-grafana", role="tenant", tenant="alpha", by="test",
                             tenants=[t.id for t in cfg.tenants])
    _, manager = tokens.create(store, name="finance", role="manager", by="test")
    paths = routes()
    assert "/api/v1/tenants" in paths and "/api/v1/utilisation" in paths
    now = datetime.now(timezone.utc)
    span = {"from": (now - timedelta(days=1)).isoformat(), "to": now.isoformat()}
    manager_saw = ""
    answered: dict[str, set[int]] = {path: set() for path in paths}
    failed: list[str] = []
    for path in paths:
        for params in param_sets(now):
            r = client.get(path, params=params, headers={"Authorization": f"Bearer {alpha}"})
            assert r.status_code in (200, 400, 403, 500), (path, params, r.status_code, r.text)
            assert not leaks(r.text), (path, params, leaks(r.text))
            m = client.get(path, params=params, headers={"Authorization": f"Bearer {manager}"})
            assert m.status_code in (200, 400, 500), (path, params, m.status_code, m.text)
            for answer in (r, m):          # a failure is a plain message, never a traceback
                if answer.status_code == 500:
                    assert answer.json() == {"error": INTERNAL}, answer.text
                    failed.append(f"{path} {params}")
            manager_saw += m.text
            answered[path].add(m.status_code)
    if failed:                             # not isolation's business, but said where everyone sees it
        warnings.warn(f"{len(failed)} API call(s) answered 500, e.g. {failed[:3]}", stacklevel=1)
    unexercised = sorted(path for path, codes in answered.items() if 200 not in codes)
    if unexercised:                        # routes that need stored objects (a saved scenario) or fail
        warnings.warn(f"no parameter set of param_sets() got an answer from {unexercised}", stacklevel=1)
    assert len(unexercised) < len(paths) / 2, unexercised
    assert "bravo" in leaks(manager_saw), "the manager's answers name bravo"
    body = client.get("/api/v1/tenants", params=span, headers={"Authorization": f"Bearer {alpha}"})
    assert body.status_code == 200 and [r["tenant"] for r in body.json()["rows"]] == ["alpha"], body.text
    assert body.json()["rows"][0]["allocated_gpu_hours"] > 0
