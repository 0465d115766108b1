"""Billing page: a month's bills per tenant, one tenant's line items and voucher caps, issuing the
month, the voucher reconciliation per programme, and usage against quotas.

The month, the tenant drilled into, the reconciliation's period and programme and the quota
shown live in the URL (each checked against its list), so a view can be shared. Every table is
queries/billing.py's or queries/quotas.py's, the ones the API and the monthly report use, and
each downloads as CSV (the API's columns), as CSV for people and as XLSX in the reader's
language. `quota_watch(ctx, view)` draws the near/over-quota list for other pages (the tenants
page). A signed-in tenant sees its own bill and quotas alone and cannot issue.
"""

from __future__ import annotations

from datetime import datetime

import plotly.graph_objects as go
import streamlit as st

import i18n
from pages import context, ui
from pages.context import PageContext
from queries import billing, quotas
from queries.billing import BillTable, Bills
from queries.history import HistoryTable, ParamError, View, tenant_names



def show(ctx: PageContext, table: HistoryTable, name: str, *, max_rows: int = 12) -> None:
    """A table as people read it, and its downloads: CSV (the API's columns and numbers), CSV and
    XLSX-ready headers in the reader's language."""
    people = table.for_people(ctx.lang)
    st.dataframe(people, hide_index=True, width="stretch", height=ui.table_height(len(people), max_rows=max_rows))
    cols = st.columns(3)
    cols[0].download_button(ctx.t("history.download_csv"), table.to_csv().encode(), file_name=f"{name}.csv",
                            mime="text/csv", key=f"csv_{name}", icon=":material/download:")
    if isinstance(table, BillTable):
        cols[1].download_button(ctx.t("billing.download_csv", lang=i18n.LANGUAGES[ctx.lang]),
                                table.to_people_csv(ctx.lang), file_name=f"{name}-{ctx.lang}.csv", mime="text/csv",
                                key=f"people_csv_{name}", icon=":material/download:")


def _money(v: object) -> str:
    return ui.fmt_num(v, 2)


def month_picker(ctx: PageContext, now: datetime) -> str:
    months = billing.recent_months(ctx.cfg, now)
    default = months[1] if len(months) > 1 else months[0]        # the last month that has ended
    shared = st.query_params.get("month")
    if shared and shared not in months:
        try:
            billing.month(ctx.cfg, shared)
            months.append(shared)
        except ParamError:
            pass
    return ui.url_select(st.sidebar, ctx.t("billing.month"), "month", months, default, key="billing_month")


def summary_section(ctx: PageContext, b: Bills, now: datetime) -> None:
    t = ctx.t
    state = t("billing.state.open") if b.month.end > now else t("billing.state.closed")
    st.caption(t("billing.caption", month=b.month.name, tz=b.month.tz, state=state))
    if b.energy_missing:
        st.info(t("billing.energy_missing"), icon=":material/bolt:")
    st.subheader(t("billing.summary.title"))
    if b.summary.empty:
        st.info(t("billing.no_bills"), icon=":material/info:")
        return
    s = b.summary
    cols = st.columns(4)
    cols[0].metric(t("billing.kpi.gross"), _money(s["gross"].sum()))
    cols[1].metric(t("billing.kpi.subsidy"), _money(s["subsidy"].sum()))
    cols[2].metric(t("billing.kpi.net"), _money(s["net"].sum()))
    cols[3].metric(t("billing.kpi.issued"), f"{int((s['status'] == 'issued').sum())} / {len(s)}")
    names = [tenant_names(ctx.cfg, scope=ctx.scope).get(k, k) for k in s["tenant"]]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=s["net"], name=t("billing.col.net"), marker={"color": "#1f77b4"}))
    fig.add_trace(go.Bar(x=names, y=s["subsidy"], name=t("billing.col.subsidy_total"), marker={"color": "#2ca02c"}))
    fig.update_layout(barmode="stack", height=280, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      yaxis={"title": "CNY"}, legend={"orientation": "h", "y": -0.25}, plot_bgcolor="white")
    st.plotly_chart(fig, width="stretch", key="billing_bars")
    show(ctx, billing.bill_table(b), f"bills-{b.month.name}", max_rows=20)
    st.download_button(ctx.t("billing.download_xlsx", lang=i18n.LANGUAGES[ctx.lang]),
                       billing.bills_xlsx(ctx.store, ctx.cfg, b.month.name, ctx.lang, scope=ctx.scope, b=b),
                       file_name=f"bills-{b.month.name}-{ctx.lang}.xlsx",
                       mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                       key="bills_xlsx", icon=":material/table_view:")


def detail_section(ctx: PageContext, b: Bills) -> None:
    t = ctx.t
    tenants = [str(k) for k in b.summary["tenant"]]
    if not tenants:
        return
    st.subheader(t("billing.detail.title"))
    names = tenant_names(ctx.cfg, scope=ctx.scope)
    tenant = ui.url_select(st, t("billing.col.tenant"), "tenant", tenants, tenants[0], key="billing_tenant",
                           format_func=lambda k: f"{names.get(k, k)} ({k})" if names.get(k, k) != k else k,
                           keep_default=True)
    row = b.summary[b.summary["tenant"] == tenant].iloc[0]
    cols = st.columns(4)
    cols[0].metric(t("billing.kpi.gross"), _money(row["gross"]))
    cols[1].metric(t("billing.kpi.subsidy"), _money(row["subsidy"]))
    cols[2].metric(t("billing.col.adjustment"), _money(row["adjustment"]))
    cols[3].metric(t("billing.kpi.net"), f"{_money(row['net'])} {row['currency']}")
    if row["status"] == "issued":
        at = ui.fmt_time(row["issued_at"])
        issuer = row["issued_by"] if not ui.missing(row["issued_by"]) else "—"
        st.caption(t("billing.issued_note", at=at, who=issuer, version=row["rules_version"]))
        diff = row["difference"]
        if not ui.missing(diff) and abs(float(diff)) >= 0.01:
            st.warning(t("billing.detail.difference", amount=_money(diff), currency=row["currency"]),
                       icon=":material/difference:")
    show(ctx, billing.lines_table(b, tenant), f"bill-{b.month.name}-{tenant}")
    st.markdown(f"**{t('billing.detail.caps')}**")
    claims = billing.claims_table(b)
    mine = claims.rows[claims.rows["tenant"] == tenant].reset_index(drop=True)
    if mine.empty:
        st.caption(t("billing.detail.no_vouchers"))
        return
    show(ctx, BillTable(claims.columns, mine, tz=claims.tz, names=claims.names, headers=claims.headers),
         f"vouchers-{b.month.name}-{tenant}")


def issue_section(ctx: PageContext, b: Bills, now: datetime) -> None:
    t = ctx.t
    st.subheader(t("billing.issue.title"))
    if ctx.scope.tenant is not None or ctx.scope.role not in billing.ISSUERS:
        st.caption(t("billing.issue.tenant_scope"))
        return
    st.caption(t("billing.issue.help"))
    drafts = int((b.summary["status"] == "draft").sum()) if len(b.summary) else 0
    if b.month.end > now:
        st.info(t("billing.issue.open", month=b.month.name), icon=":material/schedule:")
        return
    if not drafts:
        st.success(t("billing.issue.none"), icon=":material/check_circle:")
        return
    if st.button(t("billing.issue.button", n=drafts, month=b.month.name), key="billing_issue",
                 icon=":material/approval:", type="primary"):
        try:
            done = billing.issue_month(ctx.store, ctx.cfg, b.month.name, ctx.scope, now=now)
        except billing.BillingError as exc:
            st.error(exc.message(ctx.lang), icon=":material/block:")
            return
        st.success(t("billing.issue.done", n=len(done), month=b.month.name), icon=":material/check_circle:")
        st.rerun()


def reconciliation_section(ctx: PageContext, b: Bills, now: datetime) -> None:
    t = ctx.t
    st.subheader(t("billing.recon.title"))
    progs = [p.id for p in ctx.cfg.billing.programmes]
    if not progs:
        st.caption(t("billing.recon.none"))
        return
    year = str(b.month.year)
    periods = [b.month.name, year]
    current = ui.param_choice("period", periods, b.month.name)
    cols = st.columns(2)
    period = cols[0].radio(t("billing.recon.period"), periods, index=periods.index(current), horizontal=True,
                           key="billing_period", format_func=lambda p: t("billing.recon.month") if p != year
                           else t("billing.recon.year", year=year))
    ui.set_param("period", period, b.month.name)
    options = ["all", *progs]
    headers = billing.programme_headers(ctx.cfg)
    chosen = ui.param_choice("programme", options, "all")
    programme = cols[1].selectbox(t("billing.recon.programme"), options, index=options.index(chosen),
                                  key="billing_programme",
                                  format_func=lambda p: t("billing.recon.all") if p == "all"
                                  else headers[f"programme:{p}"].get(ctx.lang) or p)
    ui.set_param("programme", programme, "all")
    table = billing.reconciliation(ctx.store, ctx.cfg, period, programme=None if programme == "all" else programme,
                                   now=now, scope=ctx.scope)
    if table.rows.empty:
        st.caption(t("billing.recon.none"))
        return
    for pid, part in table.rows.groupby("programme", sort=False):
        st.caption(t("billing.recon.total", programme=table.programme_name(str(pid), ctx.lang), n=len(part),
                     amount=_money(part["subsidy"].sum())))
    show(ctx, table, f"vouchers-{period}-{programme}", max_rows=15)


def quota_view(ctx: PageContext, b: Bills, now: datetime) -> View:
    """The quotas' range: the bill's month, up to now."""
    return View(start=b.month.start, end=min(b.month.end, now), tz=b.month.tz)


def quota_section(ctx: PageContext, b: Bills, now: datetime) -> None:
    t = ctx.t
    st.subheader(t("billing.quota.title"))
    qs = [q for q in ctx.cfg.billing.quotas if ctx.scope.tenant in (None, q.tenant)]
    if not qs:
        st.caption(t("billing.quota.none"))
        return
    view = quota_view(ctx, b, now)
    if view.end <= view.start:
        return
    table = quotas.quota_table(ctx.store, ctx.cfg, view, now, scope=ctx.scope)
    show(ctx, table, f"quotas-{b.month.name}")
    st.caption(t("billing.quota.denied_note"))
    keys = [f"{q.tenant}:{quotas.quota_label(q) or '*'}" for q in qs]
    names = tenant_names(ctx.cfg, scope=ctx.scope)
    pick = ui.url_select(st, t("billing.quota.pick"), "quota", keys, keys[0], key="billing_quota",
                         format_func=lambda k: f"{names.get(k.split(':')[0], k.split(':')[0])} · "
                         f"{k.split(':', 1)[1] if k.split(':', 1)[1] != '*' else t('billing.all_centre')}")
    q = qs[keys.index(pick)]
    series = quotas.quota_series(ctx.store, ctx.cfg, view, now, q, scope=ctx.scope).rows
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=series["bucket"], y=series["gpus"], mode="lines", name=t("billing.quota.held"),
                             line={"color": "#1f77b4"}, fill="tozeroy"))
    fig.add_hline(y=q.gpus, line={"color": "#d62728", "dash": "dash"}, annotation_text=t("billing.quota.line"),
                  annotation_position="top left")
    fig.update_layout(height=280, margin={"l": 10, "r": 10, "t": 30, "b": 10}, plot_bgcolor="white",
                      yaxis={"title": "GPUs", "rangemode": "tozero"}, showlegend=False,
                      title={"text": t("billing.quota.chart"), "font": {"size": 13}})
    st.plotly_chart(fig, width="stretch", key="quota_chart")


def quota_watch(ctx: PageContext, view: View) -> None:
    """The tenants near or over quota over `view`'s range (peak GPUs held in an hour against each
    quota), over first: for the tenants page. Draws nothing when no quota is configured."""
    if not ctx.cfg.billing.quotas:
        return
    t = ctx.t
    st.markdown(f"**{t('billing.watch.title')}**")
    st.caption(t("billing.watch.caption", pct=f"{ctx.cfg.billing.quota_near_pct:g}"))
    table = quotas.watch_table(ctx.store, ctx.cfg, view, ui.now(), scope=ctx.scope)
    if table.rows.empty:
        st.success(t("billing.watch.none"), icon=":material/check_circle:")
        return
    people = table.for_people(ctx.lang)
    st.dataframe(people, hide_index=True, width="stretch", height=ui.table_height(len(people), max_rows=10))
    st.download_button(ctx.t("history.download_csv"), table.to_csv().encode(), file_name="quota-watch.csv",
                       mime="text/csv", key="csv_quota_watch", icon=":material/download:")


def page(ctx: PageContext) -> None:
    st.title(ctx.t("billing.title"))
    now = ui.now()
    month_name = month_picker(ctx, now)
    b = billing.bills(ctx.store, ctx.cfg, month_name, now=now, scope=ctx.scope)
    ui.guarded(summary_section)(ctx, b, now)
    st.divider()
    ui.guarded(detail_section)(ctx, b)
    st.divider()
    ui.guarded(issue_section)(ctx, b, now)
    st.divider()
    ui.guarded(reconciliation_section)(ctx, b, now)
    st.divider()
    ui.guarded(quota_section)(ctx, b, now)


if __name__ == "__main__":          # st.navigation runs a page file as __main__
    page(context.current())
