"""The history routes: `/api/v1/utilisation` and `/api/v1/tenants` (docs/api.md).

Both answer within the caller's scope (queries/history.py): a signed-in tenant gets its own
rows alone, whatever its `tenant` parameter says, and no fleet figure."""

from __future__ import annotations

from datetime import datetime

import config
from queries import history
from queries.scope import Scope
from queries.store import Store


def utilisation_table(store: Store, cfg: config.Config, params: dict[str, str],
                      now: datetime, scope: Scope) -> tuple[history.HistoryTable, str]:
    view, fmt = history.api_view(params, cfg, store, route="utilisation", scope=scope)
    return history.utilisation(store, cfg, view, now, scope=scope), fmt


def tenants_table(store: Store, cfg: config.Config, params: dict[str, str],
                  now: datetime, scope: Scope) -> tuple[history.HistoryTable, str]:
    view, fmt = history.api_view(params, cfg, store, route="tenants", scope=scope)
    return history.tenants(store, cfg, view, now, trend=False, scope=scope), fmt


ROUTES = [
    ("/api/v1/utilisation", "utilisation", utilisation_table),
    ("/api/v1/tenants", "tenants", tenants_table),
]
