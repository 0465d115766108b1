"""The report's charts: plotly figures drawn from a `Report`'s tables, turned into SVG by kaleido.

Kaleido v1 drives a Chromium; the report pins Debian's (`[reports] chromium`, /usr/bin/chromium)
and never calls `kaleido_get_chrome` (which downloads one). `render_svgs` starts one kaleido
server for one report job (its browser takes about 430 MB while up), draws every chart with
MathJax off, and stops it, in a thread of its own so that a caller with an event loop (a
Streamlit script, a job thread) is not disturbed. Without the browser, or when it fails, the
charts are left out and the report says so (`reports.note.no_charts`).

Text in the charts is in the report's language, in Noto Sans CJK SC (fonts-noto-cjk), the family
the PDF uses, so Chinese renders the same in both.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

import plotly.graph_objects as go

import i18n
from i18n import Msg, msg
from reports.data import Report
from reports.render import tenant_label

log = logging.getLogger(__name__)

FONT = "Noto Sans CJK SC"
WIDTH, HEIGHT = 900, 340
BLUE, RED, ORANGE, AMBER, LIGHT, GREY = "#1f77b4", "#d62728", "#ff7f0e", "#ffbf00", "#8fbce6", "#9e9e9e"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _layout(fig: go.Figure, height: int = HEIGHT, **kw: Any) -> go.Figure:
    fig.update_layout(width=WIDTH, height=height, font={"family": FONT, "size": 13}, plot_bgcolor="white",
                      paper_bgcolor="white", margin={"l": 70, "r": 20, "t": 20, "b": 60}, **kw)
    fig.update_xaxes(gridcolor="#e5e5e5", linecolor="#888888")
    fig.update_yaxes(gridcolor="#e5e5e5", linecolor="#888888")
    return fig


def util_daily(report: Report, lang: str) -> go.Figure | None:
    df = report.section("utilisation").block("daily").table.rows
    if df.empty:
        return None
    days = [d.tz_convert(report.tz).strftime("%m-%d") for d in df["bucket"]]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=days, y=df["allocated_gpu_hours"] / df["owned_gpu_hours"] * 100,
                         name=i18n.t("reports.chart.allocated_share", lang), marker={"color": LIGHT}))
    fig.add_trace(go.Scatter(x=days, y=df["util_pct"], mode="lines+markers", name=i18n.t("history.col.util", lang),
                             line={"color": BLUE, "width": 2.5}))
    target = report.headline.table.rows.set_index("figure").loc["util_pct", "target"]
    fig.add_hline(y=float(target), line={"color": RED, "dash": "dash"},
                  annotation_text=i18n.t("history.target", lang, target=f"{float(target):g}"),
                  annotation_position="top left")
    return _layout(fig, xaxis={"type": "category"}, yaxis={"title": "%", "range": [0, 100]},
                   legend={"orientation": "h", "y": -0.2})


def ladder(report: Report, lang: str, by: str) -> go.Figure | None:
    name = {"fleet": "ladder", "cluster": "by_cluster", "model": "by_model"}[by]
    table = report.section("utilisation").block(name).table
    df = table.rows
    if df.empty:
        return None
    keys = [str(k) for k in df[by]] if by in df else [i18n.t("reports.chart.fleet", lang)]
    parts = {"useful": (df["useful_gpu_hours"], BLUE),
             "not_useful": (df["busy_gpu_hours"] - df["useful_gpu_hours"], LIGHT),
             "idle": (df["allocated_gpu_hours"] - df["busy_gpu_hours"], AMBER),
             "unallocated": (df["available_gpu_hours"] - df["allocated_gpu_hours"], ORANGE),
             "unavailable": (df["observed_gpu_hours"] - df["available_gpu_hours"], RED),
             "no_data": (df["no_data_gpu_hours"], GREY)}
    fig = go.Figure()
    for part, (values, colour) in parts.items():
        label = i18n.t("history.step.useful" if part == "useful" else f"history.loss.{part}", lang)
        fig.add_trace(go.Bar(y=keys, x=values.astype(float), name=label, orientation="h", marker={"color": colour}))
    fig = _layout(fig, height=170 + 45 * len(keys), barmode="stack",
                  xaxis={"title": i18n.t("history.axis.gpu_hours", lang)}, yaxis={"autorange": "reversed"},
                  legend={"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0})
    fig.update_layout(margin={"b": 110})
    return fig


def heatmap(report: Report, lang: str) -> go.Figure | None:
    df = report.section("utilisation").block("heatmap").table.rows
    if df.empty:
        return None
    grid = (df.pivot_table(index="weekday", columns="hour_of_day", values="util_pct", aggfunc="first")
            .reindex(index=range(1, 8), columns=range(24)))
    fig = go.Figure(go.Heatmap(z=grid.values, x=[f"{h:02d}" for h in range(24)],
                               y=[i18n.t(f"history.weekday.{d}", lang) for d in WEEKDAYS], zmin=0, zmax=100,
                               colorscale="Blues", colorbar={"title": "%", "thickness": 12}, xgap=1, ygap=1))
    return _layout(fig, height=300, xaxis={"title": i18n.t("history.axis.hour", lang)},
                   yaxis={"autorange": "reversed"})


def tenants(report: Report, lang: str) -> go.Figure | None:
    section = report.sections[1] if report.tenant is None else report.sections[0]
    table = section.block("usage").table
    df = table.rows
    if df.empty or report.tenant is not None:
        return None
    names = [tenant_label(str(k), table.names, lang) for k in df["tenant"]]
    fig = go.Figure()
    for col, colour in (("allocated_gpu_hours", LIGHT), ("busy_gpu_hours", BLUE)):
        fig.add_trace(go.Bar(x=names, y=df[col].astype(float), name=i18n.t(f"history.col.{col.split('_')[0]}", lang),
                             marker={"color": colour}))
    return _layout(fig, barmode="group", yaxis={"title": i18n.t("history.axis.gpu_hours", lang)},
                   legend={"orientation": "h", "y": -0.3})


def tenant_daily(report: Report, lang: str) -> go.Figure | None:
    if report.tenant is None:
        return None
    df = report.sections[0].block("daily").table.rows
    if df.empty:
        return None
    days = [d.tz_convert(report.tz).strftime("%m-%d") for d in df["bucket"]]
    fig = go.Figure(go.Bar(x=days, y=df["allocated_gpu_hours"].astype(float),
                           name=i18n.t("history.col.allocated", lang), marker={"color": BLUE}))
    return _layout(fig, xaxis={"type": "category"}, yaxis={"title": i18n.t("history.axis.gpu_hours", lang)})


def incidents(report: Report, lang: str) -> go.Figure | None:
    df = report.section("reliability").block("incidents").table.rows
    df = df[df["gpu_hours_lost"].astype(float).fillna(0) > 0]
    if df.empty:
        return None
    fig = go.Figure(go.Bar(x=[i18n.t(f"reports.incident.{k}", lang) for k in df["kind"]],
                           y=df["gpu_hours_lost"].astype(float), marker={"color": RED}))
    return _layout(fig, height=280, yaxis={"title": i18n.t("reports.col.gpu_hours_lost", lang) + " (GPU-h)"})


def _energy(report: Report) -> Any | None:
    try:
        s = report.section("energy")
    except KeyError:
        return None
    return s


def pue_daily(report: Report, lang: str, cfg_grades: list[tuple[int, float]], target: float | None) -> go.Figure | None:
    """Daily PUE per site over the grade bands (GB 40879: shaded up to each grade's bound) and
    the target line."""
    s = _energy(report)
    if s is None:
        return None
    df = s.block("pue_daily").table.rows
    df = df[df["pue"].notna()]
    if df.empty:
        return None
    fig = go.Figure()
    low = 1.0
    shades = ("#dff0d8", "#fcf8e3", "#f2dede", "#eeeeee")
    for i, (grade, bound) in enumerate(sorted(cfg_grades, key=lambda g: g[1])):
        fig.add_hrect(y0=low, y1=bound, fillcolor=shades[min(i, len(shades) - 1)], opacity=0.7, line_width=0,
                      annotation_text=i18n.t("reports.chart.grade", lang, n=grade), annotation_position="right")
        low = bound
    for site, part in df.groupby("site"):
        days = [d.tz_convert(report.tz).strftime("%m-%d") for d in part["bucket"]]
        fig.add_trace(go.Scatter(x=days, y=part["pue"].astype(float), mode="lines+markers", name=str(site)))
    if target is not None:
        fig.add_hline(y=target, line={"color": RED, "dash": "dash"},
                      annotation_text=i18n.t("history.target", lang, target=f"{target:g}"),
                      annotation_position="top left")
    top = max(float(df["pue"].max()), low, target or 0) + 0.05
    fig = _layout(fig, xaxis={"type": "category"}, yaxis={"title": i18n.t("reports.chart.pue", lang),
                                                          "range": [1.0, top]},
                  legend={"orientation": "h", "y": -0.2})
    fig.update_layout(margin={"r": 60})
    return fig


def tariff(report: Report, lang: str) -> go.Figure | None:
    s = _energy(report)
    if s is None:
        return None
    df = s.block("tariff").table.rows
    if df.empty:
        return None
    periods = ("sharp", "peak", "flat", "valley")
    kwh = [float(df[f"{p}_kwh"].astype(float).sum()) for p in periods]
    cny = [df[f"{p}_cny"].astype(float).sum(min_count=1) for p in periods]
    labels = [i18n.t(f"energy.period.{p}", lang) for p in periods]
    fig = go.Figure(go.Bar(x=labels, y=kwh, marker={"color": [RED, ORANGE, LIGHT, BLUE]},
                           text=[("" if c != c else f"{c:,.0f} CNY") for c in cny], textposition="outside"))
    return _layout(fig, height=300, yaxis={"title": i18n.t("reports.chart.kwh", lang)})


def exhaustion(report: Report, lang: str) -> go.Figure | None:
    """The fleet's peak concurrent GPUs: the measured days, the forecast's median with its 80 % and
    95 % bands, and the owned GPUs it runs out against."""
    try:
        s = report.section("capacity")
        fc, measured = s.block("forecast").table, s.block("measured").table.rows
    except KeyError:
        return None
    df = fc.rows
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=list(df["day"]) + list(df["day"])[::-1],
                             y=list(df["hi95"].astype(float)) + list(df["lo95"].astype(float))[::-1], fill="toself",
                             fillcolor="rgba(31,119,180,0.12)", line={"width": 0},
                             name=i18n.t("reports.chart.band95", lang)))
    fig.add_trace(go.Scatter(x=list(df["day"]) + list(df["day"])[::-1],
                             y=list(df["hi80"].astype(float)) + list(df["lo80"].astype(float))[::-1], fill="toself",
                             fillcolor="rgba(31,119,180,0.25)", line={"width": 0},
                             name=i18n.t("reports.chart.band80", lang)))
    fig.add_trace(go.Scatter(x=df["day"], y=df["median"].astype(float), mode="lines", line={"color": BLUE},
                             name=i18n.t("reports.chart.median", lang)))
    fig.add_trace(go.Scatter(x=measured["day"], y=measured["measured"].astype(float), mode="lines",
                             line={"color": "#333333"}, name=i18n.t("reports.col.measured", lang)))
    cap = (getattr(fc, "about", None) or {}).get("capacity")
    if cap is not None:
        fig.add_hline(y=float(cap), line={"color": RED, "dash": "dash"},
                      annotation_text=i18n.t("reports.chart.capacity", lang), annotation_position="top left")
    return _layout(fig, yaxis={"title": "GPUs", "rangemode": "tozero"}, legend={"orientation": "h", "y": -0.2})


def figures(report: Report, lang: str, cfg: Any = None) -> dict[str, go.Figure]:
    """Every chart the report has data for, by name (the PDF template places them by name)."""
    if report.tenant is not None:
        makers = {"tenant_daily": lambda: tenant_daily(report, lang)}
    else:
        makers = {"util_daily": lambda: util_daily(report, lang),
                  "ladder": lambda: ladder(report, lang, "fleet"),
                  "by_cluster": lambda: ladder(report, lang, "cluster"),
                  "by_model": lambda: ladder(report, lang, "model"),
                  "heatmap": lambda: heatmap(report, lang),
                  "tenants": lambda: tenants(report, lang),
                  "incidents": lambda: incidents(report, lang),
                  "tariff": lambda: tariff(report, lang),
                  "exhaustion": lambda: exhaustion(report, lang)}
        if cfg is not None and _energy(report) is not None:
            grades = [(g.grade, g.max_pue) for g in cfg.energy.pue.grades]
            heads = report.headline.table.rows.set_index("figure")
            target = float(heads.loc["pue", "target"]) if "pue" in heads.index and heads.loc["pue", "target"] == \
                heads.loc["pue", "target"] else None
            makers["pue_daily"] = lambda: pue_daily(report, lang, grades, target)
    out: dict[str, go.Figure] = {}
    for name, make in makers.items():
        fig = make()
        if fig is not None:
            out[name] = fig
    return out


def browser_problem(path: str) -> Msg | None:
    """Why charts cannot be drawn with the browser at `path`, or None."""
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        return msg("reports.note.no_browser", path=path)
    return None


def render_svgs(figs: dict[str, go.Figure], chromium: str,
                timeout_s: float = 90.0) -> tuple[dict[str, bytes], Msg | None]:
    """Every figure as SVG bytes, drawn by one kaleido server started for this call and stopped
    after it; ({}, why) when the browser is missing or fails."""
    if not figs:
        return {}, None
    problem = browser_problem(chromium)
    if problem is not None:
        return {}, problem
    result: dict[str, Any] = {}

    async def draw() -> dict[str, bytes]:
        import kaleido

        out: dict[str, bytes] = {}
        async with kaleido.Kaleido(n=1, timeout=timeout_s, path=chromium, mathjax=False) as k:
            for name, fig in figs.items():
                out[name] = await k.calc_fig(fig, opts={"format": "svg", "width": fig.layout.width or WIDTH,
                                                         "height": fig.layout.height or HEIGHT})
        return out

    def run() -> None:
        try:
            result["svgs"] = asyncio.run(draw())
        except Exception as exc:            # the report goes out without charts, saying why
            log.exception("charts could not be drawn")
            result["error"] = f"{type(exc).__name__}: {exc}"

    worker = threading.Thread(target=run, name="report-charts", daemon=True)
    worker.start()
    worker.join(timeout_s * 2 + 30)
    if "svgs" in result:
        return result["svgs"], None
    return {}, msg("reports.note.chart_error", error=result.get("error", "timed out"))

