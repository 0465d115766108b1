"""Who may see what: ID-token claims to a Scope, the demo's "view as" scopes, which roles open
which API route, and whether the server may start on the address it was given.

Plain Python (no Streamlit): pages/ui.py and api/__init__.py call it, tests drive it directly.

- A person's role comes from the groups claim through `[access.claims]` (config/access.py). A
  person in several staff groups gets the widest role (admin, manager, planner, noc). A tenant
  group counts only for a person in no staff group, and a person in the groups of two tenants is
  refused: which tenant's rows they may see would be a guess.
- The tenant always comes from the session or the token, never from a URL: a tenant's Scope
  fixes the tenant every tenant-facing query filters on (queries/scope.py).
- Sign-in off is for one machine: a server on any other address without sign-in refuses to start
  (`start_problem`), and the API then answers only callers on the loopback address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import config
from config.access import STAFF_ROLES, Section
from queries.scope import EVERYTHING, Scope

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")

# The API's routes, by area module, and the roles that may call them (the pages' rule, pages/ui.py
# NAV): history's utilisation and tenant usage as the utilisation and tenant pages; energy,
# billing and capacity as their pages. A module may name its own with `ROLES`.
API_ROLES: dict[str, tuple[str, ...]] = {
    "history": ("manager", "planner", "admin", "tenant"),
    "energy": ("manager", "planner", "admin"),
    "billing": ("manager", "admin", "tenant"),
    "capacity": ("planner", "manager", "admin"),
    "reports": ("manager", "admin", "tenant"),
}
STAFF_EVERYWHERE = ("manager", "admin")      # roles that may read every route an area adds


@dataclass(frozen=True)
class Refusal:
    """A signed-in person the dashboard cannot give a role: `key` (i18n) says why."""

    key: str
    values: Mapping[str, Any]


def groups_of(claims: Mapping[str, Any], claim: str) -> list[str]:
    """The groups a claim lists: a JSON list, or one string of groups separated by spaces or
    commas (some IdPs flatten it)."""
    value = claims.get(claim)
    if isinstance(value, str):
        return [g for g in value.replace(",", " ").split() if g]
    if isinstance(value, (list, tuple)):
        return [str(g) for g in value]
    return []


def who_of(claims: Mapping[str, Any], who_claims: Iterable[str]) -> str:
    for name in who_claims:
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return "unknown"


def scope_from_claims(section: Section, claims: Mapping[str, Any], tenant_ids: Iterable[str]) -> Scope | Refusal:
    """The Scope of a signed-in person from their ID-token claims, or why they get none."""
    who_claims = section.oidc.who_claims if section.oidc is not None else ["email", "sub"]
    who = who_of(claims, who_claims)
    groups = set(groups_of(claims, section.claims.groups))
    for role in STAFF_ROLES:
        if groups & set(section.claims.roles.get(role, [])):            # type: ignore[call-overload]
            return Scope(role, None, who)
    known = list(tenant_ids)
    tenants = {t for t, gs in section.claims.tenants.items() if groups & set(gs)}
    prefix = section.claims.tenant_prefix
    if prefix:
        tenants |= {g[len(prefix):] for g in groups if g.startswith(prefix) and g[len(prefix):] in known}
    if len(tenants) == 1:
        return Scope("tenant", tenants.pop(), who)
    if len(tenants) > 1:
        return Refusal("access.refused.two_tenants", {"who": who, "tenants": ", ".join(sorted(tenants))})
    return Refusal("access.refused.no_role", {"who": who, "claim": section.claims.groups,
                                              "groups": ", ".join(sorted(groups)) or "—"})


# ---- the demo's "view as" --------------------------------------------------------------

def view_as_available(cfg: config.Config) -> bool:
    """The switch exists only in the simulated centre with sign-in off: never beside real
    sources, and never where a sign-in decides who sees what."""
    return cfg.simulated and not cfg.access.enabled


def view_as_options(cfg: config.Config) -> list[str]:
    """"" (everything, as with sign-in off), each staff role, then "tenant:<id>" per tenant."""
    return ["", "noc", "manager", "planner", "admin", *(f"tenant:{t.id}" for t in cfg.tenants)]


def view_as_scope(cfg: config.Config, choice: str | None) -> Scope:
    """The Scope a demo choice stands for; EVERYTHING for none or for anything not offered."""
    if not choice or choice not in view_as_options(cfg) or not view_as_available(cfg):
        return EVERYTHING
    if choice.startswith("tenant:"):
        tenant = choice.removeprefix("tenant:")
        return Scope("tenant", tenant, f"view-as:{tenant}")
    return Scope(choice, None, f"view-as:{choice}")


# ---- the API --------------------------------------------------------------------------

def route_roles(module: Any) -> tuple[str, ...]:
    """The roles that may call a route of an api/<area>.py module."""
    own = getattr(module, "ROLES", None)
    if own is not None:
        return tuple(own)
    name = getattr(module, "__name__", str(module)).rsplit(".", 1)[-1]
    return API_ROLES.get(name, STAFF_EVERYWHERE)


def may_open(scope: Scope, roles: Iterable[str]) -> bool:
    """Sign-in off (no role): everything; else the scope's role must be one of `roles`."""
    return scope.role is None or scope.role in tuple(roles)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def start_problem(cfg: config.Config, address: str | None) -> str | None:
    """Why the dashboard must not serve `address` (Streamlit's server.address; empty: every
    interface), or None. Without sign-in it may serve this machine only."""
    if cfg.access.enabled or is_loopback(address):
        return None
    where = repr(address) if address else "every network interface (no server.address)"
    return (f"Dashboard not started: it would serve {where} without sign-in, so anyone who can reach "
            f"that address would see every tenant's data. Either serve this machine only "
            f"(server.address = \"127.0.0.1\", the default in .streamlit/config.toml), or configure "
            f"sign-in: sign_in = \"oidc\" with its [oidc] settings in {cfg.directory}/access.toml "
            f"(docs/access.md).")
