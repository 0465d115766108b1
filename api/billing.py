"""The billing routes, in the history routes' style (api/history.py, docs/api.md)."""

from __future__ import annotations

ROUTES: list = []       # (path, name, build(store, cfg, params, now, scope) -> (HistoryTable, fmt))
