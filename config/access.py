"""Access: sign-in through OIDC, the mapping from ID-token claims to roles and tenants, session
timeout.

Written as the `[access]` table of centre.toml, or as its own file access.toml beside centre.toml
(the same keys at its top level); config/__init__.py validates it with `Section` and then
calls `check` with the rest of the centre, so that every problem names its file and key.

    sign_in = "oidc"                     # "off" (the default): no sign-in, for 127.0.0.1 only
    idle_timeout_min = 30                # a session idle this long signs out
    max_session_h = 12                   # and any sign-in ends this long after it was made
    [oidc]                               # [access.oidc] inside centre.toml
    server_metadata_url = "https://sso.centre.example/realms/dc/.well-known/openid-configuration"
    client_id = "zhisuan-dashboard"
    client_secret_file = "secrets/oidc-client-secret"   # relative to this file's folder
    cookie_secret_file = "secrets/cookie-secret"
    redirect_uri = "https://dashboard.centre.example/oauth2callback"
    [claims]                             # how the ID token's claims name roles and tenants
    groups = "groups"                    # the claim that lists the person's groups
    roles = { noc = ["role:noc"], manager = ["role:manager"], planner = ["role:planner"], admin = ["role:admin"] }
    tenant_prefix = "tenant:"            # a group "tenant:<id>" makes the person that tenant
    tenants = { acme = ["ext-acme-users"] }   # or name a tenant's groups one by one

Streamlit's `st.login` reads its provider from the `[auth]` secrets; app.py hands it
`streamlit_secrets()` built from these settings, so a site's sign-in lives in its own config
folder and the secrets stay in files that are not the config's text. `st.user` holds only the
ID token's claims: the IdP must put the groups claim into the ID token (Keycloak: a "Group
Membership" mapper with "Add to ID token"; Casdoor and MaxKey: the groups scope).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from config.base import Problems, Strict

ROLES = ("noc", "manager", "planner", "admin", "tenant")
STAFF_ROLES = ("admin", "manager", "planner", "noc")      # the role kept when a person holds several
PROVIDER = "centre"                                       # Streamlit's name for the one provider


class Oidc(Strict):
    server_metadata_url: str = Field(pattern=r"^https?://\S+$")
    client_id: str = Field(min_length=1)
    client_secret_file: str = Field(min_length=1)
    cookie_secret_file: str = Field(min_length=1)
    redirect_uri: str = Field(pattern=r"^https?://\S+/oauth2callback$")
    scope: str = "openid profile email"
    who_claims: list[str] = ["email", "preferred_username", "sub"]


class Claims(Strict):
    groups: str = Field(default="groups", min_length=1)
    roles: dict[Literal["noc", "manager", "planner", "admin"], list[str]] = {
        "noc": ["role:noc"], "manager": ["role:manager"], "planner": ["role:planner"], "admin": ["role:admin"]}
    tenant_prefix: str = "tenant:"
    tenants: dict[str, list[str]] = {}


class Section(Strict):
    """The [access] settings."""

    sign_in: Literal["off", "oidc"] = "off"
    idle_timeout_min: float = Field(default=30.0, ge=1, le=24 * 60, allow_inf_nan=False)
    max_session_h: float = Field(default=12.0, ge=0.1, le=24 * 30, allow_inf_nan=False)
    oidc: Oidc | None = None
    claims: Claims = Claims()

    @property
    def enabled(self) -> bool:
        return self.sign_in == "oidc"


def secret_path(directory: Path, name: str) -> Path:
    """A secret file's path: relative names are relative to the config folder."""
    p = Path(name)
    return p if p.is_absolute() else directory / p


def _read_secret(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


def check(problems: Problems, path: Path, key: str, section: Section, cf: Any, catalogue: Any) -> None:
    """Cross-checks against the rest of the centre (`cf`: the validated centre file). `key` is the
    prefix of this section's keys in messages ("access." inside centre.toml, "" in its own file)."""
    if section.enabled and section.oidc is None:
        problems.add(path, f"{key}oidc", 'sign_in = "oidc" needs the [oidc] settings (server_metadata_url, '
                     "client_id, client_secret_file, cookie_secret_file, redirect_uri)")
    if section.oidc is not None and section.enabled:
        for name in ("client_secret_file", "cookie_secret_file"):
            p = secret_path(path.parent, getattr(section.oidc, name))
            secret = _read_secret(p)
            if secret is None:
                problems.add(path, f"{key}oidc.{name}", f"cannot read a secret from {p} (a file holding it, "
                             "readable by the dashboard only)")
            elif name == "cookie_secret_file" and len(secret) < 32:
                problems.add(path, f"{key}oidc.{name}", f"the cookie secret in {p} is {len(secret)} characters; "
                             "use at least 32 random ones (python -c 'import secrets; print(secrets.token_hex(32))')")
    tenant_ids = [t.id for t in cf.tenants]
    for tenant in section.claims.tenants:
        if tenant not in tenant_ids:
            problems.add(path, f"{key}claims.tenants.{tenant}", f"unknown tenant {tenant!r}; expected one of "
                         f"{tenant_ids}")
    seen: dict[str, str] = {}
    named = [(f"role {r}", g) for r, gs in section.claims.roles.items() for g in gs]
    named += [(f"tenant {t}", g) for t, gs in section.claims.tenants.items() for g in gs]
    for owner, group in named:
        if group in seen and seen[group] != owner:
            problems.add(path, f"{key}claims", f"group {group!r} is given to {seen[group]} and to {owner}")
        seen.setdefault(group, owner)


def streamlit_secrets(section: Section, directory: Path) -> dict[str, Any] | None:
    """The `[auth]` secrets Streamlit's st.login reads, from the site's settings (None: sign-in
    off); `directory`: the config folder (cfg.directory)."""
    if not section.enabled or section.oidc is None:
        return None
    o = section.oidc
    return {"auth": {
        "redirect_uri": o.redirect_uri,
        "cookie_secret": _read_secret(secret_path(directory, o.cookie_secret_file)) or "",
        PROVIDER: {"client_id": o.client_id,
                   "client_secret": _read_secret(secret_path(directory, o.client_secret_file)) or "",
                   "server_metadata_url": o.server_metadata_url,
                   "client_kwargs": {"scope": o.scope}},
    }}
