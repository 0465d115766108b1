"""Every figure of the monthly report, gathered from the shared measures (issue 17).

`gather(store, cfg, month, now, scope)` reads one site-local calendar month and returns a
`Report`: the cover's facts and notes, the headline figures against their targets (with the
change from last month and from the same month a year ago where the history reaches), and one
`Section` per chapter, each a list of `Block`s holding a `history.HistoryTable`. The tables are
the very ones the pages and the API build (queries/history.py for utilisation and tenants; the
energy, billing and capacity modules for theirs), so the PDF, the XLSX, the page and
`/api/v1/...` show the same numbers; nothing here re-derives a figure another module owns. The
few tables only the report has (incidents, worst hosts, data coverage, meter gaps) are named
queries `reports_*.sql` over the tiers, the events and the collector runs.

A `Report` holds numbers and keys, no language: the renderers (reports/pdf.py, reports/xlsx.py)
word it in English or Chinese. A tenant's scope (queries/scope.py) gets the tenant's own
statement: its usage and bill, never a centre total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

import config
from i18n import Msg, msg
from queries import billing, capacity, energy, history, quotas
from queries.history import Col, HistoryTable, View
from queries.scope import EVERYTHING, Scope
from queries.store import Store

SECTIONS = ("utilisation", "tenants", "energy", "reliability", "capacity", "vouchers")
TENANT_SECTIONS = ("statement",)
INCIDENT_KINDS = ("xid", "ecc", "lost", "unhealthy", "thermal")
OTHERS = "_others"
# a tenant's days: its own figures (the fleet's owned, available and installed are not its)
TENANT_DAILY = ("bucket", "tenant", "util_pct", "allocated_gpu_hours", "busy_gpu_hours", "useful_gpu_hours",
                "idle_allocated_gpu_hours", "delivered_pflops", "energy_kwh")


class ReportError(ValueError):
    """A month that cannot be reported (not a month, not over yet); `msg` says why in words."""

    def __init__(self, m: Msg):
        self.msg = m
        super().__init__(str(m))


@dataclass
class Figure:
    key: str                        # reports.figure.<key>
    value: float | None
    unit: str
    target: float | None = None
    last_month: float | None = None
    last_year: float | None = None
    change: str = "pct"             # pct: change in % of the earlier value; pp: in points
    detail: str = ""                # shown after the figure's name (a PUE's category)


@dataclass
class Block:
    """One table of a section. `title` is its i18n key; `words` maps a column whose values are
    keys to the i18n prefix that words them (e.g. {"kind": "reports.incident."})."""

    name: str                       # sheet-safe id, also the CSV/XLSX table name
    title: str
    table: HistoryTable
    words: dict[str, str] = field(default_factory=dict)
    note: Msg | None = None
    by_lang: dict[str, HistoryTable] = field(default_factory=dict)   # a table its module words itself

    def table_for(self, lang: str) -> HistoryTable:
        return self.by_lang.get(lang, self.table)


@dataclass
class Section:
    key: str                        # one of SECTIONS (or TENANT_SECTIONS)
    blocks: list[Block] = field(default_factory=list)
    notes: list[Msg] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)     # its headline figures

    def block(self, name: str) -> Block:
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(f"section {self.key} has no table {name!r}")


@dataclass
class Report:
    month: str                      # YYYY-MM
    start: datetime                 # UTC, the month's first local midnight
    end: datetime                   # UTC, exclusive
    tz: str
    generated_at: datetime
    centre: str
    sites: list[str]
    scope: Scope
    headline: Block
    sections: list[Section]
    notes: list[Msg]                # the cover's measurement notes and data coverage
    charts: bool = True             # set by the renderer when charts could not be drawn

    @property
    def tenant(self) -> str | None:
        return self.scope.tenant

    def section(self, key: str) -> Section:
        for s in self.sections:
            if s.key == key:
                return s
        raise KeyError(f"the report has no section {key!r}")


# ---- the month ------------------------------------------------------------------------

def month_bounds(cfg: config.Config, month: str, now: datetime) -> tuple[datetime, datetime, str]:
    """[start, end) in UTC of the site-local calendar month `month` (YYYY-MM) and the zone;
    ReportError unless it is a month that has ended by `now`."""
    tz = history.default_tz(cfg)
    try:
        start, end = history.range_bounds("month", now, tz, month=month)
    except history.ParamError:
        raise ReportError(msg("reports.error.month", month=month)) from None
    if end > now:
        raise ReportError(msg("reports.error.not_over", month=month,
                              end=end.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")))
    return start, end, tz


shift_month = history.shift_month


def last_month(cfg: config.Config, now: datetime) -> str:
    """The site-local calendar month before the one `now` falls in."""
    return history.recent_months(now, history.default_tz(cfg), 1, ended=True)[0]


def past_months(cfg: config.Config, now: datetime, n: int = 24) -> list[str]:
    """The last `n` months that have ended, newest first."""
    return history.recent_months(now, history.default_tz(cfg), n, ended=True)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT


def _num(v: Any) -> float | None:
    return None if _missing(v) else float(v)


# ---- headline figures -------------------------------------------------------------------

HEADLINE_COLUMNS = (
    Col("figure", "", "reports.col.figure"),
    Col("detail", "", "reports.col.detail"),
    Col("value", "", "reports.col.value", "number"),
    Col("unit", "", "reports.col.unit"),
    Col("target", "", "reports.col.target", "number"),
    Col("last_month", "", "reports.col.last_month", "number"),
    Col("change_last_month", "", "reports.col.change_last_month", "number"),
    Col("last_year", "", "reports.col.last_year", "number"),
    Col("change_last_year", "", "reports.col.change_last_year", "number"),
    Col("change_unit", "", "reports.col.change_unit"),
)


def _change(f: Figure, before: float | None) -> float | None:
    if f.value is None or before is None:
        return None
    if f.change == "pp":
        return round(f.value - before, 3)
    return None if before == 0 else round(100.0 * (f.value - before) / before, 3)


def headline_block(figures: list[Figure]) -> Block:
    rows = [{"figure": f.key, "detail": f.detail or None, "value": f.value, "unit": f.unit, "target": f.target,
             "last_month": f.last_month, "change_last_month": _change(f, f.last_month),
             "last_year": f.last_year, "change_last_year": _change(f, f.last_year),
             "change_unit": "pp" if f.change == "pp" else "%"} for f in figures]
    df = pd.DataFrame(rows, columns=[c.name for c in HEADLINE_COLUMNS])
    for c in ("value", "target", "last_month", "change_last_month", "last_year", "change_last_year"):
        df[c] = df[c].astype(float)
    return Block("headline", "reports.headline.title", HistoryTable(HEADLINE_COLUMNS, df),
                 words={"figure": "reports.figure."})


COMPARABLE_NO_DATA_PCT = 50.0     # an earlier month with more no-data time than this is no comparison


def _fleet_row(store: Store, cfg: config.Config, v: View, now: datetime) -> dict[str, Any] | None:
    """The month's fleet utilisation row, or None when the history holds nothing for it (a month
    before the history begins is no comparison)."""
    row = history.utilisation(store, cfg, v, now).records()[0]
    return row if (_num(row.get("observed_gpu_hours")) or 0) > 0 else None


def earlier_months(store: Store, cfg: config.Config, v: View, month: str,
                   now: datetime) -> tuple[dict[str, dict[str, Any] | None], list[Msg]]:
    """Last month's and the same month's a year ago fleet rows, each only when the history holds
    most of it (no data below COMPARABLE_NO_DATA_PCT % of its owned GPU-hours): a month the history
    barely reaches (it began on the month's last day) would make every change meaningless. The
    notes say which month was left out and why."""
    out: dict[str, dict[str, Any] | None] = {}
    notes: list[Msg] = []
    for name, shift in (("last_month", -1), ("last_year", -12)):
        other = shift_month(month, shift)
        a, b, _ = month_bounds(cfg, other, now)
        row = _fleet_row(store, cfg, replace(v, start=a, end=b), now)
        no_data = history.ladder_shares(row)["no_data"] if row is not None else None
        if row is not None and no_data is not None and no_data > COMPARABLE_NO_DATA_PCT:
            notes.append(msg("reports.note.no_comparison", month=other, pct=f"{100.0 - no_data:.1f}"))
            row = None
        out[name] = row
    return out, notes


def _compute_figures(row: dict[str, Any] | None) -> dict[str, float | None]:
    if row is None:
        return {}
    shares = history.ladder_shares(row)
    delivered, installed = _num(row["delivered_pflops"]), _num(row["installed_pflops"])
    return {
        "util_pct": _num(row["util_pct"]),
        "available_share": shares["available"], "allocated_share": shares["allocated"],
        "busy_share": shares["busy"], "useful_share": shares["useful"], "no_data_share": shares["no_data"],
        "delivered_pflops": delivered, "installed_pflops": installed,
        "effective_ratio": (None if delivered is None or not installed else 100.0 * delivered / installed),
        "board_energy_kwh": _num(row["energy_kwh"]),
    }


def _round(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


# ---- sections ---------------------------------------------------------------------------

HEATMAP_COLUMNS = (Col("weekday", "", "history.col.weekday", "count"),
                   Col("hour_of_day", "", "history.col.hour_of_day", "count"),
                   Col("util_pct", "%", "history.col.util", "pct"),
                   Col("observed_gpu_hours", "GPU-h", "history.col.observed", "hours"))


def utilisation_section(store: Store, cfg: config.Config, v: View, now: datetime) -> Section:
    fleet = history.utilisation(store, cfg, v, now)
    daily = history.utilisation(store, cfg, replace(v, step="1d"), now)
    blocks = [
        Block("ladder", "reports.util.ladder", history.ladder_table(fleet, "fleet")),
        Block("daily", "reports.util.daily", daily),
        Block("by_cluster", "reports.util.by_cluster",
              history.ladder_table(history.utilisation(store, cfg, replace(v, by="cluster"), now), "cluster")),
        Block("by_model", "reports.util.by_model",
              history.ladder_table(history.utilisation(store, cfg, replace(v, by="model"), now), "model")),
    ]
    heat = history.heatmap(store, v, now)
    blocks.append(Block("heatmap", "reports.util.heatmap",
                        HistoryTable(HEATMAP_COLUMNS, heat[[c.name for c in HEATMAP_COLUMNS]].reset_index(drop=True),
                                     tz=v.tz)))
    blocks.append(Block("reclaim_tenants", "reports.util.reclaim_tenants", history.reclaim_tenants(store, cfg, v, now)))
    blocks.append(Block("reclaim_devices", "reports.util.reclaim_devices",
                        history.devices(store, cfg, v, now, idle_only=True, limit=cfg.reports.reclaim_rows)))
    notes = [msg("reports.util.basis", basis=str(fleet.rows["useful_basis"].iloc[0]))] \
        if isinstance(fleet.rows["useful_basis"].iloc[0], str) else []
    return Section("utilisation", blocks, notes)


def top_and_rest(table: HistoryTable, n: int, by: str = "allocated_gpu_hours") -> HistoryTable:
    """The `n` tenants with the most `by`, then one row for the rest (its additive columns summed,
    the others left empty: a mean of means would be a new figure)."""
    df = table.rows.sort_values([by, "tenant"], ascending=[False, True]).reset_index(drop=True)
    if len(df) <= n:
        return HistoryTable(table.columns, df, tz=table.tz, names=table.names)
    head, rest = df.head(n), df.iloc[n:]
    additive = [c.name for c in table.columns if c.kind in ("hours", "kwh", "money")]
    other: dict[str, Any] = {c.name: None for c in table.columns}
    other.update({c: rest[c].astype(float).sum() for c in additive})
    other["tenant"] = OTHERS
    out = pd.concat([head, pd.DataFrame([other])], ignore_index=True)
    names = dict(table.names)
    names[OTHERS] = OTHERS
    return HistoryTable(table.columns, out, tz=table.tz, names=names)


def tenants_section(store: Store, cfg: config.Config, v: View, month: str, now: datetime, scope: Scope) -> Section:
    """Per tenant GPU-hours, utilisation while allocated and board energy (history.tenants), the
    top N and the rest, and each tenant's bill (queries/billing.py); for a tenant's scope, its own
    statement: its usage, its days, its GPUs, its bill and bill lines."""
    table = history.tenants(store, cfg, v, now, trend=False, scope=scope)
    blocks: list[Block] = []
    figures: list[Figure] = []
    if scope.tenant is not None:
        rows = table.rows[table.rows["tenant"] == scope.tenant].reset_index(drop=True)
        blocks.append(Block("usage", "reports.tenants.usage", HistoryTable(table.columns, rows, tz=v.tz,
                                                                           names=table.names)))
        daily = history.tenant_daily(store, cfg, v, scope.tenant, now, scope=scope)
        keep = tuple(c for c in daily.columns if c.name in TENANT_DAILY)
        blocks.append(Block("daily", "reports.tenants.daily",
                            HistoryTable(keep, daily.rows[[c.name for c in keep]], tz=daily.tz, names=daily.names)))
        blocks.append(Block("devices", "reports.tenants.devices",
                            history.devices(store, cfg, v, now, tenant=scope.tenant, limit=cfg.reports.reclaim_rows,
                                            scope=scope)))
    else:
        blocks.append(Block("usage", "reports.tenants.usage", top_and_rest(table, cfg.reports.top_tenants)))
    notes: list[Msg] = []
    blocks.append(Block("energy", "reports.tenants.energy",
                        energy.energy_table(store, cfg, replace(v, tenant=scope.tenant), scope, by="tenant", now=now)))
    b = billing.bills(store, cfg, month, now=now, scope=scope)
    bill = billing.bill_table(b)
    blocks.append(Block("bill", "reports.tenants.bill", bill))
    if scope.tenant is not None:
        blocks.append(Block("bill_lines", "reports.tenants.bill_lines", billing.lines_table(b, scope.tenant)))
    if cfg.billing.quotas:
        blocks.append(Block("quota", "reports.tenants.quota", quotas.quota_table(store, cfg, v, now, scope=scope)))
    if b.energy_missing:
        notes.append(msg("reports.note.bill_energy_missing"))
    figures = bill_figures(b, bill)
    key = "statement" if scope.tenant is not None else "tenants"
    return Section(key, blocks, notes, figures=figures)


def bill_figures(b: Any, bill: HistoryTable) -> list[Figure]:
    """GPU-hours sold (the bills' GPU-hour lines: usage, unused commitment, overage), revenue gross,
    the vouchers and net: sums of the month's bills (queries/billing.py), in their one currency."""
    rows = bill.rows
    currencies = sorted({str(c) for c in rows.get("currency", pd.Series(dtype=object)).dropna()})
    unit = currencies[0] if len(currencies) == 1 else "CNY"
    lines = b.lines
    sold = lines[(lines["unit"] == "GPU-h") & lines["kind"].isin(["usage", "shortfall", "overage"])]
    out = [Figure("gpu_hours_sold", _round(float(sold["quantity"].astype(float).sum()) if len(lines) else 0.0),
                  "GPU-h")]
    if len(currencies) <= 1:
        for key, col in (("revenue_gross", "gross"), ("vouchers", "subsidy"), ("revenue_net", "net")):
            total = rows[col].astype(float).sum() if len(rows) else 0.0
            out.append(Figure(key, _round(float(total), 2), unit))
    return out


def reliability_section(store: Store, cfg: config.Config, v: View, now: datetime) -> Section:
    p = {"first_hour": v.first_hour, "end_ts": v.end, "now": now}
    inc = store.query("reports_incidents", **p).set_index("kind")
    inc = inc.reindex([*INCIDENT_KINDS, *(k for k in inc.index if k not in INCIDENT_KINDS)])
    inc_df = pd.DataFrame({
        "kind": inc.index, "events": inc["events"].fillna(0).astype("int64").to_numpy(),
        "devices": inc["devices"].fillna(0).astype("int64").to_numpy(),
        "hosts": inc["hosts"].fillna(0).astype("int64").to_numpy(),
        "gpu_hours_lost": inc["gpu_hours_lost"].astype(float).fillna(0.0).round(4).to_numpy()})
    cov = store.query("reports_source_coverage", **p)
    outage = cov["outage_hours"].astype(float).sum() if len(cov) else 0.0
    inc_df = pd.concat([inc_df, pd.DataFrame([{"kind": "exporter", "events": int(outage), "devices": None,
                                               "hosts": int((cov["outage_hours"] > 0).sum()) if len(cov) else 0,
                                               "gpu_hours_lost": None}])], ignore_index=True)
    incidents = HistoryTable((Col("kind", "", "reports.col.kind"), Col("events", "", "reports.col.events", "count"),
                              Col("devices", "GPUs", "reports.col.devices", "count"),
                              Col("hosts", "", "reports.col.hosts", "count"),
                              Col("gpu_hours_lost", "GPU-h", "reports.col.gpu_hours_lost", "hours")), inc_df, tz=v.tz)
    hosts = store.query("reports_worst_hosts", **p, n_hosts=cfg.reports.worst_hosts)
    host_cols = (Col("host", "", "history.col.host"), Col("cluster", "", "history.col.cluster"),
                 Col("gpus", "GPUs", "reports.col.gpus", "count"),
                 Col("unavailable_gpu_hours", "GPU-h", "reports.col.unavailable", "hours"),
                 Col("no_data_gpu_hours", "GPU-h", "history.col.no_data", "hours"),
                 *(Col(f"{k}_events", "", f"reports.col.{k}_events", "count") for k in INCIDENT_KINDS))
    hosts = hosts.assign(unavailable_gpu_hours=hosts["unavailable_gpu_hours"].astype(float).round(4),
                         no_data_gpu_hours=hosts["no_data_gpu_hours"].astype(float).round(4))
    worst = HistoryTable(host_cols, hosts[[c.name for c in host_cols]].reset_index(drop=True), tz=v.tz)
    coverage, gaps, notes = coverage_tables(store, v, now)
    blocks = [Block("incidents", "reports.rel.incidents", incidents, words={"kind": "reports.incident."}),
              Block("worst_hosts", "reports.rel.worst_hosts", worst),
              Block("coverage", "reports.rel.coverage", coverage),
              Block("meter_gaps", "reports.rel.meter_gaps", gaps)]
    return Section("reliability", blocks, notes)


COVERAGE_COLUMNS = (Col("source", "", "reports.col.source"), Col("targets", "", "reports.col.targets", "count"),
                    Col("hours", "h", "reports.col.hours", "count"),
                    Col("hours_with_data", "h", "reports.col.hours_with_data", "count"),
                    Col("no_data_hours", "h", "reports.col.no_data_hours", "count"),
                    Col("outage_hours", "h", "reports.col.outage_hours", "count"),
                    Col("failed_scrapes", "", "reports.col.failed_scrapes", "count"))
GAP_COLUMNS = (Col("site", "", "history.col.site"), Col("meter", "", "reports.col.meter"),
               Col("scope", "", "reports.col.scope"), Col("gap_start", "", "reports.col.gap_start", "time"),
               Col("gap_end", "", "reports.col.gap_end", "time"), Col("hours", "h", "reports.col.gap_hours", "count"))


def coverage_tables(store: Store, v: View, now: datetime) -> tuple[HistoryTable, HistoryTable, list[Msg]]:
    """Hours with no data per source (collector runs) and every facility meter's gaps, with a
    sentence per gap for the cover (the first 10; the table holds them all)."""
    p = {"first_hour": v.first_hour, "end_ts": v.end, "now": now}
    cov = store.query("reports_source_coverage", **p)
    for c in ("targets", "hours", "hours_with_data", "no_data_hours", "outage_hours", "failed_scrapes"):
        cov[c] = cov[c].astype("int64")
    gaps = store.query("reports_meter_gaps", **p)
    gaps["hours"] = gaps["hours"].astype("int64")
    zone = ZoneInfo(v.tz)
    notes: list[Msg] = []
    for r in cov.itertuples():
        if r.no_data_hours > 0:
            notes.append(msg("reports.note.source_gap", source=r.source, hours=int(r.no_data_hours),
                             total=int(r.hours)))
    for r in gaps.head(10).itertuples():
        notes.append(msg("reports.note.meter_gap", site=r.site, meter=r.meter, hours=int(r.hours),
                         start=pd.Timestamp(r.gap_start).astimezone(zone).strftime("%Y-%m-%d %H:%M"),
                         end=pd.Timestamp(r.gap_end).astimezone(zone).strftime("%Y-%m-%d %H:%M")))
    if len(gaps) > 10:
        notes.append(msg("reports.note.more_gaps", n=len(gaps) - 10))
    return (HistoryTable(COVERAGE_COLUMNS, cov[[c.name for c in COVERAGE_COLUMNS]].reset_index(drop=True), tz=v.tz),
            HistoryTable(GAP_COLUMNS, gaps[[c.name for c in GAP_COLUMNS]].reset_index(drop=True), tz=v.tz), notes)


# ---- the whole report -------------------------------------------------------------------

def gather(store: Store, cfg: config.Config, month: str, now: datetime | None = None,
           scope: Scope = EVERYTHING) -> Report:
    """The report of `month` (YYYY-MM, site-local) as `scope` may see it; ReportError for a month
    that is not a past month."""
    now = now or datetime.now(timezone.utc)
    start, end, tz = month_bounds(cfg, month, now)
    v = View(start=start, end=end, tz=tz)
    earlier, compare_notes = earlier_months(store, cfg, v, month, now) if scope.tenant is None else ({}, [])
    if scope.tenant is not None:
        sections = [tenants_section(store, cfg, v, month, now, scope)]
        headline = headline_block(tenant_figures(sections[0], scope.tenant))
        notes = [msg("reports.note.tenant_statement", tenant=scope.tenant)]
        return Report(month, start, end, tz, now, cfg.centre.name, [s.name for s in cfg.sites], scope,
                      headline, sections, notes)
    sections = [utilisation_section(store, cfg, v, now),
                tenants_section(store, cfg, v, month, now, scope),
                energy_section(store, cfg, v, month, now, earlier),
                reliability_section(store, cfg, v, now),
                capacity_section(store, cfg, v, now),
                vouchers_section(store, cfg, month, now)]
    figures = centre_figures(store, cfg, v, month, now, sections, earlier)
    notes = cover_notes(cfg, sections) + compare_notes
    return Report(month, start, end, tz, now, cfg.centre.name, [s.name for s in cfg.sites], scope,
                  headline_block(figures), sections, notes)


def centre_figures(store: Store, cfg: config.Config, v: View, month: str, now: datetime,
                   sections: list[Section], earlier: dict[str, dict[str, Any] | None]) -> list[Figure]:
    """The headline: this month's fleet figures, last month's and the same month's a year ago."""
    this = _compute_figures(_fleet_row(store, cfg, v, now))
    before = {name: _compute_figures(row) for name, row in earlier.items()}
    target = cfg.utilisation.target_pct
    spec = (("util_pct", "%", target, "pp"), ("available_share", "%", None, "pp"),
            ("allocated_share", "%", None, "pp"), ("busy_share", "%", None, "pp"),
            ("useful_share", "%", None, "pp"), ("no_data_share", "%", None, "pp"),
            ("delivered_pflops", "PFLOPS", None, "pct"), ("installed_pflops", "PFLOPS", None, "pct"),
            ("effective_ratio", "%", None, "pp"), ("board_energy_kwh", "kWh", None, "pct"))
    figures = [Figure(k, _round(this.get(k)), unit, t, _round(before["last_month"].get(k)),
                      _round(before["last_year"].get(k)), change) for k, unit, t, change in spec]
    rel = next(s for s in sections if s.key == "reliability")
    lost = rel.block("incidents").table.rows["gpu_hours_lost"].astype(float).sum(min_count=1)
    figures.append(Figure("gpu_hours_lost", _round(_num(lost)), "GPU-h"))
    for s in sections:
        figures.extend(s.figures)
    return figures


def tenant_figures(statement: Section, tenant: str) -> list[Figure]:
    rows = statement.block("usage").table.records()
    row = rows[0] if rows else {}
    return [Figure("tenant_allocated", _round(_num(row.get("allocated_gpu_hours"))), "GPU-h"),
            Figure("tenant_busy", _round(_num(row.get("busy_gpu_hours"))), "GPU-h"),
            Figure("tenant_util", _round(_num(row.get("util_pct"))), "%", change="pp"),
            Figure("tenant_peak", _round(_num(row.get("peak_gpus"))), "GPUs"),
            Figure("tenant_energy", _round(_num(row.get("energy_kwh"))), "kWh")]


def cover_notes(cfg: config.Config, sections: list[Section]) -> list[Msg]:
    notes: list[Msg] = []
    rel = next((s for s in sections if s.key == "reliability"), None)
    if rel is not None:
        notes.extend(rel.notes or [msg("reports.note.no_gaps")])
    return notes


# ---- the energy, capacity and voucher sections ------------------------------------------

def energy_section(store: Store, cfg: config.Config, v: View, month: str, now: datetime,
                   earlier: dict[str, dict[str, Any] | None]) -> Section:
    """PUE for the month and by day (queries/energy.py pue_table: from energy, its category, the
    grade and target), energy and cost by tariff period, carbon and coal (energy_table by site),
    partial PUE per hall and cooling loop (ppue_table); the headline's energy figures."""
    pue = energy.pue_table(store, cfg, v, now=now)
    daily = energy.pue_table(store, cfg, replace(v, step="1d"), now=now)
    by_site = energy.energy_table(store, cfg, v, by="site", now=now)
    ppue = energy.ppue_table(store, cfg, v, now=now)
    blocks = [Block("pue", "reports.energy.pue", pue),
              Block("pue_daily", "reports.energy.pue_daily", daily),
              Block("tariff", "reports.energy.tariff", by_site),
              Block("ppue", "reports.energy.ppue", ppue)]
    notes: list[Msg] = []
    for r in pue.records():
        cat: Any = r.get("category")
        notes.append(msg("reports.note.pue_category", site=r["site"],
                         category=msg("reports.pue.category_n", n=int(cat)) if not _missing(cat)
                         else msg("reports.pue.below_3")))
        if r.get("it_estimated"):
            notes.append(msg("reports.note.it_estimated", site=r["site"]))
        if (r.get("excluded_hours") or 0) > 0:
            notes.append(msg("reports.note.pue_excluded", site=r["site"], hours=int(r["excluded_hours"]),
                             total=int(r["hours"] or 0) + int(r["excluded_hours"])))
    figures = energy_figures(energy, store, cfg, v, month, now, pue, by_site, earlier)
    return Section("energy", blocks, notes, figures=figures)


def _energy_totals(pue: HistoryTable, by_site: HistoryTable) -> dict[str, float | None]:
    """The month's PUE (one site: its own; several: only when every site has one category, as
    facility / IT summed) and the sites' facility energy, cost, carbon and coal summed."""
    def total(df: pd.DataFrame, col: str, scale: float = 1.0) -> float | None:
        if df.empty or col not in df or df[col].isna().all():
            return None
        return float(df[col].astype(float).sum()) * scale

    p, e = pue.rows, by_site.rows
    value: float | None = None
    if len(p) == 1:
        value = _num(p["pue"].iloc[0])
    elif len(p) > 1 and p["category"].nunique(dropna=False) == 1:
        fac, it = total(p, "facility_kwh"), total(p, "it_kwh")
        value = fac / it if fac is not None and it else None
    return {"pue": value, "facility_kwh": total(e, "facility_kwh"), "cost_cny": total(e, "cost_cny"),
            "carbon_t": total(e, "carbon_kg", 1e-3), "coal_tce": total(e, "coal_kgce", 1e-3)}


def energy_figures(energy: Any, store: Store, cfg: config.Config, v: View, month: str, now: datetime,
                   pue: HistoryTable, by_site: HistoryTable,
                   earlier: dict[str, dict[str, Any] | None]) -> list[Figure]:
    """PUE (with its category), facility energy, cost, carbon and coal of the month, and of the
    earlier months the history holds (earlier_months)."""
    this = _energy_totals(pue, by_site)
    before: dict[str, dict[str, float | None]] = {}
    for name, shift in (("last_month", -1), ("last_year", -12)):
        if earlier.get(name) is None:
            before[name] = {k: None for k in this}
            continue
        a, b, _ = month_bounds(cfg, shift_month(month, shift), now)
        w = replace(v, start=a, end=b)
        before[name] = _energy_totals(energy.pue_table(store, cfg, w, now=now),
                                      energy.energy_table(store, cfg, w, by="site", now=now))
    target = energy.pue_target(cfg, cfg.sites[0].id) if len(cfg.sites) == 1 else energy.pue_target(cfg)
    cats = sorted({str(int(c)) for c in pue.rows.get("category", pd.Series(dtype=object)).dropna()})
    if pue.rows.get("it_estimated", pd.Series(dtype=object)).fillna(False).astype(bool).any():
        cats.append("estimated")
    spec = (("pue", "", target, "pct"), ("facility_kwh", "kWh", None, "pct"), ("cost_cny", "CNY", None, "pct"),
            ("carbon_t", "t CO2", None, "pct"), ("coal_tce", "tce", None, "pct"))
    out = []
    for k, unit, t, change in spec:
        f = Figure(k, _round(this[k], 4 if k == "pue" else 3), unit, t, _round(before["last_month"][k], 4),
                   _round(before["last_year"][k], 4), change)
        if k == "pue":
            f.detail = ", ".join(cats)
        out.append(f)
    return out


FLEET_GPUS = "peak_gpus:fleet"
HISTORY_DAYS = 60               # measured days drawn before a forecast


def capacity_section(store: Store, cfg: config.Config, v: View, now: datetime) -> Section:
    """Time to exhaustion of GPUs, power and cooling with its bands (queries/capacity.py
    exhaustion_table: the forecast job's newest run, worded by its module in each language) and
    the fleet's peak-GPU forecast with its 80 % and 95 % bands, for the chart."""
    langs: list[str] = [str(x) for x in cfg.reports.languages]
    tables: dict[str, HistoryTable] = {lang: capacity.exhaustion_table(store, cfg, lang=lang) for lang in langs}
    ex = Block("exhaustion", "reports.capacity.exhaustion", tables[langs[0]], by_lang=tables,
               words={"resource": "reports.resource."})
    fits = capacity.latest_fits(store)
    if fits.empty:
        return Section("capacity", [ex], [msg("reports.capacity.no_run")])
    run_at = pd.Timestamp(fits["run_at"].max()).tz_convert(v.tz).strftime("%Y-%m-%d %H:%M")
    notes = [msg("reports.capacity.as_of", at=run_at)]
    blocks = [ex]
    if FLEET_GPUS in set(fits["series"]):
        fc = capacity.forecast_table(store, cfg, FLEET_GPUS)
        if not fc.rows.empty:
            blocks.append(Block("forecast", "reports.capacity.forecast", fc))
            measured = capacity.actuals(store, cfg, FLEET_GPUS, HISTORY_DAYS, now)
            hist = pd.DataFrame({"day": [d.isoformat() if hasattr(d, "isoformat") else str(d) for d in measured.index],
                                 "measured": measured.astype(float).round(3).to_numpy()})
            blocks.append(Block("measured", "reports.capacity.measured",
                                HistoryTable((Col("day", "", "capacity.col.day"),
                                              Col("measured", "GPUs", "reports.col.measured", "gpus")), hist)))
            if fc.about:
                notes.append(msg("reports.capacity.fleet", capacity=fc.about.get("capacity"),
                                 median=fc.about.get("exhaust_median") or "—",
                                 upper=fc.about.get("exhaust_upper") or "—"))
        else:
            why = fc.about.get("why_not") if fc.about else None
            notes.append(msg("reports.capacity.untrusted", why=why or "—"))
    return Section("capacity", blocks, notes)


PROGRAMME_COLUMNS = (Col("programme", "", "reports.col.programme", "programme"),
                     Col("claims", "", "reports.col.claims", "count"),
                     Col("tenants", "", "reports.col.tenants", "count"),
                     Col("base", "CNY", "reports.col.base", "money"),
                     Col("subsidy", "CNY", "reports.col.subsidy", "money"),
                     Col("capped", "", "reports.col.capped", "count"),
                     Col("budget_year_used", "CNY", "reports.col.budget_used", "money"),
                     Col("budget_year_remaining", "CNY", "reports.col.budget_remaining", "money"))


def vouchers_section(store: Store, cfg: config.Config, month: str, now: datetime) -> Section:
    """The month's voucher claims (queries/billing.py reconciliation_table, ready to submit) and
    their sum per programme: claims, tenants, base, subsidy, claims a cap cut, the budget used
    and remaining after the month (the programme's own figures, the largest after its claims)."""
    claims = billing.reconciliation_table(store, cfg, month, now=now)
    df = claims.rows
    rows = []
    for pid in [p.id for p in cfg.billing.programmes]:
        mine = df[df["programme"] == pid] if len(df) else df
        rows.append({"programme": pid, "claims": len(mine),
                     "tenants": int(mine["tenant"].nunique()) if len(mine) else 0,
                     "base": float(mine["base"].astype(float).sum()) if len(mine) else 0.0,
                     "subsidy": float(mine["subsidy"].astype(float).sum()) if len(mine) else 0.0,
                     "capped": int(mine["capped_by"].notna().sum()) if len(mine) else 0,
                     "budget_year_used": _num(mine["budget_year_used"].astype(float).max()) if len(mine) else None,
                     "budget_year_remaining": (_num(mine["budget_year_remaining"].astype(float).min())
                                               if len(mine) else None)})
    summary = billing.BillTable(PROGRAMME_COLUMNS, pd.DataFrame(rows, columns=[c.name for c in PROGRAMME_COLUMNS]),
                                tz=claims.tz, headers=billing.programme_headers(cfg))
    blocks = [Block("programmes", "reports.vouchers.programmes", summary),
              Block("claims", "reports.vouchers.claims", claims)]
    notes = [] if cfg.billing.programmes else [msg("reports.vouchers.none")]
    return Section("vouchers", blocks, notes)
