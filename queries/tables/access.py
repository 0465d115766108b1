"""The access tables (migration 016_access.sql)."""

from __future__ import annotations

from queries.catalogue import Table

TABLES: tuple[Table, ...] = ()
