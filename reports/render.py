"""Wording a `Report` in one language: headers with units, cells as people read them, titles.

The PDF shows formatted text (this module's `cells`); the XLSX keeps the numbers as numbers and
takes only the headers and the words from here. Keys in a block's `words` columns (an incident
kind, a headline figure) become words; tenant ids become the tenant's name, as on the pages.
"""

from __future__ import annotations

import math
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

import i18n
from queries import history
from queries.history import Col
from reports.data import OTHERS, Block, Report

_FORMATS = {
    "hours": "{:,.1f}", "pct": "{:.1f} %", "share": "{:.1f} %", "pflops": "{:,.2f}", "kwh": "{:,.1f}",
    "money": "{:,.0f}", "cny": "{:,.2f}", "count": "{:,.0f}", "gpus": "{:,.1f}", "delta": "{:+.1f} %",
    "points": "{:+.1f}", "ratio": "{:.3f}", "kw": "{:,.1f}", "kg": "{:,.1f}",
}


def missing(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def number(v: float) -> str:
    """A headline number: two decimals below 100, one below 10,000, none above."""
    a = abs(v)
    return f"{v:,.2f}" if a < 100 else f"{v:,.1f}" if a < 10_000 else f"{v:,.0f}"


def header(col: Col, lang: str, table: Any = None) -> str:
    """A column's header with its unit; a billing table's own headers (a programme's name) win."""
    own = getattr(table, "headers", None) or {}
    text = (own[col.name].get(lang) or own[col.name]["en"]) if col.name in own else i18n.t(col.label, lang)
    unit = col.unit or ("CNY" if col.kind == "cny" else "")
    return f"{text} ({unit})" if unit else text


def tenant_label(tenant: str, names: dict[str, str], lang: str) -> str:
    if tenant == OTHERS:
        return i18n.t("reports.tenants.others", lang)
    return history.tenant_name(tenant, names, lang)


def word(block: Block, col: Col, v: Any, lang: str) -> str | None:
    """A cell's words when its column holds keys or tenant ids; None for a plain value."""
    if missing(v):
        return None
    prefix = block.words.get(col.name)
    if prefix is not None:
        return i18n.t(prefix + str(v), lang)
    if col.name in ("tenant", "key"):
        return tenant_label(str(v), block.table.names, lang)
    if col.kind == "flag":
        return i18n.t("reports.page.yes" if v else "reports.page.no", lang)
    if col.kind == "word":
        return i18n.t(f"billing.word.{v}", lang)
    if col.kind == "programme" and hasattr(block.table, "programme_name"):
        return str(block.table.programme_name(str(v), lang))
    return None


def cell(block: Block, col: Col, v: Any, lang: str, zone: ZoneInfo) -> str:
    if missing(v):
        return "—"
    w = word(block, col, v, lang)
    if w is not None:
        return w
    if col.kind == "time":
        return pd.Timestamp(v).to_pydatetime().astimezone(zone).strftime("%Y-%m-%d %H:%M")
    if col.kind in _FORMATS:
        return _FORMATS[col.kind].format(float(v))
    if col.kind == "number":
        return number(float(v))
    return str(v)


def _days_only(values: pd.Series, zone: ZoneInfo) -> bool:
    """A time column of local midnights (daily buckets): shown as dates."""
    times = pd.to_datetime(values.dropna(), utc=True)
    if times.empty:
        return False
    local = times.dt.tz_convert(zone)
    return bool(((local.dt.hour == 0) & (local.dt.minute == 0)).all())


def cells(block: Block, lang: str) -> tuple[list[str], list[list[str]]]:
    """The block's headers and rows as text, in `lang`."""
    table = block.table_for(lang)
    if table is not block.table:
        block = Block(block.name, block.title, table, block.words, block.note)
    zone = ZoneInfo(block.table.tz)
    cols = block.table.columns
    rows = block.table.rows
    data = [[cell(block, c, v, lang, zone) for c, v in zip(cols, values)]
            for values in zip(*(rows[c.name] if c.name in rows else [None] * len(rows) for c in cols))]
    for j, c in enumerate(cols):
        if c.kind == "time" and c.name in rows and _days_only(rows[c.name], zone):
            for r in data:
                r[j] = r[j][:10]
    return [header(c, lang, block.table) for c in cols], data


def section_title(key: str, lang: str) -> str:
    return i18n.t(f"reports.section.{key}", lang)


def month_title(report: Report, lang: str) -> str:
    y, m = report.month.split("-")
    return i18n.t("reports.month_name", lang, year=y, month=m if lang == "en" else str(int(m)))


def title(report: Report, lang: str) -> str:
    key = "reports.title.tenant" if report.tenant else "reports.title"
    return i18n.t(key, lang, month=month_title(report, lang), tenant=report.tenant or "")
