"""The energy tables (migration 014_energy.sql)."""

from __future__ import annotations

from queries.catalogue import Table

TABLES: tuple[Table, ...] = ()
