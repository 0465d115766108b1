"""Capacity planning page: forecasts with their bands and backtests, time to exhaustion of GPUs,
power and cooling, what-if scenarios side by side with the baseline, and the training-job sizing
calculator.

It reads the forecast job's stored results (queries/capacity.py) and never fits per view. The
view (section, series, horizon, scenarios compared, calculator inputs) lives in the URL, each
value checked against a whitelist, so a view can be shared. Every table comes from
queries/capacity.py or queries/scenarios.py, the builders the API and CSV downloads use. For
planners and managers: a tenant's scope is refused.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages import context, ui
from pages.context import PageContext
from queries import capacity as cap
from queries import measures
from queries import scenarios as sc
from queries.history import HistoryTable

VIEWS = ("forecast", "exhaustion", "scenarios", "calculator")
HORIZONS = ("3", "6", "12", "18")          # months
HISTORY_SHOWN_DAYS = 180
BAND_80, BAND_95, LINE = "rgba(31,119,180,0.30)", "rgba(31,119,180,0.14)", "#1f77b4"
SCENARIO_COLOURS = ("#555555", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


def show_table(ctx: PageContext, table: HistoryTable, name: str, *, max_rows: int = 12) -> None:
    """A table as people read it (resources and yes/no in words), and its CSV (the API's columns
    and numbers)."""
    view = table.for_people(ctx.lang)
    for col in table.columns:
        header = ctx.t(col.label) + (f" ({col.unit})" if col.unit else "")
        if col.name == "resource":
            view[header] = [ctx.t(f"capacity.resource.{v}") if v in cap.RESOURCES else v for v in view[header]]
        elif col.name == "trusted":
            view[header] = [ctx.t("capacity.yes") if v == "True" else ctx.t("capacity.no") for v in view[header]]
    st.dataframe(view, hide_index=True, width="stretch", height=ui.table_height(len(view), max_rows=max_rows))
    st.download_button(ctx.t("history.download_csv"), table.to_csv().encode(), file_name=f"{name}.csv",
                       mime="text/csv", key=f"csv_{name}", icon=":material/download:")


def _num(v: object, digits: int = 1) -> str:
    return "—" if ui.missing(v) else f"{float(v):,.{digits}f}"  # type: ignore[arg-type]


# ---- forecasts -----------------------------------------------------------------------------

def forecast_figure(ctx: PageContext, hist: pd.Series, table: cap.ForecastTable) -> go.Figure:
    about = table.about or {}
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=list(hist.index), y=hist.to_numpy(), mode="lines", name=ctx.t("capacity.chart.actual"),
                             line={"color": "#333333", "width": 1}))
    df = table.rows
    if not df.empty:
        x = list(df["day"])
        for lo, hi, colour, label in (("lo95", "hi95", BAND_95, "capacity.chart.band95"),
                                      ("lo80", "hi80", BAND_80, "capacity.chart.band80")):
            fig.add_trace(go.Scatter(x=x + x[::-1], y=list(df[hi]) + list(df[lo])[::-1], fill="toself",
                                     fillcolor=colour, line={"width": 0}, name=ctx.t(label), hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=df["median"], mode="lines", name=ctx.t("capacity.chart.median"),
                                 line={"color": LINE, "width": 1.5}))
        fig.add_trace(go.Scatter(x=x, y=df["median_smooth"], mode="lines", name=ctx.t("capacity.chart.smoothed"),
                                 line={"color": LINE, "width": 2.5, "dash": "dot"}))
    capacity = about.get("capacity")
    if capacity is not None:
        fig.add_hline(y=capacity, line={"color": "#d62728", "dash": "dash"},
                      annotation_text=ctx.t("capacity.chart.capacity", value=_num(capacity, 0)),
                      annotation_position="top left")
    for key, colour in (("exhaust_upper", "#ff7f0e"), ("exhaust_median", "#d62728")):
        when = about.get(key)
        if when and not (key == "exhaust_upper" and when == about.get("exhaust_median")):   # one mark for one day
            fig.add_vline(x=pd.Timestamp(when).timestamp() * 1000, line={"color": colour, "dash": "dot"},
                          annotation_text=ctx.t(f"capacity.chart.{key}", day=when), annotation_position="top")
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 40, "b": 10}, plot_bgcolor="white",
                      yaxis={"title": about.get("unit", ""), "rangemode": "tozero"},
                      legend={"orientation": "h", "y": -0.15})
    return fig


def forecast_section(ctx: PageContext, fits: pd.DataFrame, now: datetime) -> None:
    t = ctx.t
    names = fits["series"].tolist()
    default = "peak_gpus:fleet" if "peak_gpus:fleet" in names else names[0]
    labels = {n: cap.series_label(cap.SeriesId.parse(n), ctx.cfg, ctx.lang) for n in names}
    cols = st.columns([3, 1])
    series = ui.url_select(cols[0], t("capacity.series"), "series", names, default, key="cap_series",
                           format_func=lambda n: labels[n])
    months = ui.url_select(cols[1], t("capacity.horizon"), "horizon", list(HORIZONS), "12", key="cap_horizon",
                           format_func=lambda m: t("capacity.months", n=m))
    horizon = max(cap.HORIZON_MIN, min(int(round(int(months) * sc.MONTH_DAYS)), ctx.cfg.capacity.horizon_days))
    table = cap.forecast_table(ctx.store, ctx.cfg, series, horizon, ctx.scope, lang=ctx.lang)
    about = table.about or {}
    hist = cap.actuals(ctx.store, ctx.cfg, series, HISTORY_SHOWN_DAYS, now)
    m = st.columns(5)
    unit = about.get("unit", "")
    m[0].metric(t("capacity.col.capacity") + f" ({unit})", _num(about.get("capacity"), 0))
    m[1].metric(t("capacity.col.measured_now") + f" ({unit})", _num(about.get("measured_now")))
    m[2].metric(t("capacity.col.headroom_now") + f" ({unit})", _num(about.get("headroom_now")),
                help=t("capacity.headroom_help", days=ctx.cfg.capacity.smoothing_days))
    dated = about.get("trusted") and about.get("capacity") is not None     # else no date can be read

    def when(key: str) -> str:
        return about.get(key) or (t("capacity.not_within") if dated else "—")

    m[3].metric(t("capacity.col.exhaust_median"), when("exhaust_median"), help=t("capacity.not_within_help"))
    m[4].metric(t("capacity.col.exhaust_upper") + f" ({about.get('band')} %)", when("exhaust_upper"),
                help=t("capacity.not_within_help"))
    if about.get("trusted"):
        st.caption(t("capacity.model_caption", model=about.get("model_label"), days=about.get("history_days"),
                     fitted=str(about.get("fitted_at", ""))[:16].replace("T", " ")))
    else:
        st.warning(about.get("why_not") or t("capacity.untrusted"), icon=":material/warning:")
    st.plotly_chart(forecast_figure(ctx, hist, table), width="stretch", key="cap_forecast_chart")
    st.markdown(f"**{t('capacity.backtest.title')}**")
    st.caption(t("capacity.backtest.help"))
    show_table(ctx, cap.backtest_table(ctx.store, ctx.cfg, ctx.scope, series=series), "capacity-backtest-series")
    if not table.rows.empty:
        st.download_button(t("capacity.download_points"), table.to_csv().encode(),
                           file_name=f"forecast-{series.replace(':', '-')}.csv", mime="text/csv",
                           key="csv_points", icon=":material/download:")


def exhaustion_section(ctx: PageContext, fits: pd.DataFrame, now: datetime) -> None:
    t = ctx.t
    st.caption(t("capacity.exhaustion.help", band=ctx.cfg.capacity.exhaustion_band,
                 days=ctx.cfg.capacity.smoothing_days))
    show_table(ctx, cap.exhaustion_table(ctx.store, ctx.cfg, ctx.scope, lang=ctx.lang), "capacity-exhaustion")
    st.markdown(f"**{t('capacity.backtest.all')}**")
    show_table(ctx, cap.backtest_table(ctx.store, ctx.cfg, ctx.scope), "capacity-backtest", max_rows=16)


# ---- scenarios -------------------------------------------------------------------------------

PENDING = "cap_compare_pending"
CUSTOM = "custom"                 # the calculator's own server (PFLOPS and kW typed in), not a catalogue model
CHANGE_COLUMNS = ("kind", "on", "cluster", "model", "tenant", "count", "pct", "value")


def _changes_frame(changes: list[dict]) -> pd.DataFrame:
    rows = [{c: ch.get(c) for c in CHANGE_COLUMNS} for ch in changes]
    df = pd.DataFrame(rows, columns=list(CHANGE_COLUMNS))
    for c in ("kind", "on", "cluster", "model", "tenant"):
        df[c] = df[c].astype("string")
    for c in ("count", "pct", "value"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df


def _changes_from(df: pd.DataFrame) -> list[dict]:
    out = []
    for r in df.to_dict("records"):
        if ui.missing(r.get("kind")) or not str(r.get("kind")).strip():
            continue
        out.append({k: (float(v) if k in ("count", "pct", "value") else str(v).strip())
                    for k, v in r.items() if not ui.missing(v) and str(v).strip() != ""})
    return out


def editor(ctx: PageContext, saved: list[sc.Scenario], now: datetime) -> None:
    t, cfg = ctx.t, ctx.cfg
    with st.expander(t("capacity.scenario.edit"), expanded=not saved):
        st.caption(t("capacity.scenario.kinds"))
        names = ["", *[s.name for s in saved]]
        base_name = st.selectbox(t("capacity.scenario.start_from"), names, key="cap_edit_from",
                                 format_func=lambda n: n or t("capacity.scenario.new"))
        start = next((s for s in saved if s.name == base_name), None)
        today = cap.today(now, cap.fleet_tz(cfg))
        changes = ([c.to_json() for c in start.changes] if start else sc.default_changes(cfg, today))
        c1, c2, c3 = st.columns([2, 3, 1])
        name = c1.text_input(t("capacity.scenario.name"), value=start.name if start else "more-gpus",
                             key=f"cap_name_{base_name}")
        title = c2.text_input(t("capacity.scenario.title"), value=start.title if start else "",
                              key=f"cap_title_{base_name}")
        horizon = c3.number_input(t("capacity.scenario.horizon"), 3, sc.MAX_MONTHS,
                                  start.horizon_months if start else 12, key=f"cap_h_{base_name}")
        edited = st.data_editor(
            _changes_frame(changes), num_rows="dynamic", width="stretch", key=f"cap_changes_{base_name}",
            column_config={
                "kind": st.column_config.SelectboxColumn(t("capacity.change.kind"), options=list(sc.KINDS)),
                "on": st.column_config.TextColumn(t("capacity.change.on"), help="YYYY-MM-DD"),
                "cluster": st.column_config.SelectboxColumn(t("capacity.change.cluster"),
                                                            options=[c.id for c in cfg.clusters]),
                "model": st.column_config.SelectboxColumn(t("capacity.change.model"),
                                                          options=[m.id for m in cfg.catalogue.models]),
                "tenant": st.column_config.TextColumn(t("capacity.change.tenant")),
                "count": st.column_config.NumberColumn(t("capacity.change.count")),
                "pct": st.column_config.NumberColumn(t("capacity.change.pct")),
                "value": st.column_config.NumberColumn(t("capacity.change.value")),
            })
        b1, b2 = st.columns(2)
        if b1.button(t("capacity.scenario.save"), icon=":material/save:", key="cap_save"):
            try:
                scen = sc.parse(name.strip(), title.strip(), _changes_from(edited), int(horizon), cfg)
                sc.save(ctx.store, scen, now, who=ctx.scope.who)
            except sc.ScenarioError as exc:
                st.error(exc.message(ctx.lang), icon=":material/error:")
            except Exception as exc:            # a read-only store (a page not in the owner process)
                st.error(t("capacity.scenario.cannot_save", error=str(exc)), icon=":material/error:")
            else:
                picked = [n for n in (st.query_params.get("compare") or "").split(",") if n]
                st.session_state[PENDING] = list(dict.fromkeys([*picked, scen.name]))    # compared from the rerun on
                st.success(t("capacity.scenario.saved", name=scen.name), icon=":material/check_circle:")
                st.rerun()
        if start is not None and b2.button(t("capacity.scenario.delete", name=start.name), icon=":material/delete:",
                                           key="cap_delete"):
            sc.delete(ctx.store, start.name)
            st.rerun()


def scenario_figure(ctx: PageContext, months: pd.DataFrame, value: str, capacity: str, unit: str) -> go.Figure:
    fig = go.Figure()
    for i, (name, g) in enumerate(months.groupby("scenario", sort=False)):
        colour = SCENARIO_COLOURS[i % len(SCENARIO_COLOURS)]
        shown = str(name)
        fig.add_trace(go.Scatter(x=g["month"], y=g[value], mode="lines+markers", name=shown,
                                 line={"color": colour}))
        if capacity in g and g[capacity].notna().any():
            fig.add_trace(go.Scatter(x=g["month"], y=g[capacity], mode="lines", showlegend=False,
                                     name=f"{shown} · {ctx.t('capacity.col.capacity')}",
                                     line={"color": colour, "dash": "dash", "shape": "hv"}))
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10}, plot_bgcolor="white",
                      yaxis={"title": unit, "rangemode": "tozero"}, legend={"orientation": "h", "y": -0.2})
    return fig


def scenarios_section(ctx: PageContext, fits: pd.DataFrame, now: datetime) -> None:
    t = ctx.t
    saved = sc.saved(ctx.store)
    names = [s.name for s in saved]
    if PENDING in st.session_state:             # a scenario just saved joins the comparison
        st.session_state["cap_compare"] = [n for n in st.session_state.pop(PENDING) if n in names]
    shared = [n for n in (st.query_params.get("compare") or "").split(",") if n in names]
    picked = st.multiselect(t("capacity.scenario.compare"), names, default=shared, key="cap_compare",
                            format_func=lambda n: next((f"{s.title} ({s.name})" for s in saved if s.name == n), n))
    ui.set_param("compare", ",".join(picked) or None, None)
    chosen = [s for s in saved if s.name in picked]
    try:
        cmp = sc.compare(ctx.store, ctx.cfg, chosen, now)
    except sc.ScenarioError as exc:
        st.info(exc.message(ctx.lang), icon=":material/info:")
        editor(ctx, saved, now)
        return
    if not cmp.base.trusted:
        st.warning(t("capacity.scenario.untrusted"), icon=":material/warning:")
    st.caption(t("capacity.scenario.basis", **{k: t(v) for k, v in cmp.base.sources.items()}))
    st.markdown(f"**{t('capacity.scenario.exhaustion')}**")
    ex = cmp.exhaustion
    ex.rows["scenario"] = [t("capacity.scenario.baseline") if n == sc.BASELINE else n for n in ex.rows["scenario"]]
    show_table(ctx, ex, "scenario-exhaustion")
    cmp.months.rows["scenario"] = [t("capacity.scenario.baseline") if n == sc.BASELINE else n
                                   for n in cmp.months.rows["scenario"]]
    months = cmp.months.rows
    c1, c2 = st.columns(2)
    c1.markdown(f"**{t('capacity.col.gpu_demand')}**")
    c1.plotly_chart(scenario_figure(ctx, months, "gpu_demand", "gpu_capacity", "GPUs"), width="stretch",
                    key="cap_sc_gpus")
    c2.markdown(f"**{t('capacity.col.facility_kw')}**")
    c2.plotly_chart(scenario_figure(ctx, months, "facility_kw", "facility_capacity_kw", "kW"), width="stretch",
                    key="cap_sc_power")
    st.markdown(f"**{t('capacity.scenario.months')}**")
    show_table(ctx, cmp.months, "scenario-months", max_rows=14)
    editor(ctx, saved, now)


# ---- the calculator ----------------------------------------------------------------------------

def _float_param(name: str, default: float, lo: float, hi: float) -> float:
    try:
        v = float(st.query_params.get(name, default))
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) and lo <= v <= hi else default


def calculator_section(ctx: PageContext, fits: pd.DataFrame, now: datetime) -> None:
    t, cfg = ctx.t, ctx.cfg
    check = cap.size_training_run(17_117, 2.0, 10.0, days=1, ratio=1.0, pue=1.2)
    st.caption(t("capacity.calc.check", servers=f"{check.units:,}", kwh=f"{check.facility_kwh:,.0f}"))
    models = [m.id for m in cfg.catalogue.models]
    owned_models = [measures.cluster_model(cfg, c) for c in cfg.clusters]
    default_model = owned_models[0] if owned_models else models[0]
    c0, c1, c2, c3 = st.columns([1, 2, 2, 1])
    units = ["pfd", "zflop"]
    unit = c0.selectbox(t("capacity.calc.unit"), units, index=units.index(ui.param_choice("unit", units, "pfd")),
                        format_func=lambda u: t(f"capacity.calc.unit.{u}"), key="cap_unit")
    amount = c1.number_input(t("capacity.calc.compute"), min_value=0.001, max_value=1e9,
                             value=_float_param("pfd", 3640.0, 0.001, 1e9), key="cap_pfd",
                             help=t("capacity.calc.compute_help"))
    pfd = amount if unit == "pfd" else cap.pflops_days(amount * 1e21)
    choices = [*models, CUSTOM]
    model = c2.selectbox(t("capacity.calc.model"), choices,
                         index=choices.index(ui.param_choice("model", choices, default_model)), key="cap_model",
                         format_func=lambda m: t("capacity.calc.custom") if m == CUSTOM else m)
    days = c3.number_input(t("capacity.calc.days"), min_value=0.1, max_value=3650.0,
                           value=_float_param("days", 30.0, 0.1, 3650.0), key="cap_days")
    ui.set_param("unit", unit, "pfd")
    ui.set_param("pfd", f"{amount:g}", "3640")
    ui.set_param("model", model, default_model)
    ui.set_param("days", f"{days:g}", "30")
    if unit != "pfd":
        c1.caption(t("capacity.calc.as_pfd", pfd=f"{pfd:,.1f}"))
    if model == CUSTOM:
        s1, s2 = st.columns(2)
        server_pflops = s1.number_input(t("capacity.calc.server_pflops"), min_value=0.001, max_value=1e4,
                                        value=_float_param("spf", 2.0, 0.001, 1e4), key="cap_spf")
        server_kw = s2.number_input(t("capacity.calc.server_kw"), min_value=0.0, max_value=1e4,
                                    value=_float_param("skw", 10.0, 0.0, 1e4), key="cap_skw")
        ui.set_param("spf", f"{server_pflops:g}", "2")
        ui.set_param("skw", f"{server_kw:g}", "10")
        measured, source = None, ""
    else:
        measured, source = cap.delivered_ratio(ctx.store, cfg, model, now)
    default_ratio = round(measured, 3) if measured else (1.0 if model == CUSTOM else 0.4)
    d1, d2, d3 = st.columns(3)
    ratio = d1.number_input(t("capacity.calc.ratio"), min_value=0.01, max_value=1.0,
                            value=_float_param("ratio", default_ratio, 0.01, 1.0), key="cap_ratio",
                            help=t("capacity.calc.ratio_help"))
    d1.caption(t("capacity.calc.ratio_source", ratio=f"{measured:.3f}", source=source) if measured
               else t("capacity.calc.ratio_none", ratio=default_ratio))
    site = cfg.sites[0].id
    pue_value, pue_source = cap.site_pue(ctx.store, cfg, site, now)
    pue = d2.number_input(t("capacity.calc.pue"), min_value=1.0, max_value=5.0, value=round(pue_value, 3),
                          key="cap_pue")
    d2.caption(t(f"capacity.calc.pue_{pue_source}"))
    tenants = [tn.id for tn in cfg.tenants]
    tenant = d3.selectbox(t("capacity.calc.tenant"), tenants, key="cap_tenant") if tenants else None
    ui.set_param("ratio", None if abs(ratio - default_ratio) < 1e-9 else f"{ratio:g}", None)
    spec = next((m for m in cfg.catalogue.models if m.id == model), None)
    if spec is None:                            # a server of the planner's own figures
        unit_pflops, unit_kw, price = server_pflops, server_kw, None
    else:
        unit_pflops = spec.peak_dense_tflops / 1000.0
        unit_kw = spec.tdp_w * cfg.capacity.it_overhead_factor / 1000.0
        price = cfg.price_per_gpu_hour().get(model)
    energy = cap._energy()
    size = cap.size_training_run(pfd, unit_pflops, unit_kw, days=days, ratio=ratio, pue=pue,
                                 price_per_unit_hour=price)
    carbon = energy.carbon_kg(cfg, site, size.facility_kwh) if energy is not None else (
        size.facility_kwh * cfg.sites[0].grid_emission_kg_per_kwh)
    coal = energy.coal_kgce(cfg, size.facility_kwh) if energy is not None else None
    r = st.columns(5)
    r[0].metric(t("capacity.calc.gpus"), f"{size.units:,}", t("capacity.calc.gpu_days", n=f"{size.unit_days:,.0f}"),
                delta_color="off", delta_arrow="off")
    r[1].metric(t("capacity.calc.it_kwh"), f"{size.it_kwh:,.0f}")
    r[2].metric(t("capacity.calc.facility_kwh"), f"{size.facility_kwh:,.0f}")
    cost = "—" if size.cost_cny is None else f"{size.cost_cny:,.0f}"
    r[3].metric(t("capacity.calc.cost", tenant=tenant or "—"), cost)
    r[4].metric(t("capacity.calc.carbon"), f"{carbon / 1000:,.1f}",
                None if coal is None else t("capacity.calc.coal", t_=f"{coal / 1000:,.1f}"), delta_color="off",
                delta_arrow="off")
    if spec is None:
        st.caption(t("capacity.calc.assumes_server", pflops=f"{unit_pflops:g}", kw=f"{unit_kw:g}"))
        return
    st.caption(t("capacity.calc.assumes", kw=f"{unit_kw:.2f}", tdp=f"{spec.tdp_w:g}",
                 factor=f"{cfg.capacity.it_overhead_factor:g}"))
    start = cap.today(now, cap.fleet_tz(cfg)) + timedelta(days=7)
    free, trusted = cap.gpus_free(ctx.store, cfg, model, start, int(math.ceil(days)))
    if free is None:
        st.info(t("capacity.calc.no_forecast", model=model), icon=":material/info:")
    elif free >= size.units:
        st.success(t("capacity.calc.fits", free=f"{free:,.0f}", need=f"{size.units:,}", start=start.isoformat(),
                     days=f"{days:g}", model=model), icon=":material/check_circle:")
    else:
        st.warning(t("capacity.calc.short", free=f"{max(0.0, free):,.0f}", need=f"{size.units:,}",
                     start=start.isoformat(), days=f"{days:g}", model=model), icon=":material/warning:")
    if free is not None and not trusted:
        st.caption(t("capacity.untrusted"))


# ---- the page ----------------------------------------------------------------------------------

SECTIONS = {"forecast": forecast_section, "exhaustion": exhaustion_section, "scenarios": scenarios_section,
            "calculator": calculator_section}


def page(ctx: PageContext) -> None:
    t = ctx.t
    st.title(t("capacity.title"))
    st.caption(t("capacity.intro"))
    if not ctx.scope.everything:
        st.error(t("capacity.refused"), icon=":material/block:")
        return
    now = ui.now()
    view = ui.url_choice(t("capacity.view"), "view", list(VIEWS), "forecast", key="cap_view",
                         format_func=lambda v: ctx.t(f"capacity.tab.{v}"))
    fits = cap.latest_fits(ctx.store)
    if fits.empty and view != "calculator":
        st.info(t("capacity.no_fits", hours=f"{ctx.cfg.capacity.fit_every_hours:g}"), icon=":material/hourglass_top:")
        return
    ui.guarded(SECTIONS[view])(ctx, fits, now)


if __name__ == "__main__":          # st.navigation runs a page file as __main__
    page(context.current())
