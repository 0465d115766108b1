"""The audit trail: who did what, when (sign-ins, sign-outs, session timeouts, denied access,
meter imports, bill issues, API token use, token creation and revocation).

`record` is the one way in, for every area (billing calls it when it issues a bill, the meter
import when it stores readings). It never raises into its caller: an audit row that cannot be
written (a read-only store, as in a second dashboard looking at a file another process owns)
is logged on the server instead, since refusing a sign-in or a bill because the trail is
unavailable would be worse than a gap the log shows. `table` builds the admin page's table,
its CSV and /api/v1/audit from one query (queries/sql/access_audit.sql).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pyarrow as pa

import i18n
from queries.catalogue import arrow_schema
from queries.history import Col, HistoryTable
from queries.scope import Scope
from queries.store import Store

log = logging.getLogger(__name__)

ACTIONS = ("sign_in", "sign_out", "session_timeout", "denied", "meter_import", "bill_issue",
           "token_use", "token_create", "token_revoke", "view_as")
LOCAL = "local"                  # who, while sign-in is off (the person at the machine)
MAX_ROWS = 10_000                # rows in one read; the admin narrows the range for more

COLUMNS = (
    Col("ts", "", "access.audit.col.ts", "time"),
    Col("who", "", "access.audit.col.who"),
    Col("role", "", "access.audit.col.role"),
    Col("tenant", "", "access.audit.col.tenant"),
    Col("action", "", "access.audit.col.action"),
    Col("target", "", "access.audit.col.target"),
    Col("detail", "", "access.audit.col.detail"),
)


def _who(who_or_scope: Scope | str | None) -> tuple[str, str | None, str | None]:
    if isinstance(who_or_scope, Scope):
        return who_or_scope.who or LOCAL, who_or_scope.role, who_or_scope.tenant
    return (who_or_scope or LOCAL), None, None


def record(store: Store, who_or_scope: Scope | str | None, action: str, target: str | None = None,
           detail: str | dict | list | None = None, *, at: datetime | None = None) -> bool:
    """Append one audit row: `who_or_scope` is the acting session's or token's Scope (its who,
    role and tenant are kept) or a name; `action` one of ACTIONS; `target` what it was done to
    (a page, an API route, a bill id, a file); `detail` text, or a dict/list kept as JSON.
    Returns whether the row was stored (False: logged instead, see the module docstring)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; expected one of {list(ACTIONS)}")
    who, role, tenant = _who(who_or_scope)
    text = detail if detail is None or isinstance(detail, str) else json.dumps(detail, ensure_ascii=False,
                                                                                default=str)
    row = {"ts": at or datetime.now(timezone.utc), "event_id": uuid.uuid4().hex, "who": who, "role": role,
           "tenant": tenant, "action": action, "target": target, "detail": text}
    if store.read_only:
        log.warning("audit (not stored: the database is open read-only here): %s", row)
        return False
    try:
        store.insert("audit_log", pa.Table.from_pylist([row], schema=arrow_schema("audit_log")))
    except Exception:                   # the caller's action stands; the row goes to the log
        log.exception("audit row could not be stored: %s", row)
        return False
    return True


def rows(store: Store, *, start: datetime, end: datetime, action: str | None = None,
         who: str | None = None, max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """Audit rows in [start, end), newest first, optionally of one action or one person."""
    return store.query("access_audit", audit_start=start, audit_end=end, audit_action=action, audit_who=who,
                       audit_max_rows=max_rows)


def table(store: Store, *, start: datetime, end: datetime, action: str | None = None,
          who: str | None = None, tz: str = "UTC", max_rows: int = MAX_ROWS) -> HistoryTable:
    """The audit as a table for people (the admin page, its CSV, /api/v1/audit)."""
    df = rows(store, start=start, end=end, action=action, who=who, max_rows=max_rows)
    return HistoryTable(COLUMNS, df[[c.name for c in COLUMNS]].reset_index(drop=True), tz=tz)


def action_label(action: Any, lang: str) -> str:
    """An action's name in `lang` (the stored value when it has none)."""
    key = f"access.action.{action}"
    return i18n.t(key, lang) if isinstance(action, str) and i18n.has(key) else str(action)
