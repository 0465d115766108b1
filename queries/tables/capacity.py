"""The capacity tables (migration 017_capacity.sql)."""

from __future__ import annotations

from queries.catalogue import Table

TABLES: tuple[Table, ...] = ()
