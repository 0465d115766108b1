"""The billing tables (migration 015_billing.sql)."""

from __future__ import annotations

from queries.catalogue import Table

TABLES: tuple[Table, ...] = ()
