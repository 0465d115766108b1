"""Shared page plumbing: config, language, formatting, navigation.

`main` builds the session's `PageContext` (pages/context.py: config, store,
language, filters) and hands it to the pages; the database is reached only
through it.

No page shows a traceback: `main` runs the page, and pages run their
auto-refreshing fragments, through `guarded`, which turns any exception into a
plain message with the exception's words and logs the traceback on the server
(.streamlit/config.toml's client.showErrorDetails = "none" is the second line of
defence). Streamlit's own control flow (st.stop, st.rerun) passes through.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import pandas as pd
import streamlit as st

import config
import i18n
from pages import context
from queries import DatabaseUnavailable
from queries.scope import Scope

log = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False)
def cfg() -> config.Config:
    return config.load()


def lang() -> str:
    return i18n.normalise(st.query_params.get("lang") or cfg().centre.default_language)


def t(key: str, **values: object) -> str:
    return i18n.t(key, lang(), **values)


def i18n_has(key: str) -> bool:
    return i18n.has(key)


def now() -> datetime:
    return datetime.now(timezone.utc)


def param_choice(name: str, options: list[str], default: str) -> str:
    """A query-parameter value restricted to `options` (so shared URLs can't inject)."""
    value = st.query_params.get(name)
    return value if value in options else default


def set_param(name: str, value: str | None, default: str | None = None) -> None:
    if value is None or value == default:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != value:
        st.query_params[name] = value


def missing(v: object) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def table_height(rows: int, max_rows: int | None = None) -> int:
    """Pixels for st.dataframe to show `rows` rows without empty ones; beyond max_rows it scrolls."""
    shown = rows if max_rows is None else min(rows, max_rows)
    return 38 + 35 * max(shown, 1)


def fmt_num(v: Any, digits: int = 0, unit: str = "") -> str:
    if missing(v):
        return "—"
    text = f"{float(v):,.{digits}f}"
    return f"{text} {unit}".rstrip()


def fmt_age(ts: object, at: datetime | None = None) -> str:
    if missing(ts):
        return t("common.never")
    at = at or now()
    secs = max(0, int((at - pd.Timestamp(ts).to_pydatetime()).total_seconds()))
    if secs < 90:
        return t("common.ago_s", n=secs)
    if secs < 90 * 60:
        return t("common.ago_m", n=secs // 60)
    if secs < 36 * 3600:
        return t("common.ago_h", n=secs // 3600)
    return t("common.ago_d", n=secs // 86400)


def fmt_time(ts: object) -> str:
    if missing(ts):
        return "—"
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S UTC")


def cluster_filter(ctx: context.PageContext) -> str | None:
    """Sidebar cluster picker, kept in the URL and in the context's filters; None for all clusters."""
    ids = [c.id for c in ctx.cfg.clusters]
    names = {c.id: c.name for c in ctx.cfg.clusters}
    options = ["all", *ids]
    labels = {"all": t("filter.all_clusters"), **{c: f"{names[c]} ({c})" for c in ids}}
    current = param_choice("cluster", options, "all")
    # format_func must not read session state: widgets are re-serialised outside the script
    choice = st.sidebar.selectbox(t("filter.cluster"), options, index=options.index(current),
                                  format_func=labels.__getitem__, key="cluster_filter")
    set_param("cluster", choice, "all")
    ctx.filters["cluster"] = None if choice == "all" else choice
    return ctx.filters["cluster"]


def language_switch() -> None:
    options = list(i18n.LANGUAGES)
    current = lang()
    choice = st.sidebar.selectbox(
        "Language / 语言", options, index=options.index(current),
        format_func=lambda code: i18n.LANGUAGES[code], key="language")
    set_param("lang", choice, None)
    if choice != current:
        st.rerun()


def show_error(exc: Exception) -> None:
    """A failure in plain words on the page; its traceback in the server log."""
    log.error("page failed", exc_info=exc)
    st.error(t("pages.error", error=f"{type(exc).__name__}: {exc}"), icon=":material/error:")


def guarded(fn: Callable[..., None]) -> Callable[..., None]:
    """`fn` with any exception shown by `show_error` instead of a traceback."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:           # st.stop / st.rerun are BaseExceptions and pass
            show_error(exc)
    return run


@dataclass(frozen=True)
class NavPage:
    """A page in the navigation, and the roles that may open it (sign-in off: every page)."""

    script: str
    title_key: str
    icon: str
    url_path: str
    roles: tuple[str, ...]
    default: bool = False

    def visible(self, scope: Scope) -> bool:
        if scope.role is not None and scope.role not in self.roles:
            return False
        return (config.PROJECT_ROOT / self.script).exists()


NAV: tuple[NavPage, ...] = (
    NavPage("pages/live.py", "nav.live", ":material/monitor_heart:", "live", ("noc", "manager", "admin"),
            default=True),
    NavPage("pages/utilisation.py", "nav.utilisation", ":material/insights:", "utilisation",
            ("manager", "planner", "admin", "tenant")),
    NavPage("pages/tenants.py", "nav.tenants", ":material/groups:", "tenants",
            ("manager", "planner", "admin", "tenant")),
    NavPage("pages/energy.py", "nav.energy", ":material/bolt:", "energy", ("manager", "planner", "admin")),
    NavPage("pages/billing.py", "nav.billing", ":material/receipt_long:", "billing", ("manager", "admin", "tenant")),
    NavPage("pages/capacity.py", "nav.capacity", ":material/trending_up:", "capacity", ("planner", "manager", "admin")),
    NavPage("pages/reports.py", "nav.reports", ":material/description:", "reports", ("manager", "admin", "tenant")),
    NavPage("pages/sources.py", "nav.sources", ":material/lan:", "sources", ("noc", "manager", "admin")),
    NavPage("pages/admin.py", "nav.admin", ":material/admin_panel_settings:", "admin", ("admin",)),
)


def main() -> None:
    """Entry point of every session: page setup, sidebar, navigation."""
    try:
        centre = cfg()
    except config.ConfigError as exc:
        st.error(str(exc))
        st.stop()
    st.set_page_config(page_title=centre.centre.name, page_icon=":material/memory:", layout="wide")
    language_switch()
    try:
        ctx = context.build(centre)
    except DatabaseUnavailable as exc:     # owned by another process, damaged, unusable: its words say which
        st.error(t("pages.db_owned", error=str(exc)), icon=":material/database:")
        st.stop()
    ctx.lang = lang()
    pages = [st.Page(p.script, title=t(p.title_key), icon=p.icon, url_path=p.url_path, default=p.default)
             for p in NAV if p.visible(ctx.scope)]
    nav = st.navigation(pages)
    st.sidebar.caption(centre.centre.name)
    if centre.simulated:
        st.sidebar.info(t("common.simulated_note"), icon=":material/science:")
    guarded(nav.run)()
