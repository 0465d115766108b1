"""The API's access (api.AccessMiddleware and the routes' role check) on the tiny seeded history:
bearer tokens scoped to a role or a tenant, revocation, local callers while sign-in is off, 401
and 403 with plain words, and the audit rows of token use and denied calls; the access settings
(config/access.py), the claims mapping and the refused start (queries/access.py)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

import api
import config
from config.access import Section
from queries import Store, access, audit, tokens
from queries.scope import EVERYTHING, Scope
from helpers import HISTORY_T0, config_dict, config_dir, history_centre, seed_history
from helpers_access import ACCESS_TOML, TENANTS, write_access

T0 = datetime.fromtimestamp(HISTORY_T0, timezone.utc)
NOW = T0 + timedelta(hours=3)
RANGE = {"from": "2026-11-20T08:00:00+08:00", "to": "2026-11-20T03:00:00Z"}


def serve(cfg, store, client_host: str = "testclient") -> TestClient:
    app = Starlette(routes=api.routes(lambda: store, cfg, clock=lambda: NOW),
                    middleware=api.middleware(lambda: store, cfg, clock=lambda: NOW))
    return TestClient(app, raise_server_exceptions=False, client=(client_host, 50000))


@pytest.fixture
def seeded():
    store = Store(":memory:")
    seed_history(store)
    yield store
    store.close()


def signed_in_cfg(tmp_path):
    write_access(tmp_path)
    return config.from_dict(history_centre(access={"sign_in": "oidc", "oidc": {
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration", "client_id": "z",
        "client_secret_file": "client-secret", "cookie_secret_file": "cookie-secret",
        "redirect_uri": "http://localhost:8501/oauth2callback"}}), directory=tmp_path)


def events(store, action=None):
    return audit.rows(store, start=T0 - timedelta(days=1), end=datetime.now(timezone.utc) + timedelta(minutes=1),
                      action=action)


def test_sign_in_off_answers_local_callers_without_a_token_and_no_one_else(seeded):
    cfg = config.from_dict(history_centre())
    assert serve(cfg, seeded, "127.0.0.1").get("/api/v1/tenants", params=RANGE).status_code == 200
    assert serve(cfg, seeded, "::1").get("/api/v1/tenants", params=RANGE).status_code == 200
    far = serve(cfg, seeded, "10.1.2.3").get("/api/v1/tenants", params=RANGE)
    assert far.status_code == 401 and far.headers["www-authenticate"].startswith("Bearer")
    assert far.json() == {"error": "This API needs a bearer token (Authorization: Bearer zs_...); an administrator "
                                   "makes one on the Admin page."}
    row = events(seeded, "denied").iloc[0]
    assert (row["who"], row["target"], row["detail"]) == ("client 10.1.2.3", "/api/v1/tenants", "no API token")


def test_sign_in_on_needs_a_token_even_on_this_machine(seeded, tmp_path):
    client = serve(signed_in_cfg(tmp_path), seeded, "127.0.0.1")
    assert client.get("/api/v1/tenants", params=RANGE).status_code == 401


def test_a_tenant_token_reads_its_own_rows_whatever_it_asks(seeded, tmp_path):
    client = serve(signed_in_cfg(tmp_path), seeded)
    token_id, text = tokens.create(seeded, name="acme-grafana", role="tenant", tenant="acme", by="admin",
                                   tenants=["acme", "idle-co"])
    auth = {"Authorization": f"Bearer {text}"}
    asked = client.get("/api/v1/utilisation", params={**RANGE, "tenant": "idle-co", "by": "tenant"}, headers=auth)
    assert asked.status_code in (200, 400) and "idle-co" not in asked.text.replace("'tenant'", "")
    r = client.get("/api/v1/tenants", params=RANGE, headers=auth)
    assert r.status_code == 200, r.text
    assert [row["tenant"] for row in r.json()["rows"]] == ["acme"]
    assert r.json()["rows"][0]["allocated_gpu_hours"] == 3.0            # acme: 2 GPUs x h0 + 1 GPU x h1
    used = events(seeded, "token_use").iloc[0]
    assert (used["who"], used["role"], used["tenant"], used["target"]) == (
        f"token:acme-grafana ({token_id})", "tenant", "acme", "/api/v1/tenants")
    assert tokens.table(seeded).records()[0]["last_used_at"] == NOW.isoformat()


def test_a_role_without_the_route_gets_403_and_an_audit_row(seeded, tmp_path, monkeypatch):
    client = serve(signed_in_cfg(tmp_path), seeded)
    _, noc = tokens.create(seeded, name="noc-wall", role="noc", by="admin")
    r = client.get("/api/v1/utilisation", params=RANGE, headers={"Authorization": f"Bearer {noc}"})
    assert r.status_code == 403
    assert r.json() == {"error": "Role noc may not read /api/v1/utilisation: it is for manager, planner, admin, "
                                 "tenant."}
    assert list(events(seeded, "denied")["role"]) == ["noc"]


def test_revoked_and_forged_tokens_are_refused(seeded, tmp_path):
    client = serve(signed_in_cfg(tmp_path), seeded)
    token_id, text = tokens.create(seeded, name="finance", role="manager", by="admin")
    auth = {"Authorization": f"Bearer {text}"}
    assert client.get("/api/v1/tenants", params=RANGE, headers=auth).status_code == 200
    assert tokens.revoke(seeded, token_id, by="admin")
    r = client.get("/api/v1/tenants", params=RANGE, headers=auth)
    assert r.status_code == 401 and r.json() == {"error": "This API token is not valid or has been revoked."}
    forged = f"zs_{token_id}_{'x' * 43}"
    assert client.get("/api/v1/tenants", params=RANGE,
                      headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    assert list(events(seeded, "denied")["detail"]) == ["invalid or revoked API token"] * 2


def test_bearer_header_forms():
    assert api.bearer({"authorization": "Bearer zs_abc"}) == "zs_abc"
    assert api.bearer({"authorization": "bearer  zs_abc "}) == "zs_abc"
    assert api.bearer({"authorization": "Basic dXNlcg=="}) is None and api.bearer({}) is None


# ---- settings, claims, start ----------------------------------------------------------

def test_access_settings_are_checked_with_file_and_key(tmp_path):
    centre = config_dict()
    centre.update(tenants=TENANTS, access={"sign_in": "oidc"})
    with pytest.raises(config.ConfigError, match=r"key 'access.oidc': sign_in = \"oidc\" needs the \[oidc\]"):
        config.from_dict(centre, directory=tmp_path)
    cdir = config_dir(tmp_path / "c", {**config_dict(), "tenants": TENANTS})
    (cdir / "access.toml").write_text(ACCESS_TOML + '[claims]\ntenants = { nobody = ["grp"], alpha = ["role:noc"] }\n')
    (cdir / "cookie-secret").write_text("short")
    with pytest.raises(config.ConfigError) as err:
        config.load(cdir)
    text = str(err.value)
    assert f"{cdir}/access.toml: key 'oidc.client_secret_file': cannot read a secret from {cdir}/client-secret" in text
    assert "key 'oidc.cookie_secret_file': the cookie secret in" in text and "is 5 characters" in text
    assert "key 'claims.tenants.nobody': unknown tenant 'nobody'; expected one of ['alpha', 'bravo']" in text
    assert "key 'claims': group 'role:noc' is given to role noc and to tenant alpha" in text


def test_streamlit_gets_the_sites_oidc_settings_as_its_auth_secrets(tmp_path):
    cdir = config_dir(tmp_path / "c", {**config_dict(), "tenants": TENANTS})
    write_access(cdir)
    cfg = config.load(cdir)
    from config.access import streamlit_secrets
    assert streamlit_secrets(cfg.access, cfg.directory) == {"auth": {
        "redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "c" * 40,
        "centre": {"client_id": "zhisuan", "client_secret": "not-a-real-secret",
                   "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
                   "client_kwargs": {"scope": "openid profile email"}}}}
    assert streamlit_secrets(Section(), cfg.directory) is None


@pytest.mark.parametrize("groups, expected", [
    (["role:noc", "role:admin"], Scope("admin", None, "ann@x")),              # the widest staff role
    (["role:planner", "tenant:alpha"], Scope("planner", None, "ann@x")),      # staff over tenant
    (["tenant:alpha"], Scope("tenant", "alpha", "ann@x")),
    ("tenant:alpha other", Scope("tenant", "alpha", "ann@x")),                # a flattened claim
    (["ext-bravo"], Scope("tenant", "bravo", "ann@x")),                      # named in [claims.tenants]
    (["tenant:alpha", "ext-bravo"], access.Refusal("access.refused.two_tenants",
                                                   {"who": "ann@x", "tenants": "alpha, bravo"})),
    (["tenant:nobody"], access.Refusal("access.refused.no_role",
                                       {"who": "ann@x", "claim": "groups", "groups": "tenant:nobody"})),
])
def test_claims_map_to_one_scope(groups, expected):
    section = Section.model_validate({"claims": {"tenants": {"bravo": ["ext-bravo"]}}})
    assert access.scope_from_claims(section, {"email": "ann@x", "groups": groups}, ["alpha", "bravo"]) == expected


@pytest.mark.parametrize("address, refused", [
    ("127.0.0.1", False), ("localhost", False), ("::1", False), ("[::1]", False), ("127.0.0.2", False),
    ("0.0.0.0", True), ("", True), (None, True), ("10.0.0.5", True), ("dashboard.example", True),
])
def test_start_refuses_a_network_address_without_sign_in(address, refused, tmp_path):
    cfg = config.from_dict(config_dict())
    assert (access.start_problem(cfg, address) is not None) is refused
    assert access.start_problem(signed_in_cfg(tmp_path), address) is None


def test_the_server_refuses_to_start_on_a_network_address(tmp_path):
    """`streamlit run app.py --server.address 0.0.0.0` without sign-in: exit 4, the reason, no traceback."""
    cdir = config_dir(tmp_path / "c", database={**config_dict()["database"], "path": str(tmp_path / "x.duckdb")})
    proc = subprocess.run([sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "0.0.0.0",
                           "--server.port", "0", "--server.headless", "true"], cwd=config.PROJECT_ROOT,
                          env={"PATH": "/usr/bin:/bin", config.ENV_VAR: str(cdir)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert "Dashboard not started: it would serve '0.0.0.0' without sign-in" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not Path(tmp_path / "x.duckdb").exists()          # refused before the database was opened


def test_view_as_scopes_exist_only_in_the_simulated_centre_with_sign_in_off(tmp_path):
    cfg = config.from_dict({**config_dict(), "tenants": TENANTS})
    assert access.view_as_scope(cfg, "tenant:alpha") == Scope("tenant", "alpha", "view-as:alpha")
    assert access.view_as_scope(cfg, "tenant:nobody") == EVERYTHING
    real = config.from_dict({**config_dict(), "tenants": TENANTS, "sources": [
        {"name": "floor", "kind": "dcgm", "targets": ["http://10.0.0.1:9400/metrics"], "site": "sh-lingang",
         "cluster": "train-a"}]})
    assert not access.view_as_available(real) and access.view_as_scope(real, "tenant:alpha") == EVERYTHING


def test_the_servers_routes_refuse_a_request_the_middleware_did_not_see(seeded):
    """app.py makes the routes with require_scope: were the middleware ever bypassed (another
    mount path, a missing line), the API would refuse instead of answering everything."""
    cfg = config.from_dict(history_centre())
    bare = TestClient(Starlette(routes=api.routes(lambda: seeded, cfg, clock=lambda: NOW, require_scope=True)),
                      raise_server_exceptions=False, client=("127.0.0.1", 50000))
    assert bare.get("/api/v1/tenants", params=RANGE).status_code == 401
    app = Starlette(routes=api.routes(lambda: seeded, cfg, clock=lambda: NOW, require_scope=True),
                    middleware=api.middleware(lambda: seeded, cfg, clock=lambda: NOW))
    local = TestClient(app, raise_server_exceptions=False, client=("127.0.0.1", 50000))
    assert local.get("/api/v1/tenants", params=RANGE).status_code == 200
