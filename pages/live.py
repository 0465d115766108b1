"""Live NOC page: fleet figures, host x GPU heatmap, problems, drill-down.

Auto-refreshes with `st.fragment(run_every=...)` (interval from config). The
cluster, heatmap metric, heatmap page and drill-down host live in the URL, so a
view can be shared.

A heatmap of more than PAGE_HOSTS hosts (a 10,000-GPU centre has 1,250: about one pixel a
host on a wide screen, and seconds to build the figure) is paged: hosts with a problem cell
come first, worst state first (`host_order`), then the rest in the query's order, and a page of
PAGE_HOSTS hosts shows the full host x GPU grid. Above it sits an overview of every host, one
cell each (`host_overview_figure`: mean utilisation or the hottest / highest-power GPU, hosts
with a problem marked by their worst state), OVERVIEW_COLUMNS hosts a row in the query's order,
so a host keeps its place from one refresh to the next. A centre of up to PAGE_HOSTS hosts sees
the one heatmap it always did. `page(ctx)` draws it from the session's PageContext (pages/context.py).

Plotly reads a subset of HTML in every text it draws (tick labels, hover text,
legend names, titles: `<a href>` becomes a clickable link), and host names, models,
tenants and device ids come from exporters' labels. Such text goes through `text()`
(HTML-escaped) before it reaches a figure, so a label is shown as the characters it has.
"""

from __future__ import annotations

import html
from typing import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import i18n
from pages import context, ui
from pages.context import PageContext
from queries import energy

METRICS = {"util": ("util_pct", "heatmap.util", "%", "Blues", 0, 100),
           "temp": ("temp_c", "heatmap.temp", "°C", "YlOrRd", 25, 95),
           "power": ("power_w", "heatmap.power", "W", "Viridis", 0, None)}
# heatmap overlay per problem state: (plotly marker symbol, colour)
STATE_MARK = {"lost": ("x", "#d62728"), "unhealthy": ("square", "#d62728"), "xid": ("diamond", "#d62728"),
              "thermal": ("triangle-up", "#ff7f0e"), "no_data": ("circle-open", "#7f7f7f")}


def text(v: object) -> str:
    """Label text for a plotly figure: its HTML escaped, so it reads as written and links nothing."""
    return html.escape(str(v), quote=True)


def _kind_text(ctx: PageContext, row: pd.Series) -> str:
    if row["kind"] == "exporter_down" and _first_key(row.get("detail_msg")) == "msg.no_rows":
        return ctx.t("problem.exporter_empty")        # it answers, with nothing in it
    return ctx.t(f"problem.{row['kind']}")


def _first_key(stored: object) -> str | None:
    """The key of a stored run message's first part (None: plain text or nothing)."""
    parts = i18n.loads(stored) if isinstance(stored, str) else []
    return parts[0].key if parts and isinstance(parts[0], i18n.Msg) else None


def _detail_text(ctx: PageContext, row: pd.Series) -> str:
    t = ctx.t
    kind = row["kind"]
    if kind == "xid":
        code = int(row["code"])
        meaning = t(f"xid.{code}") if ui.i18n_has(f"xid.{code}") else t("xid.other")
        return t("problem.detail.xid", code=code, meaning=meaning)
    if kind == "thermal":
        return t("problem.detail.thermal", temp=row["detail"] or "—")
    if kind == "lost":
        return t("problem.detail.lost")
    if kind == "unhealthy":
        return t("problem.detail.unhealthy")
    if kind == "ecc":
        which = row["detail"] if row["detail"] in ("dbe", "remap_pending", "remap_failed") else "dbe"
        return t(f"problem.detail.ecc.{which}", n="—" if ui.missing(row["code"]) else int(row["code"]))
    if kind == "exporter_down":
        return t("problem.detail.exporter_down", error=ctx.render(row.get("detail_msg"), row["detail"]) or "—")
    if kind == "stale":
        return t("problem.detail.stale", last=row["detail"] or t("common.never"))
    if kind == "duplicate_id":
        return t("problem.detail.duplicate_id", device=row["device_id"] or "—", targets=row["detail"] or "—")
    return str(row["detail"] or "")


def fleet_figures(ctx: PageContext, at) -> None:
    t, cluster, stale_s = ctx.t, ctx.filters.get("cluster"), ctx.cfg.collection.stale_after_s
    inventory = sum(c.nodes * c.gpus_per_node for c in ctx.cfg.clusters if cluster is None or c.id == cluster)
    s = ctx.store.query("fleet_summary", now=at, stale_s=stale_s, cluster=cluster, owned=inventory).iloc[0]
    owned = int(s["owned"])
    if s["newest_sample"] is None or ui.missing(s["newest_sample"]):
        st.info(t("live.waiting"), icon=":material/hourglass_top:")
        return

    def pct(n):
        return t("live.pct_of_owned", pct=f"{100.0 * int(n) / owned:.0f}")

    cols = st.columns(7)
    cols[0].metric(t("fleet.owned"), f"{owned:,}", help=t("fleet.owned_help"))
    cols[1].metric(t("fleet.healthy"), f"{int(s['healthy']):,}", pct(s["healthy"]), delta_color="off",
                   delta_arrow="off",
                   help=t("fleet.healthy_help"))
    cols[2].metric(t("fleet.allocated"), f"{int(s['allocated']):,}", pct(s["allocated"]), delta_color="off",
                   delta_arrow="off",
                   help=t("fleet.allocated_help"))
    cols[3].metric(t("fleet.busy"), f"{int(s['busy']):,}", pct(s["busy"]), delta_color="off", delta_arrow="off",
                   help=t("fleet.busy_help"))
    cols[4].metric(t("fleet.allocated_idle"), f"{int(s['allocated_idle']):,}", pct(s["allocated_idle"]),
                   delta_color="off", delta_arrow="off", help=t("fleet.allocated_idle_help"))
    cols[5].metric(t("fleet.faulted"), f"{int(s['faulted']):,}",
                   t("fleet.throttled_n", n=int(s["throttled"])), delta_color="off", delta_arrow="off",
                   help=t("fleet.faulted_help"))
    cols[6].metric(t("fleet.no_data"), f"{int(s['no_data']):,}", help=t("fleet.no_data_help"))

    fac = energy.live_power(ctx.store, ctx.cfg, at, stale_s * 4)     # one IT category, no sub-meters
    more = st.columns(4)
    more[0].metric(t("fleet.power"), ui.fmt_num(s["power_w"] / 1000.0, 1, "kW"), help=t("fleet.power_help"))
    installed = float(s["installed_pflops"])
    delivered = float(s["delivered_pflops"])
    share = f"{100 * delivered / installed:.0f}%" if installed else "—"
    more[1].metric(t("fleet.pflops"), f"{delivered:,.1f} / {installed:,.1f}",
                   t("fleet.pflops_share", share=share), delta_color="off", delta_arrow="off",
                   help=t("fleet.pflops_help"))
    if cluster is None and len(fac) and not ui.missing(fac.iloc[0]["pue"]):
        f = fac.iloc[0]
        more[2].metric(t("fleet.pue"), f"{float(f['pue']):.2f}",
                       t("fleet.pue_category",
                         cat=int(f["pue_category"]) if not ui.missing(f["pue_category"]) else "—"),
                       delta_color="off", delta_arrow="off", help=t("fleet.pue_help"))
    else:
        more[2].metric(t("fleet.pue"), "—", help=t("fleet.pue_help"))
    more[3].metric(t("fleet.data_age"), ui.fmt_age(s["newest_sample"], at), help=t("fleet.data_age_help"))


VENDOR_KEYS = {"nvidia": "vendor.nvidia", "amd": "vendor.amd", "huawei": "vendor.huawei"}


def by_model(ctx: PageContext, at) -> None:
    """One row per vendor and model: a mixed floor (NVIDIA, AMD, Ascend) at a glance."""
    t = ctx.t
    df = ctx.store.query("fleet_by_model", now=at, stale_s=ctx.cfg.collection.stale_after_s,
                         cluster=ctx.filters.get("cluster"))
    if df.empty:
        return
    view = pd.DataFrame({
        t("models.col.vendor"): df["vendor"].map(lambda v: t(VENDOR_KEYS.get(v, "vendor.other"))),
        t("models.col.model"): df["model"],
        t("models.col.clusters"): df["clusters"].fillna("—"),
        t("models.col.boards"): df["boards"].astype(int),
        t("models.col.healthy"): df["healthy"].astype(int),
        t("models.col.busy"): df["busy"].astype(int),
        t("models.col.faulted"): df["faulted"].astype(int),
        t("models.col.no_data"): df["no_data"].astype(int),
        t("models.col.util"): df["mean_util_pct"].map(lambda v: "—" if ui.missing(v) else f"{v:.0f} %"),
        t("models.col.power"): df["power_kw"].map(lambda v: f"{v:,.1f}"),
        t("models.col.pflops"): [f"{d:,.1f} / {i:,.1f}" if not ui.missing(c) else t("models.not_in_catalogue")
                                 for d, i, c in zip(df["delivered_pflops"], df["installed_pflops"],
                                                    df["catalogue_model"])],
    })
    st.markdown(f"**{t('models.title')}**")
    st.dataframe(view, hide_index=True, width="stretch", height=ui.table_height(len(view)))


PAGE_HOSTS = 128
# worst first: the order problem hosts lead the paged heatmap in
STATE_RANK = {"lost": 0, "unhealthy": 1, "xid": 2, "thermal": 3, "no_data": 4}


def host_order(df: pd.DataFrame) -> list[str]:
    """The `heatmap` rows' hosts, those with a problem cell first (worst state first), each
    group in the query's order."""
    hosts = list(dict.fromkeys(df["host"]))
    worst = df.assign(rank=df["state"].map(STATE_RANK).fillna(len(STATE_RANK))).groupby("host")["rank"].min()
    first = {h: i for i, h in enumerate(hosts)}
    return sorted(hosts, key=lambda h: (worst.get(h, len(STATE_RANK)), first[h]))


def heatmap_page(df: pd.DataFrame, page: int, size: int = PAGE_HOSTS) -> tuple[pd.DataFrame, list[str], int]:
    """Page `page` (from 1) of `size` hosts of the `heatmap` rows, in `host_order`: its rows (hosts
    in that order), its hosts, and the number of hosts with a problem cell in the whole set."""
    order = host_order(df)
    hosts = order[(page - 1) * size: page * size]
    pos = {h: i for i, h in enumerate(hosts)}
    rows = df[df["host"].isin(pos)]
    rows = rows.assign(_pos=rows["host"].map(pos)).sort_values(["_pos", "gpu_index"], kind="stable")
    problem_hosts = int(df.loc[df["state"].isin(list(STATE_RANK)), "host"].nunique())
    return rows.drop(columns="_pos"), hosts, problem_hosts


OVERVIEW_COLUMNS = 50


def host_overview(df: pd.DataFrame) -> pd.DataFrame:
    """One row per host of the `heatmap` rows, in their order: util_pct the mean of its GPUs,
    temp_c and power_w the highest, state its worst (problem) state or 'ok'."""
    hosts = list(dict.fromkeys(df["host"]))
    ranked = df.assign(rank=df["state"].map(STATE_RANK).fillna(len(STATE_RANK)))
    g = ranked.groupby("host", sort=False)
    out = pd.DataFrame({"util_pct": g["util_pct"].mean(), "temp_c": g["temp_c"].max(),
                        "power_w": g["power_w"].max(), "rank": g["rank"].min()}).reindex(hosts)
    worst = {r: s for s, r in STATE_RANK.items()}
    out["state"] = out["rank"].map(lambda r: worst.get(int(r), "ok"))
    return out.drop(columns="rank").rename_axis("host").reset_index()


def host_overview_figure(df: pd.DataFrame, metric: str, t: Callable[..., str],
                         columns: int = OVERVIEW_COLUMNS) -> go.Figure:
    """Every host of the `heatmap` rows as one cell, `columns` hosts a row; hosts with a problem
    marked by their worst state; labels escaped (module docstring)."""
    col, label_key, unit, scale, zmin, zmax = METRICS[metric]
    hosts = host_overview(df)
    n = len(hosts)
    rows = -(-n // columns)

    def grid(values: list) -> list[list]:
        padded = values + [None] * (rows * columns - n)
        return [padded[r * columns:(r + 1) * columns] for r in range(rows)]

    names = [text(h) for h in hosts["host"]]
    states = [t(f"state.{s}") for s in hosts["state"]]
    z = grid([None if ui.missing(v) else float(v) for v in hosts[col]])
    custom = [[[h, s] if h is not None else ["", ""] for h, s in zip(hr, sr)]
              for hr, sr in zip(grid(names), grid(states))]
    y_labels = [names[r * columns] for r in range(rows)]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(1, columns + 1)), y=y_labels, colorscale=scale, zmin=zmin, zmax=zmax,
        customdata=custom, xgap=1, ygap=1, colorbar={"title": unit, "thickness": 12},
        hovertemplate=("%{customdata[0]}<br>" + t(label_key) + ": %{z:.0f} " + unit
                       + "<br>" + t("heatmap.state") + ": %{customdata[1]}<extra></extra>")))
    for state, (symbol, colour) in STATE_MARK.items():
        at = [i for i, s in enumerate(hosts["state"]) if s == state]
        if not at:
            continue
        fig.add_trace(go.Scatter(
            x=[i % columns + 1 for i in at], y=[y_labels[i // columns] for i in at], mode="markers",
            name=t(f"state.{state}"), hoverinfo="skip",
            marker={"symbol": symbol, "size": 9, "color": colour, "line": {"color": "white", "width": 1.5}}))
    fig.update_layout(height=min(60 + 18 * rows, 700), margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"showticklabels": False},
                      yaxis={"autorange": "reversed", "categoryorder": "array", "categoryarray": y_labels,
                             "tickfont": {"size": 9}},
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
                      plot_bgcolor="white", showlegend=True)
    return fig


def heatmap(ctx: PageContext, at) -> None:
    t = ctx.t
    options = list(METRICS)
    names = {m: t(METRICS[m][1]) for m in options}
    metric = ui.url_choice(t("heatmap.metric"), "metric", options, "util", key="heatmap_metric",
                           format_func=names.__getitem__)
    df = ctx.store.query("heatmap", now=at, stale_s=ctx.cfg.collection.stale_after_s,
                         cluster=ctx.filters.get("cluster"))
    if df.empty:
        return
    n_hosts = df["host"].nunique()
    if n_hosts > PAGE_HOSTS:
        st.caption(t("heatmap.overview", n=n_hosts, columns=OVERVIEW_COLUMNS))
        st.plotly_chart(host_overview_figure(df, metric, t), width="stretch", key="heatmap_overview")
        pages = -(-n_hosts // PAGE_HOSTS)
        from_url = int(ui.param_choice("hosts_page", [str(i) for i in range(1, pages + 1)], "1"))
        page_no = int(st.number_input(t("heatmap.page", pages=pages), min_value=1, max_value=pages,
                                      value=from_url, step=1, key="heatmap_page"))
        ui.set_param("hosts_page", str(page_no), "1")
        df, hosts, problem_hosts = heatmap_page(df, page_no)
        st.caption(t("heatmap.paged", first=(page_no - 1) * PAGE_HOSTS + 1,
                     last=(page_no - 1) * PAGE_HOSTS + len(hosts), n=n_hosts, problems=problem_hosts))
    fig = heatmap_figure(df, metric, t)
    st.plotly_chart(fig, width="stretch", key="heatmap_chart")


def heatmap_figure(df: pd.DataFrame, metric: str, t: Callable[..., str]) -> go.Figure:
    """The host x GPU heatmap of the `heatmap` query's rows, problem cells marked; every label
    from the data escaped (module docstring)."""
    col, label_key, unit, scale, zmin, zmax = METRICS[metric]
    df = df.assign(host=df["host"].map(lambda v: text(v) if isinstance(v, str) else v))
    hosts = list(dict.fromkeys(df["host"]))
    gpus = sorted(df["gpu_index"].dropna().astype(int).unique())

    def grid(values: str) -> pd.DataFrame:
        """One column of the query as a GPU x host grid, every cell present."""
        cells = df.pivot_table(index="gpu_index", columns="host", values=values, aggfunc="first", dropna=False)
        return cells.reindex(index=gpus, columns=hosts)

    z = grid(col)
    state_text = grid("state").map(lambda v: t(f"state.{v}") if isinstance(v, str) else t("state.no_data"))
    tenants, spaces = grid("tenant"), grid("namespace")
    tenant_text = tenants.combine(spaces, lambda ten, ns: ten.where(
        ten.map(lambda v: isinstance(v, str)),
        ns.map(lambda v: t("heatmap.unattributed", ns=v) if isinstance(v, str) else t("heatmap.unallocated"))))
    tenant_text = tenant_text.map(text)
    models = grid("model").map(lambda v: text(v) if isinstance(v, str) else "—")
    custom = [[[state_text.iat[i, j], tenant_text.iat[i, j], models.iat[i, j]] for j in range(len(hosts))]
              for i in range(len(gpus))]
    y_labels = [t("heatmap.device_n", n=g) for g in gpus]
    fig = go.Figure(go.Heatmap(
        z=z.values, x=hosts, y=y_labels, colorscale=scale, zmin=zmin, zmax=zmax,
        customdata=custom, xgap=1, ygap=1, colorbar={"title": unit, "thickness": 12},
        hovertemplate=("%{x} · %{y}<br>" + t(label_key) + ": %{z:.0f} " + unit
                       + "<br>" + t("heatmap.state") + ": %{customdata[0]}"
                       + "<br>" + t("heatmap.tenant") + ": %{customdata[1]}"
                       + "<br>" + t("heatmap.model") + ": %{customdata[2]}<extra></extra>"),
    ))
    # problem cells get a marker on top, so they stand out on any colour
    cells = df[df["state"].isin(list(STATE_MARK))]
    for state, (symbol, colour) in STATE_MARK.items():
        sel = cells[cells["state"] == state]
        if sel.empty:
            continue
        fig.add_trace(go.Scatter(
            x=sel["host"], y=[t("heatmap.device_n", n=int(g)) for g in sel["gpu_index"]], mode="markers",
            name=t(f"state.{state}"), hoverinfo="skip",
            marker={"symbol": symbol, "size": 11, "color": colour, "line": {"color": "white", "width": 1.5}}))
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"tickangle": -90, "tickfont": {"size": 9}, "categoryorder": "array",
                             "categoryarray": hosts},
                      yaxis={"autorange": "reversed", "categoryorder": "array", "categoryarray": y_labels},
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
                      plot_bgcolor="white", showlegend=True)
    return fig


def problems(ctx: PageContext, at) -> None:
    t = ctx.t
    df = ctx.store.query("problems", now=at, stale_s=ctx.cfg.collection.stale_after_s, hours=24,
                         cluster=ctx.filters.get("cluster"))
    st.subheader(t("problems.title", n=len(df)))
    if df.empty:
        st.success(t("problems.none"), icon=":material/check_circle:")
        return
    ongoing = int(df["ongoing"].sum())
    if ongoing:
        st.error(t("problems.ongoing", n=ongoing), icon=":material/error:")
    view = pd.DataFrame({
        t("problems.col.time"): df["ts"].map(ui.fmt_time),
        t("problems.col.kind"): df.apply(lambda r: _kind_text(ctx, r), axis=1),
        t("problems.col.now"): df["ongoing"].map(lambda v: t("problems.ongoing_yes") if v else ""),
        t("problems.col.cluster"): df["cluster"].fillna("—"),
        t("problems.col.host"): df["host"].fillna("—"),
        t("problems.col.gpu"): df["gpu_index"].map(lambda v: "—" if ui.missing(v) else str(int(v))),
        t("problems.col.detail"): df.apply(lambda r: _detail_text(ctx, r), axis=1),
    })
    st.dataframe(view, hide_index=True, width="stretch", height=ui.table_height(len(view), max_rows=8))


def live_view(ctx: PageContext) -> None:
    ui.end_if_expired(ctx)             # a signed-in session's fragment reruns end with it
    at = ui.now()
    fleet_figures(ctx, at)
    by_model(ctx, at)
    heatmap(ctx, at)
    problems(ctx, at)
    st.caption(ctx.t("live.updated", time=ui.fmt_time(at), every=f"{ctx.cfg.ui.refresh_s:g}"))


def drill_down(ctx: PageContext) -> None:
    t = ctx.t
    st.subheader(t("drill.title"))
    hosts_df = ctx.store.query("hosts", cluster=ctx.filters.get("cluster"))
    if hosts_df.empty:
        st.caption(t("drill.no_hosts"))
        return
    hosts = list(dict.fromkeys(hosts_df["host"]))
    c1, c2 = st.columns([2, 3])
    host = ui.url_select(c1, t("drill.host"), "host", hosts, hosts[0], key="drill_host", keep_default=True)
    devs = hosts_df[hosts_df["host"] == host]
    dev_ids = ["all", *devs["device_id"].tolist()]
    labels = {r.device_id: (t("heatmap.device_n", n=int(r.gpu_index)) if not ui.missing(r.gpu_index) else r.device_id)
              + (f" · {r.mig_profile}" if isinstance(r.mig_profile, str) else "") for r in devs.itertuples()}
    choice_labels = {"all": t("drill.all_gpus"), **labels}
    dev = c2.selectbox(t("drill.gpu"), dev_ids, key="drill_gpu", format_func=choice_labels.__getitem__)
    hist = ctx.store.query("device_history", now=ui.now(), minutes=60, host=host,
                            device_id=None if dev == "all" else dev)
    if hist.empty:
        st.caption(t("drill.no_data"))
        return
    hist["label"] = hist["device_id"].map(labels)
    charts = [("util_pct", "drill.util", "%"), ("temp_c", "drill.temp", "°C"), ("power_w", "drill.power", "W")]
    cols = st.columns(3)
    for (col, key, unit), place in zip(charts, cols):
        fig = go.Figure()
        for label, g in hist.groupby("label", sort=False):
            fig.add_trace(go.Scatter(x=g["ts"], y=g[col], mode="lines", name=text(label)))
        fig.update_layout(title=f"{t(key)} ({unit})", height=260, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                          showlegend=dev == "all" and place is cols[2], legend={"font": {"size": 9}})
        place.plotly_chart(fig, width="stretch", key=f"drill_{col}")
    st.download_button(t("drill.download"), hist.drop(columns=["label"]).to_csv(index=False).encode(),
                       file_name=f"{host}-last-hour.csv", mime="text/csv")


def page(ctx: PageContext) -> None:
    st.title(ctx.t("live.title"))
    ui.cluster_filter(ctx)
    st.fragment(ui.guarded(live_view), run_every=ctx.cfg.ui.refresh_s)(ctx)     # refreshes on its own
    st.divider()
    drill_down(ctx)


if __name__ == "__main__":          # st.navigation runs a page file as __main__; tests import its functions
    page(context.current())
