"""Utilisation page: the ladder over a range, per cluster and model, over time, by hour of week,
and the reclaim list.

The whole view (range, month or days, site, cluster, model, tenant) lives in the URL, every
value checked against a whitelist (an unknown one falls back to the default), so a view can
be shared. Every table comes from queries/history.py, the builder the API and CSV downloads
use, so the page shows what `/api/v1/utilisation` answers; each table shown has its CSV.

`range_controls` is shared with the tenant-usage page (pages/tenants.py).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages import context, ui
from pages.context import PageContext
from pages.live import text
from queries import history
from queries.history import HistoryTable, View

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# the losses between the ladder's steps, in order, each with its colour
LOSSES = (("no_data", "#9e9e9e"), ("unavailable", "#d62728"), ("unallocated", "#ff7f0e"),
          ("idle", "#ffbf00"), ("not_useful", "#8fbce6"))
USEFUL_COLOUR = "#1f77b4"
RECLAIM_DEVICES = 50


def _day_param(name: str, default: date) -> date:
    try:
        return history.parse_day(name, st.query_params.get(name)) or default
    except history.ParamError:
        return default


def range_controls(ctx: PageContext, now: datetime, *, filters: tuple[str, ...] = history.FILTERS) -> View:
    """The sidebar's range and filters, read from and written to the URL; the view they make
    (step all, by fleet)."""
    t, cfg = ctx.t, ctx.cfg
    side = st.sidebar
    kind = ui.param_choice("range", list(history.RANGES), "7d")
    kind = side.selectbox(t("history.range"), list(history.RANGES), index=list(history.RANGES).index(kind),
                          format_func=lambda k: ctx.t(f"history.range.{k}"), key="history_range")
    ui.set_param("range", kind, "7d")
    allowed = history.choices(cfg, ctx.store, scope=ctx.scope)
    picked: dict[str, str | None] = {}
    for name in filters:
        options = ["all", *allowed[name]]
        current = ui.param_choice(name, options, "all")
        names = {"all": t(f"history.filter.all_{name}")}
        if name == "tenant":
            known = history.tenant_names(cfg, scope=ctx.scope)
            names.update({k: history.tenant_name(k, known, ctx.lang) for k in allowed[name]})

        def label(k: str, names: dict[str, str] = names) -> str:
            return names.get(k, k)

        choice = side.selectbox(t(f"history.filter.{name}"), options, index=options.index(current),
                                format_func=label, key=f"history_{name}")
        ui.set_param(name, choice, "all")
        picked[name] = None if choice == "all" else choice
    tz = history.default_tz(cfg, picked.get("site"))
    month = day_from = day_to = None
    if kind == "month":
        months = history.recent_months(now, tz)
        shared = st.query_params.get("month")
        try:                        # a shared link's month may be older than the list: kept when valid
            if shared and shared not in months and history.range_bounds("month", now, tz, month=shared):
                months.append(shared)
        except history.ParamError:
            pass
        month = ui.param_choice("month", months, months[0])
        month = side.selectbox(t("history.month"), months, index=months.index(month), key="history_month")
        ui.set_param("month", month, None)
    if kind == "custom":
        today = now.astimezone(ZoneInfo(tz)).date()
        day_from = side.date_input(t("history.from"), _day_param("from", today - timedelta(days=6)),
                                   key="history_from")
        day_to = side.date_input(t("history.to"), _day_param("to", today), key="history_to")
        ui.set_param("from", day_from.isoformat(), None)
        ui.set_param("to", day_to.isoformat(), None)
    try:
        start, end = history.range_bounds(kind, now, tz, month=month, day_from=day_from, day_to=day_to)
    except history.ParamError as exc:
        st.warning(exc.message(ctx.lang), icon=":material/warning:")
        start, end = history.range_bounds("7d", now, tz)
    view = View(start=start, end=end, tz=tz, site=picked.get("site"), cluster=picked.get("cluster"),
                model=picked.get("model"), tenant=picked.get("tenant"))
    zone = ZoneInfo(tz)
    st.caption(t("history.range_caption", start=start.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
                 end=end.astimezone(zone).strftime("%Y-%m-%d %H:%M"), tz=tz))
    return view


def show_table(ctx: PageContext, table: HistoryTable, name: str, *, max_rows: int = 12) -> None:
    """A table as people read it, and its CSV (the API's columns and numbers)."""
    view = table.for_people(ctx.lang)
    st.dataframe(view, hide_index=True, width="stretch", height=ui.table_height(len(view), max_rows=max_rows))
    st.download_button(ctx.t("history.download_csv"), table.to_csv().encode(), file_name=f"{name}.csv",
                       mime="text/csv", key=f"csv_{name}", icon=":material/download:")


def _hours_text(v: object) -> str:
    return ui.fmt_num(v, 1)


def waterfall_figure(ctx: PageContext, row: pd.Series) -> go.Figure:
    """Owned down to useful GPU-hours, each loss a falling bar with its share of owned."""
    t = ctx.t
    owned = float(row["owned_gpu_hours"])
    steps = [float(row[f"{s}_gpu_hours"]) for s in ("observed", "available", "allocated", "busy", "useful")]
    losses = [owned - steps[0]] + [a - b for a, b in zip(steps, steps[1:])]
    labels = [t("history.step.owned"), *(t(f"history.loss.{k}") for k, _ in LOSSES), t("history.step.useful")]

    def share(v: float) -> str:
        return f"{_hours_text(v)} ({100 * v / owned:.1f} %)" if owned else _hours_text(v)

    fig = go.Figure(go.Waterfall(
        orientation="v", x=labels, measure=["absolute", *["relative"] * len(losses), "total"],
        y=[owned, *(-v for v in losses), 0], text=[share(owned), *(share(v) for v in losses), share(steps[-1])],
        textposition="outside", connector={"line": {"color": "#bbbbbb"}},
        decreasing={"marker": {"color": "#d62728"}}, increasing={"marker": {"color": USEFUL_COLOUR}},
        totals={"marker": {"color": USEFUL_COLOUR}},
        hovertemplate="%{x}: %{text}<extra></extra>"))
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=False,
                      yaxis={"title": t("history.axis.gpu_hours")}, plot_bgcolor="white")
    return fig


def ladder_bars(ctx: PageContext, table: HistoryTable, by: str) -> go.Figure:
    """One stacked bar per key from useful up to owned: the losses of each ladder side by side."""
    t, df = ctx.t, table.rows
    keys = [text(history.tenant_name(str(k), table.names, ctx.lang)) for k in df[by]]
    parts = {"useful": df["useful_gpu_hours"],
             "not_useful": df["busy_gpu_hours"] - df["useful_gpu_hours"],
             "idle": df["allocated_gpu_hours"] - df["busy_gpu_hours"],
             "unallocated": df["available_gpu_hours"] - df["allocated_gpu_hours"],
             "unavailable": df["observed_gpu_hours"] - df["available_gpu_hours"],
             "no_data": df["no_data_gpu_hours"]}
    colours = {"useful": USEFUL_COLOUR, **dict(LOSSES)}
    fig = go.Figure()
    for part, values in parts.items():
        name = t("history.step.useful") if part == "useful" else t(f"history.loss.{part}")
        fig.add_trace(go.Bar(y=keys, x=values.astype(float), name=name, orientation="h",
                             marker={"color": colours[part]},
                             hovertemplate="%{y}: %{x:,.1f} GPU-h<extra>" + name + "</extra>"))
    fig.update_layout(barmode="stack", height=120 + 40 * len(keys), margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"title": t("history.axis.gpu_hours")}, legend={"orientation": "h", "y": -0.25},
                      yaxis={"autorange": "reversed"}, plot_bgcolor="white")
    return fig


def ladder_section(ctx: PageContext, view: View, now: datetime) -> None:
    t = ctx.t
    st.subheader(t("history.ladder.title"))
    fleet = history.utilisation(ctx.store, ctx.cfg, view, now, scope=ctx.scope)
    row = fleet.rows.iloc[0]
    target = ctx.cfg.utilisation.target_pct
    shares = history.ladder_shares(row)
    cols = st.columns(6)
    util = row["util_pct"]
    cols[0].metric(t("history.col.util"), "—" if ui.missing(util) else f"{util:.1f} %",
                   None if ui.missing(util) else t("history.vs_target", delta=f"{util - target:+.1f}",
                                                   target=f"{target:g}"),
                   delta_color="normal", help=t("history.util_help"))
    cols[1].metric(t("history.col.owned") + " (GPU-h)", _hours_text(row["owned_gpu_hours"]),
                   help=t("history.owned_help"))
    for place, step in zip(cols[2:], ("available", "allocated", "busy", "useful")):
        share = shares[step]
        place.metric(t(f"history.col.{step}") + " (GPU-h)", _hours_text(row[f"{step}_gpu_hours"]),
                     "—" if share is None else f"{share:.1f} %", delta_color="off", delta_arrow="off",
                     help=t(f"history.{step}_help"))
    if ui.missing(row["owned_gpu_hours"]):
        st.info(t("history.owned_not_defined"), icon=":material/info:")
    elif float(row["owned_gpu_hours"]) > 0:
        st.plotly_chart(waterfall_figure(ctx, row), width="stretch", key="ladder_waterfall")
    basis = row["useful_basis"]
    st.caption(t("history.useful_basis", basis=t(f"history.basis.{basis}") if isinstance(basis, str)
                 else t("history.basis.none")))
    show_table(ctx, history.ladder_table(fleet, "fleet"), "ladder-fleet")
    for by in ("cluster", "model"):
        st.markdown(f"**{t(f'history.ladder.by_{by}')}**")
        table = history.ladder_table(history.utilisation(ctx.store, ctx.cfg, replace(view, by=by),
                                                         now, scope=ctx.scope), by)
        if table.rows.empty:
            st.caption(t("history.no_rows"))
            continue
        st.plotly_chart(ladder_bars(ctx, table, by), width="stretch", key=f"ladder_{by}")
        show_table(ctx, table, f"ladder-{by}")


def over_time_section(ctx: PageContext, view: View, now: datetime) -> None:
    t = ctx.t
    steps = ["auto", "1h", "1d", "1w", "1mo"]
    st.subheader(t("history.over_time.title"))
    step = ui.url_choice(t("history.step"), "step", steps, "auto", key="history_step",
                         format_func=lambda s: ctx.t(f"history.step.{s}"))
    v = replace(view, step=history.auto_step(view) if step == "auto" else step)
    table = history.utilisation(ctx.store, ctx.cfg, v, now, scope=ctx.scope)
    df = table.rows
    target = ctx.cfg.utilisation.target_pct
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=df["bucket"], y=df["util_pct"], mode="lines+markers", name=t("history.col.util"),
                             line={"color": USEFUL_COLOUR}))
    fig.add_hline(y=target, line={"color": "#d62728", "dash": "dash"},
                  annotation_text=t("history.target", target=f"{target:g}"), annotation_position="top left")
    fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10}, plot_bgcolor="white",
                      yaxis={"title": "%", "range": [0, 100]}, showlegend=False)
    st.plotly_chart(fig, width="stretch", key="util_over_time")
    st.markdown(f"**{t('history.pflops.title')}**")
    pf = go.Figure()
    pf.add_trace(go.Scatter(x=df["bucket"], y=df["delivered_pflops"], mode="lines", fill="tozeroy",
                            name=t("history.col.delivered_pflops")))
    pf.add_trace(go.Scatter(x=df["bucket"], y=df["installed_pflops"], mode="lines",
                            name=t("history.col.installed_pflops"), line={"color": "#555555", "dash": "dot"}))
    pf.update_layout(height=280, margin={"l": 10, "r": 10, "t": 10, "b": 10}, plot_bgcolor="white",
                     yaxis={"title": "PFLOPS", "rangemode": "tozero"}, legend={"orientation": "h", "y": -0.2})
    st.plotly_chart(pf, width="stretch", key="pflops_over_time")
    show_table(ctx, table, f"utilisation-{v.step}")


def heatmap_section(ctx: PageContext, view: View, now: datetime) -> None:
    t = ctx.t
    st.subheader(t("history.heatmap.title", tz=view.tz))
    df = history.heatmap(ctx.store, view, now, scope=ctx.scope)
    grid = (df.pivot_table(index="weekday", columns="hour_of_day", values="util_pct", aggfunc="first")
            .reindex(index=range(1, 8), columns=range(24)))
    days = [t(f"history.weekday.{d}") for d in WEEKDAYS]
    fig = go.Figure(go.Heatmap(z=grid.values, x=[f"{h:02d}" for h in range(24)], y=days, zmin=0, zmax=100,
                               colorscale="Blues", colorbar={"title": "%", "thickness": 12}, xgap=1, ygap=1,
                               hovertemplate="%{y} %{x}:00 · %{z:.1f} %<extra></extra>"))
    fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"title": t("history.axis.hour")}, yaxis={"autorange": "reversed"})
    st.plotly_chart(fig, width="stretch", key="util_heatmap")
    table = HistoryTable((history.Col("weekday", "", "history.col.weekday", "count"),
                          history.Col("hour_of_day", "", "history.col.hour_of_day", "count"),
                          history.Col("util_pct", "%", "history.col.util", "pct"),
                          history.Col("observed_gpu_hours", "GPU-h", "history.col.observed", "hours")),
                         df[["weekday", "hour_of_day", "util_pct", "observed_gpu_hours"]], tz=view.tz)
    st.download_button(t("history.download_csv"), table.to_csv().encode(), file_name="utilisation-heatmap.csv",
                       mime="text/csv", key="csv_heatmap", icon=":material/download:")


def reclaim_section(ctx: PageContext, view: View, now: datetime) -> None:
    t = ctx.t
    st.subheader(t("history.reclaim.title"))
    st.caption(t("history.reclaim.help"))
    tenants = history.reclaim_tenants(ctx.store, ctx.cfg, view, now, scope=ctx.scope)
    if tenants.rows.empty:
        st.success(t("history.reclaim.none"), icon=":material/check_circle:")
        return
    if not ctx.cfg.prices:
        st.caption(t("history.reclaim.no_prices"))
    st.markdown(f"**{t('history.reclaim.tenants')}**")
    show_table(ctx, tenants, "reclaim-tenants")
    st.markdown(f"**{t('history.reclaim.devices', n=RECLAIM_DEVICES)}**")
    show_table(ctx, history.devices(ctx.store, ctx.cfg, view, now, idle_only=True, limit=RECLAIM_DEVICES,
                                   scope=ctx.scope), "reclaim-devices")


def page(ctx: PageContext) -> None:
    st.title(ctx.t("history.util.title"))
    now = ui.now()
    view = range_controls(ctx, now)
    for section in (ladder_section, over_time_section, heatmap_section, reclaim_section):
        ui.guarded(section)(ctx, view, now)
        st.divider()


if __name__ == "__main__":          # st.navigation runs a page file as __main__
    page(context.current())
