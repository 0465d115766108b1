"""API bearer tokens: made by an admin for a person or a service, scoped to a role or to one
tenant, stored hashed, revocable, with the time of their last use.

A token reads `zs_<token_id>_<secret>`: the id is public (the admin page lists it, the audit
names it), the secret is 32 random bytes shown once at creation. Only the secret's SHA-256 is
stored: the secret is random and long, so a plain hash is enough (a slow password hash guards
guessable secrets, and costs every API call), and a stolen database gives no usable token.
The comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timezone
from typing import Iterable

import pandas as pd
import pyarrow as pa

from queries import audit
from queries.catalogue import arrow_schema
from queries.history import Col, HistoryTable
from queries.scope import ROLES, Scope
from queries.store import Store, transaction

PREFIX = "zs_"
_TOKEN_RE = re.compile(r"zs_([a-z0-9]{12})_([A-Za-z0-9_-]{20,100})\Z")

COLUMNS = (
    Col("token_id", "", "access.tokens.col.token_id"),
    Col("name", "", "access.tokens.col.name"),
    Col("role", "", "access.tokens.col.role"),
    Col("tenant", "", "access.tokens.col.tenant"),
    Col("created_at", "", "access.tokens.col.created_at", "time"),
    Col("created_by", "", "access.tokens.col.created_by"),
    Col("last_used_at", "", "access.tokens.col.last_used_at", "time"),
    Col("revoked_at", "", "access.tokens.col.revoked_at", "time"),
    Col("revoked_by", "", "access.tokens.col.revoked_by"),
)


class TokenError(ValueError):
    """A token that cannot be made as asked: the words say which setting was wrong."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _by(by: Scope | str | None) -> str:
    return (by.who if isinstance(by, Scope) else by) or audit.LOCAL


def create(store: Store, *, name: str, role: str, tenant: str | None = None, by: Scope | str | None = None,
           tenants: Iterable[str] | None = None, now: datetime | None = None) -> tuple[str, str]:
    """Make a token; return (token_id, the token's text). The text is shown once and never
    stored. `tenants`: the configured tenant ids a tenant token may name."""
    name = (name or "").strip()
    if not name:
        raise TokenError("a token needs a name: the person or service it is for")
    if role not in ROLES:
        raise TokenError(f"role {role!r} is not one of {list(ROLES)}")
    if role == "tenant":
        known = None if tenants is None else list(tenants)
        if not tenant:
            raise TokenError("a tenant token needs its tenant")
        if known is not None and tenant not in known:
            raise TokenError(f"tenant {tenant!r} is not configured; expected one of {known}")
    elif tenant:
        raise TokenError(f"only a tenant token names a tenant (role {role!r} sees every tenant)")
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    at = now or datetime.now(timezone.utc)
    row = {"token_id": token_id, "secret_sha256": _hash(secret), "name": name, "role": role,
           "tenant": tenant if role == "tenant" else None, "created_at": at, "created_by": _by(by),
           "revoked_at": None, "revoked_by": None, "last_used_at": None}
    store.insert("api_tokens", pa.Table.from_pylist([row], schema=arrow_schema("api_tokens")))
    audit.record(store, by, "token_create", token_id, {"name": name, "role": role, "tenant": row["tenant"]}, at=at)
    return token_id, f"{PREFIX}{token_id}_{secret}"


def revoke(store: Store, token_id: str, *, by: Scope | str | None = None, now: datetime | None = None) -> bool:
    """Revoke a token; False when there is no such token or it was revoked already."""
    at = now or datetime.now(timezone.utc)
    with store.write_lock, store.cursor() as cur, transaction(cur):
        done = cur.execute("""UPDATE api_tokens SET revoked_at = ?, revoked_by = ?
                              WHERE token_id = ? AND revoked_at IS NULL RETURNING token_id""",
                           [at, _by(by), token_id]).fetchall()
    if done:
        audit.record(store, by, "token_revoke", token_id, at=at)
    return bool(done)


def authenticate(store: Store, text: str | None, *, now: datetime | None = None) -> Scope | None:
    """The scope of a valid, unrevoked token (its last use set to `now`); None for anything else."""
    m = _TOKEN_RE.match((text or "").strip())
    if not m:
        return None
    token_id, secret = m.groups()
    found = store.query("access_token", token_id=token_id)
    if found.empty:
        return None
    row = found.iloc[0]
    if not hmac.compare_digest(str(row["secret_sha256"]), _hash(secret)) or not pd.isna(row["revoked_at"]):
        return None
    if not store.read_only:
        with store.write_lock, store.cursor() as cur, transaction(cur):
            cur.execute("UPDATE api_tokens SET last_used_at = ? WHERE token_id = ?",
                        [now or datetime.now(timezone.utc), token_id]).fetchall()
    tenant = row["tenant"] if isinstance(row["tenant"], str) else None
    return Scope(role=str(row["role"]), tenant=tenant, who=f"token:{row['name']} ({token_id})")


def table(store: Store, *, tz: str = "UTC") -> HistoryTable:
    """Every token, newest first, without its hash (the admin page and its CSV)."""
    df = store.query("access_tokens")
    return HistoryTable(COLUMNS, df[[c.name for c in COLUMNS]].reset_index(drop=True), tz=tz)
