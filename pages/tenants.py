"""Tenant-usage page: per tenant over a range, against the previous range, and one tenant's
devices and days.

Per tenant: GPU-hours allocated, busy and useful, mean utilisation while allocated, peak
concurrent GPUs, board-level energy, and the change against the previous range of equal
length. Unattributed usage (a pod or job held a device but no lease or rule names a tenant)
is a row of its own, always shown. The range, filters and drilled-down tenant live in the URL
(pages/utilisation.py `range_controls`); the tables are queries/history.py's, the same the
API's /api/v1/tenants answers, each with its CSV.
"""

from __future__ import annotations

from datetime import datetime

import plotly.graph_objects as go
import streamlit as st

from pages.billing import quota_watch
from pages import context, ui
from pages.context import PageContext
from pages.live import text
from pages.utilisation import USEFUL_COLOUR, range_controls, show_table
from queries import history
from queries.history import View


def usage_section(ctx: PageContext, view: View, now: datetime) -> list[str]:
    """The per-tenant table and chart; the tenants it lists."""
    t = ctx.t
    st.subheader(t("history.tenants.table"))
    table = history.tenants(ctx.store, ctx.cfg, view, now, scope=ctx.scope)
    df = table.rows
    names = [text(history.tenant_name(k, table.names, ctx.lang)) for k in df["tenant"]]
    fig = go.Figure()
    for col, colour in (("allocated_gpu_hours", "#8fbce6"), ("busy_gpu_hours", "#4a90c8"),
                        ("useful_gpu_hours", USEFUL_COLOUR)):
        fig.add_trace(go.Bar(x=names, y=df[col], name=t(f"history.col.{col.removesuffix('_gpu_hours')}"),
                             marker={"color": colour}, hovertemplate="%{x}: %{y:,.1f} GPU-h<extra></extra>"))
    fig.update_layout(barmode="group", height=300, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      yaxis={"title": t("history.axis.gpu_hours")}, legend={"orientation": "h", "y": -0.25},
                      plot_bgcolor="white")
    st.plotly_chart(fig, width="stretch", key="tenants_bars")
    show_table(ctx, table, "tenants", max_rows=20)
    st.caption(t("history.tenants.trend_help"))
    return [str(k) for k in df["tenant"]]


def drill_section(ctx: PageContext, view: View, now: datetime, tenants: list[str]) -> None:
    t = ctx.t
    st.subheader(t("history.tenants.drill"))
    if not tenants:
        return
    names = history.tenant_names(ctx.cfg, scope=ctx.scope)
    tenant = ui.url_select(st, t("history.col.tenant"), "drill", tenants, tenants[0], key="tenant_drill",
                           format_func=lambda k: history.tenant_name(k, names, ctx.lang), keep_default=True)
    daily = history.tenant_daily(ctx.store, ctx.cfg, view, tenant, now, scope=ctx.scope)
    df = daily.rows
    fig = go.Figure()
    fig.add_trace(go.Bar(x=df["bucket"], y=df["allocated_gpu_hours"], name=t("history.col.allocated"),
                         marker={"color": "#8fbce6"}))
    fig.add_trace(go.Bar(x=df["bucket"], y=df["busy_gpu_hours"], name=t("history.col.busy"),
                         marker={"color": "#4a90c8"}))
    fig.add_trace(go.Scatter(x=df["bucket"], y=df["util_pct"], name=t("history.col.util_allocated"), yaxis="y2",
                             mode="lines+markers", line={"color": "#d62728"}))
    fig.update_layout(barmode="group", height=300, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      yaxis={"title": t("history.axis.gpu_hours")},
                      yaxis2={"title": "%", "overlaying": "y", "side": "right", "range": [0, 100]},
                      legend={"orientation": "h", "y": -0.25}, plot_bgcolor="white")
    st.markdown(f"**{t('history.tenants.daily')}**")
    st.plotly_chart(fig, width="stretch", key="tenant_daily")
    show_table(ctx, daily, f"tenant-{tenant}-daily")
    st.markdown(f"**{t('history.tenants.devices')}**")
    devices = history.devices(ctx.store, ctx.cfg, view, now, tenant=tenant, scope=ctx.scope)
    if devices.rows.empty:
        st.caption(t("history.no_rows"))
        return
    show_table(ctx, devices, f"tenant-{tenant}-devices")


def tenants_view(ctx: PageContext, view: View, now: datetime) -> None:
    tenants = usage_section(ctx, view, now)
    quota_watch(ctx, view)                      # near or over quota (billing's quotas); nothing without quotas
    st.divider()
    drill_section(ctx, view, now, tenants)


def page(ctx: PageContext) -> None:
    st.title(ctx.t("history.tenants.title"))
    now = ui.now()
    view = range_controls(ctx, now, filters=("site", "cluster", "model"))
    ui.guarded(tenants_view)(ctx, view, now)


if __name__ == "__main__":          # st.navigation runs a page file as __main__
    page(context.current())
