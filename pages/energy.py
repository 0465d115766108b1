"""Energy page: PUE from energy with its category against the target and GB 40879 grade bands,
cooling load beside it, pPUE per hall and cooling loop, energy, cost by time-of-use period and
carbon per site, cluster and tenant, and power now against the site's capacity.

Every table comes from queries/energy.py, the builders `/api/v1/pue` and `/api/v1/energy` answer
with, so the page shows what the API says; each table has its CSV. The range and site live in the
URL (pages/utilisation.py's controls), the step and the grouping too. A signed-in tenant sees only
its own energy, cost and carbon: the site-wide figures are not shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import plotly.graph_objects as go
import streamlit as st

from pages import context, ui
from pages.context import PageContext
from pages.utilisation import range_controls, show_table
from queries import energy, history
from queries.history import View

GRADE_COLOURS = ("rgba(44,160,44,0.12)", "rgba(255,191,0,0.12)", "rgba(255,127,14,0.12)",
                 "rgba(214,39,40,0.10)", "rgba(148,103,189,0.10)")
PUE_COLOUR = "#1f77b4"
COOLING_COLOUR = "#17becf"
PERIOD_COLOURS = {"sharp": "#d62728", "peak": "#ff7f0e", "flat": "#bcbd22", "valley": "#2ca02c",
                  "demand": "#7f7f7f"}


def _num(v: object, digits: int = 0) -> str:
    return ui.fmt_num(v, digits)


def summary_section(ctx: PageContext, view: View, now: datetime) -> None:
    t, cfg = ctx.t, ctx.cfg
    st.subheader(t("energy.summary.title"))
    pue = energy.pue_table(ctx.store, cfg, view, ctx.scope, now=now)
    cost = energy.energy_table(ctx.store, cfg, view, ctx.scope, by="site", now=now)
    if pue.rows.empty or pue.rows["hours"].sum() == 0:
        st.info(t("energy.no_data"), icon=":material/info:")
    for _, row in pue.rows.iterrows():
        site = row["site"]
        c = cost.rows[cost.rows["site"] == site]
        cols = st.columns(6)
        label = (t("energy.pue_metric_estimated") if row["it_estimated"]
                 else t("energy.pue_metric", cat=row["category"] if not ui.missing(row["category"]) else "—"))
        target = float(row["target"])
        p = row["pue"]
        if len(pue.rows) > 1:
            label = f"{label} · {site}"
        cols[0].metric(label, "—" if ui.missing(p) else f"{float(p):.3f}",
                       None if ui.missing(p) else t("energy.pue_vs_target", delta=f"{float(p) - target:+.3f}",
                                                    target=f"{target:g}"),
                       delta_color="inverse", help=t("energy.pue_help"))
        g = row["grade"]
        cols[1].metric(t("energy.grade_metric"), t("energy.grade_none") if ui.missing(g)
                       else t("energy.grade_value", grade=int(g)),
                       t("energy.excluded", n=int(row["excluded_hours"])), delta_color="off", delta_arrow="off",
                       help=t("energy.excluded_help"))
        cols[2].metric(t("energy.facility_metric") + " (kWh)", _num(c["facility_kwh"].sum()))
        cols[3].metric(t("energy.cost_metric") + " (CNY)", _num(c["cost_cny"].sum()))
        cols[4].metric(t("energy.carbon_metric") + " (t CO2)", _num(c["carbon_kg"].sum() / 1000.0, 1))
        f = energy.factors(cfg, site)
        cols[5].metric(t("energy.cue_metric"), "—" if ui.missing(row["cue"]) else f"{float(row['cue']):.3f}",
                       help=t("energy.cue_help", method=t(f"energy.method.{f.method}")))
        if row["it_estimated"]:
            st.warning(t("energy.estimated_note", site=site, w=f"{cfg.energy.pue.per_node_overhead_w:g}"),
                       icon=":material/warning:")
    _month_line(ctx, view, now)


def _month_line(ctx: PageContext, view: View, now: datetime) -> None:
    """The calendar month so far (the range's end month): its PUE against target and bands."""
    month = min(now, view.end).astimezone(ZoneInfo(view.tz)).strftime("%Y-%m")
    start, end = history.range_bounds("month", now, view.tz, month=month)
    table = energy.pue_table(ctx.store, ctx.cfg, replace(view, start=start, end=end, step="all"), ctx.scope, now=now)
    parts = []
    for _, row in table.rows.iterrows():
        if ui.missing(row["pue"]):
            continue
        g = row["grade"]
        parts.append(f"**{row['site']}** {float(row['pue']):.3f} · "
                     + (ctx.t("energy.grade_none") if ui.missing(g) else ctx.t("energy.grade_value", grade=int(g))))
    if parts:
        st.caption(ctx.t("energy.month_metric", month=month) + ": " + "; ".join(parts))


def pue_figure(ctx: PageContext, df, cfg, site: str | None) -> go.Figure:
    """PUE per bucket against the target line and the grade bands, cooling / IT on a second axis."""
    t = ctx.t
    fig = go.Figure()
    grades = sorted(cfg.energy.pue.grades, key=lambda g: g.grade)
    top = max([g.max_pue for g in grades] + [float(df["pue"].max()) if len(df) and df["pue"].notna().any() else 1.5])
    low = 1.0
    for i, g in enumerate(grades):
        fig.add_hrect(y0=low, y1=g.max_pue, fillcolor=GRADE_COLOURS[i % len(GRADE_COLOURS)], line_width=0,
                      annotation_text=t("energy.band", grade=g.grade, pue=f"{g.max_pue:g}"),
                      annotation_position="right", annotation_font_size=10)
        low = g.max_pue
    for s, part in df.groupby("site"):
        fig.add_trace(go.Scatter(x=part["bucket"], y=part["pue"], mode="lines+markers", name=f"PUE · {s}",
                                 line={"color": PUE_COLOUR}, connectgaps=False))
        if part["cooling_share_pct"].notna().any():
            fig.add_trace(go.Scatter(x=part["bucket"], y=part["cooling_share_pct"], mode="lines",
                                     name=t("energy.cooling_axis") + f" · {s}",
                                     line={"color": COOLING_COLOUR, "width": 1.5, "dash": "dot"}, yaxis="y2"))
    target = energy.pue_target(cfg, site)
    fig.add_hline(y=target, line={"color": "#d62728", "dash": "dash"},
                  annotation_text=t("energy.target_line", target=f"{target:g}"), annotation_position="top left")
    fig.update_layout(height=360, margin={"l": 10, "r": 60, "t": 30, "b": 10}, plot_bgcolor="white",
                      yaxis={"title": "PUE", "range": [1.0, top + 0.05]},
                      yaxis2={"title": t("energy.cooling_axis"), "overlaying": "y", "side": "right",
                              "rangemode": "tozero", "showgrid": False},
                      legend={"orientation": "h", "y": -0.2}, bargap=0.1)
    return fig


def over_time_section(ctx: PageContext, view: View, now: datetime) -> None:
    t = ctx.t
    st.subheader(t("energy.over_time.title"))
    steps = ["auto", "1h", "1d", "1mo"]
    step = ui.url_choice(t("energy.step"), "step", steps, "auto", key="energy_step",
                         format_func=lambda s: ctx.t(f"energy.step.{s}"))
    v = replace(view, step=history.auto_step(view) if step == "auto" else step)
    table = energy.pue_table(ctx.store, ctx.cfg, v, ctx.scope, now=now)
    st.plotly_chart(pue_figure(ctx, table.rows, ctx.cfg, view.site), width="stretch", key="pue_over_time")
    st.caption(t("energy.cooling_note"))
    show_table(ctx, table, f"pue-{v.step}")


def ppue_section(ctx: PageContext, view: View, now: datetime) -> None:
    t = ctx.t
    st.subheader(t("energy.ppue.title"))
    st.caption(t("energy.ppue.help"))
    table = energy.ppue_table(ctx.store, ctx.cfg, view, ctx.scope, now=now)
    if table.rows.empty:
        st.caption(t("energy.ppue.none"))
        return
    show_table(ctx, table, "ppue")


def cost_figure(ctx: PageContext, df, by: str, names: dict[str, str]) -> go.Figure:
    t = ctx.t
    keys = [history.tenant_name(str(k), names, ctx.lang) if by == "tenant" else str(k) for k in df[by]]
    fig = go.Figure()
    for p in ("sharp", "peak", "flat", "valley"):
        fig.add_trace(go.Bar(y=keys, x=df[f"{p}_cny"].astype(float), orientation="h", name=t(f"energy.period.{p}"),
                             marker={"color": PERIOD_COLOURS[p]},
                             hovertemplate="%{y}: %{x:,.0f} CNY<extra>" + t(f"energy.period.{p}") + "</extra>"))
    fig.add_trace(go.Bar(y=keys, x=df["demand_cny"].astype(float), orientation="h", name=t("energy.period.demand"),
                         marker={"color": PERIOD_COLOURS["demand"]}))
    fig.update_layout(barmode="stack", height=120 + 36 * len(keys), margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"title": "CNY"}, legend={"orientation": "h", "y": -0.3}, yaxis={"autorange": "reversed"},
                      plot_bgcolor="white")
    return fig


def energy_section(ctx: PageContext, view: View, now: datetime) -> None:
    t = ctx.t
    st.subheader(t("energy.energy.title"))
    bys = list(energy.ENERGY_BYS) if ctx.scope.everything else ["tenant"]
    by = ui.url_choice(t("energy.cost_by_period"), "by", bys, bys[0], key="energy_by",
                       format_func=lambda b: ctx.t(f"energy.by.{b}"))
    table = energy.energy_table(ctx.store, ctx.cfg, view, ctx.scope, by=by, now=now)
    if table.rows.empty:
        st.caption(t("energy.no_data"))
        return
    st.plotly_chart(cost_figure(ctx, table.rows, by, table.names), width="stretch", key=f"cost_{by}")
    if by != "site":
        st.caption(t("energy.share_rule"))
    show_table(ctx, table, f"energy-{by}")


def headroom_section(ctx: PageContext, view: View, now: datetime) -> None:
    t = ctx.t
    st.subheader(t("energy.headroom.title"))
    st.caption(t("energy.headroom.help"))
    table = energy.headroom_table(ctx.store, ctx.cfg, view, ctx.scope, now=now)
    for _, row in table.rows.iterrows():
        if ui.missing(row["facility_kw"]):
            st.caption(t("energy.headroom.none"))
            continue
        cols = st.columns(4)
        where = f" · {row['site']}" if len(table.rows) > 1 else ""
        cols[0].metric(t("energy.col.facility_kw") + f"{where} (kW)", _num(row["facility_kw"]))
        cols[1].metric(t("energy.col.it_kw") + " (kW)", _num(row["it_kw"]))
        cols[2].metric(t("energy.headroom.power") + " (kW)", _num(row["power_headroom_kw"]),
                       None if ui.missing(row["power_headroom_gpus"])
                       else t("energy.headroom.gpus", n=_num(row["power_headroom_gpus"])),
                       delta_color="off", delta_arrow="off")
        cols[3].metric(t("energy.headroom.cooling") + " (kW)", _num(row["cooling_headroom_kw"]),
                       None if ui.missing(row["cooling_headroom_gpus"])
                       else t("energy.headroom.gpus", n=_num(row["cooling_headroom_gpus"])),
                       delta_color="off", delta_arrow="off")
    if len(table.rows):
        show_table(ctx, table, "headroom")


def readings_section(ctx: PageContext, view: View, now: datetime) -> None:
    t = ctx.t
    st.subheader(t("energy.readings.title"))
    st.caption(t("energy.readings.help"))
    table = energy.readings_table(ctx.store, ctx.cfg, view, ctx.scope, now=now)
    if table.rows.empty:
        st.caption(t("energy.readings.none"))
        return
    show_table(ctx, table, "meter-readings")


def method_section(ctx: PageContext, view: View, now: datetime) -> None:
    cfg = ctx.cfg
    with st.expander(ctx.t("energy.method.title")):
        site = view.site or cfg.sites[0].id
        f = energy.factors(cfg, site)
        st.markdown(ctx.t("energy.method.text", gap=f"{cfg.energy.pue.max_gap_s:g}",
                          method=ctx.t(f"energy.method.{f.method}"), factor=f"{f.emission_kg_per_kwh:.4f}",
                          coal=f"{f.coal_kgce_per_kwh:g}"))
        st.markdown(ctx.t("energy.pue_help"))
        st.markdown(ctx.t("energy.share_rule"))


def page(ctx: PageContext) -> None:
    st.title(ctx.t("energy.title"))
    now = ui.now()
    view = range_controls(ctx, now, filters=("site",))
    sections: tuple[Callable[[PageContext, View, datetime], None], ...]
    if ctx.scope.everything:
        sections = (summary_section, over_time_section, ppue_section, energy_section, headroom_section,
                    readings_section, method_section)
    else:
        st.info(ctx.t("energy.tenant_scope"), icon=":material/info:")
        sections = (energy_section, method_section)
    for section in sections:
        ui.guarded(section)(ctx, view, now)
        st.divider()


if __name__ == "__main__":          # st.navigation runs a page file as __main__
    page(context.current())
