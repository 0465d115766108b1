"""Sign-in, roles and the demo's "view as" in the pages (AppTest from app.py, `AppTest.user` as
the ID token's claims): each role's navigation, the sign-in page, a person the claims give no
role, sign-in / sign-out / session timeout / denied access in the audit, the admin page's
tokens, and the banner and switch while sign-in is off. Both languages.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import config
from pages import ui
from queries import Store, audit, tokens
from queries.scope import Scope
from queries.store import set_shared_store
from helpers import config_dict, config_dir
from helpers_access import TENANTS, app_as, claims, existing_pages, navigation_only, write_access

ROLE_GROUPS = {"noc": ["role:noc"], "manager": ["role:manager"], "planner": ["role:planner"],
               "admin": ["role:admin", "role:noc"], "tenant": ["tenant:alpha"]}


def make_dir(tmp_path, *, sign_in: bool = True, **tables):
    centre = config_dict()
    centre.update(tenants=TENANTS, database={**centre["database"], "path": str(tmp_path / "a.duckdb")}, **tables)
    cdir = config_dir(tmp_path / "config", centre)
    if sign_in:
        write_access(cdir)
    return cdir


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A config with sign-in on and a writable store the pages share (their audit is read back)."""
    cdir = make_dir(tmp_path)
    store = Store(tmp_path / "a.duckdb")
    set_shared_store(store)
    navigation_only(monkeypatch)
    monkeypatch.setenv(config.ENV_VAR, str(cdir))
    st.cache_resource.clear()
    yield store
    set_shared_store(None)
    st.cache_resource.clear()
    store.close()


def events(store: Store, action: str | None = None):
    now = datetime.now(timezone.utc)
    return audit.rows(store, start=now - timedelta(hours=1), end=now + timedelta(minutes=1), action=action)


def listed(at: AppTest) -> list[str]:
    """The navigation's pages (script files); the role's hidden stand-ins have no script."""
    return sorted(str(info["script_path"]).removeprefix(str(config.PROJECT_ROOT) + "/")
                  for info in at._registered_pages.values() if info.get("script_path"))


@pytest.mark.parametrize("role", list(ROLE_GROUPS))
def test_each_role_sees_only_its_pages(site, role):
    at = app_as(ROLE_GROUPS[role])
    expected = sorted(p.script for p in existing_pages() if role in p.roles)
    assert listed(at) == expected
    assert f"({ui.role_label(Scope(role, 'alpha' if role == 'tenant' else None))})" in at.sidebar.caption[0].value
    if role == "tenant":
        assert "pages/live.py" not in expected and "pages/admin.py" not in expected
    assert list(events(site, "sign_in")["role"]) == [role]


def test_a_page_opened_without_the_role_says_so_and_is_audited(site):
    at = app_as(ROLE_GROUPS["planner"])
    live = next(p for p in existing_pages() if p.url_path == "live")
    hashes = [h for h, info in at._registered_pages.items() if info.get("url_pathname") == "live"]
    at._page_hash = hashes[0]
    at.run()
    assert at.title[0].value == "Live fleet"
    assert [w.value for w in at.warning if w.icon == ":material/block:"] == [
        "Capacity planner may not open Live fleet: it is for NOC, Manager, Administrator. "
        "Ask an administrator if you need it."]
    at.run()                                   # once a session in the audit
    denied = events(site, "denied")
    assert list(denied["target"]) == [f"page:{live.url_path}"] and list(denied["role"]) == ["planner"]


def test_signed_out_sees_the_sign_in_page_only(site):
    at = AppTest.from_file(str(config.PROJECT_ROOT / "app.py"), default_timeout=60)
    at.user = {"is_logged_in": False}
    at.query_params["lang"] = "zh-CN"
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["登录"]
    assert at.subheader[0].value == "登录"
    assert not at.dataframe and not at.metric                  # nothing of the centre's figures
    assert events(site).empty


def test_claims_without_a_role_are_refused_plainly(site):
    at = app_as(["staff", "tenant:nobody"])
    assert [w.value for w in at.warning] == [
        "ann@alpha.example is signed in, but none of their groups (staff, tenant:nobody, from the ID token's "
        "'groups' claim) gives a role on this dashboard. Ask an administrator to add you to a group for your role."]
    assert not set(listed(at)) & {p.script for p in existing_pages()} and not at.dataframe
    row = events(site, "denied").iloc[0]
    assert (row["who"], row["target"]) == ("ann@alpha.example", "sign_in")


def test_sign_in_is_audited_once_and_sign_out_ends_the_session(site):
    at = app_as(ROLE_GROUPS["manager"])
    at.run()
    at.run()
    assert len(events(site, "sign_in")) == 1
    at.sidebar.button(key="sign_out").click().run()
    assert at.user.get("is_logged_in") is False
    out = events(site, "sign_out")
    assert list(out["who"]) == ["ann@alpha.example"] and list(out["role"]) == ["manager"]


def test_an_idle_session_and_an_old_sign_in_time_out(site):
    at = app_as(ROLE_GROUPS["noc"])
    at.session_state[ui._SEEN] = datetime.now(timezone.utc).timestamp() - 31 * 60      # idle_timeout_min = 30
    at.run()
    assert at.user.get("is_logged_in") is False
    at = app_as([])                                                                    # a new session...
    at.user = {**claims(ROLE_GROUPS["noc"]), "iat": int(datetime.now(timezone.utc).timestamp()) - 13 * 3600}
    at.run()                                                                           # ...signed in 13 h ago
    assert at.user.get("is_logged_in") is False
    details = list(events(site, "session_timeout")["detail"])
    assert len(details) == 2 and details[1].startswith("idle 31 min") and details[0].startswith("signed in 13.0 h ago")


@pytest.mark.parametrize("lang, title", [("en", "Administration"), ("zh-CN", "系统管理")])
def test_admin_makes_lists_and_revokes_a_token(site, lang, title):
    at = app_as(ROLE_GROUPS["admin"], lang)
    admin = next(p for p in existing_pages() if p.url_path == "admin")
    at.switch_page(admin.script).run()
    assert at.title[0].value == title
    at.text_input(key="token_name").input("grafana-alpha")
    at.selectbox(key="token_role").set_value("tenant")
    at.selectbox(key="token_tenant").set_value("alpha")
    next(b for b in at.button if b.proto.is_form_submitter).click().run()
    assert not at.exception, [e.message for e in at.exception]
    text = at.code[0].value
    scope = tokens.authenticate(site, text)
    assert scope is not None and (scope.role, scope.tenant) == ("tenant", "alpha")
    rows = tokens.table(site).records()
    assert [(r["name"], r["created_by"]) for r in rows] == [("grafana-alpha", "ann@alpha.example")]
    at.button(key="token_revoke_button").click().run()
    assert tokens.authenticate(site, text) is None
    assert list(events(site)["action"])[:2] == ["token_revoke", "token_create"]
    audit_table = next(df.value for df in at.dataframe if len(df.value.columns) == 7)
    assert len(audit_table) >= 3                   # sign-in, token made, token revoked


def test_a_tenant_token_needs_its_tenant_on_the_admin_page(site):
    at = app_as(ROLE_GROUPS["admin"])
    at.switch_page("pages/admin.py").run()
    at.text_input(key="token_name").input("x")
    at.selectbox(key="token_role").set_value("tenant")
    next(b for b in at.button if b.proto.is_form_submitter).click().run()
    assert any(w.value == "Token not made: a tenant token needs its tenant" for w in at.warning)
    assert tokens.table(site).rows.empty


# ---- sign-in off --------------------------------------------------------------------

@pytest.fixture
def local(tmp_path, monkeypatch):
    def start(**tables) -> Store:
        cdir = make_dir(tmp_path, sign_in=False, **tables)
        store = Store(tmp_path / "a.duckdb")
        set_shared_store(store)
        navigation_only(monkeypatch)
        monkeypatch.setenv(config.ENV_VAR, str(cdir))
        st.cache_resource.clear()
        return store
    yield start
    set_shared_store(None)
    st.cache_resource.clear()


def run_local(lang: str = "en", **params: str) -> AppTest:
    at = AppTest.from_file(str(config.PROJECT_ROOT / "app.py"), default_timeout=60)
    at.query_params["lang"] = lang
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_sign_in_off_shows_every_page_and_a_banner(local):
    local()
    at = run_local()
    assert listed(at) == sorted(p.script for p in existing_pages())
    assert any(w.value.startswith("Sign-in is off: this dashboard serves this machine only") for w in at.warning)
    assert at.selectbox(key="view_as").value == ""


@pytest.mark.parametrize("lang, banner", [
    ("en", "Demo view: the pages as Tenant: Alpha Labs sees them"),
    ("zh-CN", "演示视角：以 租户：Alpha Labs 的身份查看页面"),
])
def test_view_as_a_tenant_in_the_simulated_centre(local, lang, banner):
    store = local()
    at = run_local(lang, view_as="tenant:alpha")
    assert any(w.value.startswith(banner) for w in at.warning)
    assert listed(at) == sorted(p.script for p in existing_pages() if "tenant" in p.roles)
    assert list(events(store, "view_as")["target"]) == ["tenant:alpha"]
    at.selectbox(key="view_as").set_value("planner").run()
    assert listed(at) == sorted(p.script for p in existing_pages() if "planner" in p.roles)


def test_view_as_never_exists_with_real_sources(local):
    source = {"name": "floor", "kind": "dcgm", "targets": ["http://10.0.0.1:9400/metrics"], "site": "sh-lingang",
              "cluster": "train-a"}
    local(sources=[source])
    at = run_local(view_as="tenant:alpha")
    assert not [s for s in at.selectbox if s.key == "view_as"]
    assert listed(at) == sorted(p.script for p in existing_pages())          # the URL's view_as is ignored


def test_a_meter_import_is_audited_and_only_an_admin_sees_it(site):
    at = app_as(ROLE_GROUPS["admin"])
    at.switch_page("pages/sources.py").run()
    at.file_uploader[0].set_value(("october.csv", b"site,meter,category,period_start,period_end,kwh\n"
                                   b"sh-lingang,grid-main,facility,2026-10-01,2026-11-01,612345.5\n"
                                   b"sh-lingang,grid-b,facility,2026-10-01,2026-11-01,lots\n", "text/csv"))
    at.run()
    at.button(key="meter_import").click().run()
    assert not at.exception, [e.message for e in at.exception]
    row = events(site, "meter_import").iloc[0]
    assert (row["who"], row["role"], row["target"]) == ("ann@alpha.example", "admin", "october.csv")
    assert json.loads(row["detail"]) == {"inserted": 1, "unchanged": 0, "conflicts": 0, "rejected": 1}
    noc = app_as(ROLE_GROUPS["noc"])
    noc.switch_page("pages/sources.py").run()
    assert not noc.file_uploader and not [b for b in noc.button if b.key == "meter_import"]


def test_the_admin_page_with_an_empty_audit_and_no_tokens(site):
    """The admin page of a fresh store: an empty audit range is a table with no rows, no tokens a line."""
    at = app_as(ROLE_GROUPS["admin"])
    at.switch_page("pages/admin.py").run()
    at.date_input(key="audit_from").set_value(datetime(2020, 1, 1).date())
    at.date_input(key="audit_to").set_value(datetime(2020, 1, 2).date()).run()
    assert not at.exception and not [e for e in at.error]
    assert any(c.value.startswith("0 event(s)") for c in at.caption)
    assert any(c.value == "No API tokens yet." for c in at.caption)


def _fragment_script() -> None:
    import streamlit as st

    from pages import context, ui
    from queries import Store

    ctx = context.PageContext(cfg=ui.cfg(), store=Store(":memory:"))
    st.session_state["runs"] = st.session_state.get("runs", 0) + 1
    if st.session_state["runs"] == 1:
        st.session_state[ui._SEEN] = st.session_state.get("seen_at", 0.0)
        ui.end_if_expired(ctx)
    st.write(f"run {st.session_state['runs']}")


@pytest.mark.parametrize("idle_s, runs", [(31 * 60, 2), (60, 1)])
def test_an_auto_refresh_of_an_idle_session_reruns_the_app_so_the_gate_ends_it(site, idle_s, runs):
    at = AppTest.from_function(_fragment_script, default_timeout=30)
    at.user = claims(ROLE_GROUPS["noc"])
    at.session_state["seen_at"] = datetime.now(timezone.utc).timestamp() - idle_s
    at.run()
    assert not at.exception and at.markdown[0].value == f"run {runs}"
