"""The history tables added after migration 013 (migration 019_history.sql); the rollup tiers
of migrations 012-013 stay declared in queries/catalogue.py."""

from __future__ import annotations

from queries.catalogue import Table

TABLES: tuple[Table, ...] = ()
