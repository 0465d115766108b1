"""The audit trail (queries/audit.py) and the API tokens (queries/tokens.py) on an in-memory store."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from queries import Store, audit, tokens
from queries.scope import Scope

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
ADMIN = Scope("admin", None, "ada@centre.example")
ACME = Scope("tenant", "acme", "bob@acme.example")


@pytest.fixture
def store():
    s = Store(":memory:")
    yield s
    s.close()


def audit_rows(store, **kw):
    return audit.rows(store, start=T0 - timedelta(days=1), end=T0 + timedelta(days=1), **kw)


def test_record_keeps_who_role_tenant_action_target_detail(store):
    assert audit.record(store, ACME, "sign_in", "oidc", at=T0)
    assert audit.record(store, ADMIN, "bill_issue", "bill-2026-11-acme", {"total_cny": 1234.5},
                        at=T0 + timedelta(minutes=1))
    assert audit.record(store, None, "meter_import", "meters.csv", "12 readings", at=T0 + timedelta(minutes=2))
    df = audit_rows(store)
    assert list(df["action"]) == ["meter_import", "bill_issue", "sign_in"]          # newest first
    first = df.iloc[2]
    assert (first["who"], first["role"], first["tenant"], first["target"]) == (
        "bob@acme.example", "tenant", "acme", "oidc")
    assert json.loads(df.iloc[1]["detail"]) == {"total_cny": 1234.5}
    assert df.iloc[0]["who"] == audit.LOCAL and pd.isna(df.iloc[0]["role"])
    assert list(audit_rows(store, action="sign_in")["who"]) == ["bob@acme.example"]
    assert list(audit_rows(store, who="ada@centre.example")["action"]) == ["bill_issue"]


def test_record_refuses_an_unknown_action_and_never_raises_on_a_read_only_store(store, tmp_path):
    with pytest.raises(ValueError, match="unknown audit action 'signin'"):
        audit.record(store, ADMIN, "signin")
    path = tmp_path / "a.duckdb"
    Store(path).close()
    ro = Store(path, read_only=True)
    try:
        assert audit.record(ro, ADMIN, "sign_in") is False
    finally:
        ro.close()


def test_audit_table_for_people_and_csv(store):
    audit.record(store, ADMIN, "denied", "/api/v1/tenants", "role admin", at=T0)
    t = audit.table(store, start=T0, end=T0 + timedelta(hours=1), tz="Asia/Shanghai")
    assert t.records() == [{"ts": "2026-11-20T16:00:00+08:00", "who": "ada@centre.example", "role": "admin",
                            "tenant": None, "action": "denied", "target": "/api/v1/tenants",
                            "detail": "role admin"}]
    assert t.to_csv().splitlines()[0] == "ts,who,role,tenant,action,target,detail"
    assert list(t.for_people("zh-CN").columns)[0] == "时间"


def test_token_is_stored_hashed_scoped_and_revocable(store):
    token_id, text = tokens.create(store, name="grafana-acme", role="tenant", tenant="acme", by=ADMIN,
                                   tenants=["acme", "beta"], now=T0)
    assert text.startswith(f"zs_{token_id}_")
    with store.cursor() as cur:
        stored = cur.execute("SELECT * FROM api_tokens").fetchall()
    assert len(stored) == 1 and not any(text.split("_", 2)[2] in str(v) for v in stored[0])  # the secret is not kept
    scope = tokens.authenticate(store, text, now=T0 + timedelta(hours=1))
    assert scope == Scope("tenant", "acme", f"token:grafana-acme ({token_id})")
    assert tokens.table(store).records()[0]["last_used_at"] == "2026-11-20T09:00:00+00:00"
    assert tokens.authenticate(store, text[:-1] + ("A" if text[-1] != "A" else "B")) is None   # wrong secret
    assert tokens.authenticate(store, "Bearer " + text) is None and tokens.authenticate(store, None) is None
    assert tokens.revoke(store, token_id, by=ADMIN, now=T0 + timedelta(hours=2))
    assert not tokens.revoke(store, token_id, by=ADMIN)                          # once
    assert tokens.authenticate(store, text) is None
    row = tokens.table(store).records()[0]
    assert (row["revoked_at"], row["revoked_by"]) == ("2026-11-20T10:00:00+00:00", "ada@centre.example")
    assert list(audit_rows(store)["action"]) == ["token_revoke", "token_create"]


@pytest.mark.parametrize("kw, words", [
    ({"name": " ", "role": "noc"}, "needs a name"),
    ({"name": "x", "role": "root"}, "role 'root' is not one of"),
    ({"name": "x", "role": "tenant"}, "needs its tenant"),
    ({"name": "x", "role": "tenant", "tenant": "nobody"}, "tenant 'nobody' is not configured"),
    ({"name": "x", "role": "manager", "tenant": "acme"}, "only a tenant token names a tenant"),
])
def test_token_creation_refuses_bad_settings(store, kw, words):
    with pytest.raises(tokens.TokenError, match=words):
        tokens.create(store, tenants=["acme"], by=ADMIN, **kw)
