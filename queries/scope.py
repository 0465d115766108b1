"""Who is asking: the role and, for a tenant, the one tenant whose rows they may see.

Pages get it from their session's context, API routes from the request (issue 15 signs people
in and fills it); every tenant-facing query takes it, so a tenant's view is filtered below the
pages, never by a URL parameter. `EVERYTHING` is the scope of the NOC, managers, planners,
admins, jobs, and of every caller while sign-in is off.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("noc", "manager", "planner", "admin", "tenant")


@dataclass(frozen=True)
class Scope:
    role: str | None = None          # one of ROLES; None: sign-in off (everything, as before)
    tenant: str | None = None        # set for role "tenant": only this tenant's rows
    who: str | None = None           # the signed-in person or token, for the audit

    @property
    def everything(self) -> bool:
        return self.tenant is None

    def tenants(self, wanted: str | None = None) -> str | None:
        """The tenant a query is restricted to: the scope's own for a tenant (whatever was
        asked), else the one asked for (None: all)."""
        return self.tenant if self.tenant is not None else wanted


EVERYTHING = Scope()
