"""The reports tables (migration 018_reports.sql)."""

from __future__ import annotations

from queries.catalogue import Table

TABLES: tuple[Table, ...] = ()
