"""Power, PUE, energy, cost and carbon (issue 13), defined once for the energy page, the
`/api/v1/pue` and `/api/v1/energy` routes, billing's energy pass-through, capacity's power
forecasts and the monthly report. docs/energy.md states every rule; the short version:

- **Meter energy** comes from the `energy` job (`build`), which turns facility_samples into each
  meter's energy per quarter hour (energy_meter_15m, queries/sql/energy_meter_quarters.sql):
  register deltas with resets and rollovers handled, power-only meters integrated, and only
  the time between readings no further apart than `energy.pue.max_gap_s` covered.
- **PUE from energy**: facility kWh / IT kWh over the same hours, never a ratio of powers. A
  site's totals leave sub-meters out; its IT is the meters of one ISO/IEC 30134-2 category
  (`energy.sites[].it_category`, else the highest metered), so categories never mix. An hour
  counts only when every quarter of it is covered for both the facility and the IT meters (a
  listed meter that did not report is a gap too); other hours are excluded from numerator and
  denominator alike and counted as `excluded_hours`. The current hour is not excluded, just
  not complete yet: it is left out until it ends.
- **IT estimated**: a site with no IT meter at all gets IT = GPU board energy + the configured
  per-node overhead per node-hour observed, flagged `it_estimated`, category None ("below
  category 3").
- **Energy of a cluster or tenant**: its board energy (rollup_group_1h energy_j, once per
  physical board, MIG folded) apportions the site's metered IT and facility energy hour by
  hour: it_kwh = site IT kWh x board share, facility_kwh = it_kwh x the hour's PUE
  (= site facility kWh x board share), so the tenants' (with Unattributed and Unallocated)
  facility energy sums to the site's. Hours with a meter gap use the range's ratio of the
  site's covered hours and are counted in `gap_hours`.
- **Cost**: each hour's facility kWh at its site's time-of-use price (local hour, month's
  season); the demand charge on the month's maximum 15-minute facility demand (or the
  capacity charge on contracted kVA) per site-local month, a range carrying its share of the
  month's hours, shared among tenants by facility energy.
- **Carbon**: grid method kWh x the site's grid factor, coal method kWh x kgce/kWh x t CO2/tce;
  green electricity (a share, or kWh of the month's facility energy) is left out. CUE = carbon
  kg / IT kWh.
- **Reconciling**: meter readings off the bill beside the metered energy of the same period
  (`readings_table`); the live page's figures by the same hierarchy (`live_power`).
- **The simulated centre** before its back-fill: `simulated_history` writes the simulator's
  meters straight into the tier (the `energy-history` job), so a year of seasons shows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa

import config
import i18n
from config.energy import PERIODS, hour_range
from queries.catalogue import arrow_schema
from queries.history import Col, HistoryTable, View, tenant_names
from queries.scope import EVERYTHING, Scope
from queries.store import Store, transaction

UTC = timezone.utc
HOUR = timedelta(hours=1)
QUARTER_S = 900.0
# a quarter counts as covered when its readings span it to within this many seconds (readings
# land on the quarter's edges only by chance; the intervals split over them leave nothing out)
COVER_TOLERANCE_S = 1.0
KV_FULL_CHECK = "energy.full_check"
FULL_CHECK_EVERY = timedelta(hours=24)
RECENT_CHECK = timedelta(days=2)


# ---- factors, prices, carbon ------------------------------------------------------------

@dataclass(frozen=True)
class Factors:
    """A site's carbon and coal factors and which carbon method applies."""

    emission_kg_per_kwh: float      # kg CO2 per kWh by the method in force
    coal_kgce_per_kwh: float        # kg standard coal per kWh
    co2_t_per_tce: float            # t CO2 per t standard coal
    method: str                     # "grid" (site grid factor) or "coal" (via standard coal)
    grid_kg_per_kwh: float          # the site's grid factor (centre.toml sites[].grid_emission_kg_per_kwh)


@dataclass(frozen=True)
class SiteCapacity:
    """A site's power capacities in kW (None where energy.toml gives none)."""

    power_kw: float | None
    cooling_kw: float | None
    contracted_kw: float | None


def _site(cfg: config.Config, site: str) -> config.Site:
    for s in cfg.sites:
        if s.id == site:
            return s
    raise KeyError(f"no site {site!r}; the config has {[s.id for s in cfg.sites]}")


def factors(cfg: config.Config, site: str) -> Factors:
    """The carbon and coal factors of `site`: emission_kg_per_kwh is the grid factor (kg CO2/kWh)
    for the grid method, coal_kgce_per_kwh x co2_t_per_tce (kg CO2/kWh) for the coal method."""
    c = cfg.energy.carbon
    grid = _site(cfg, site).grid_emission_kg_per_kwh
    kg = grid if c.method == "grid" else c.coal_kgce_per_kwh * c.co2_t_per_tce
    return Factors(kg, c.coal_kgce_per_kwh, c.co2_t_per_tce, c.method, grid)


def _month_key(month: str | date | datetime | None) -> str | None:
    if month is None:
        return None
    if isinstance(month, str):
        return month[:7]
    return f"{month.year:04d}-{month.month:02d}"


def green_share(cfg: config.Config, site: str, month: str | date | datetime | None,
                month_kwh: float | None = None) -> float:
    """The share (0..1) of a site-local month's energy that was green: `share_pct` / 100, or the
    green kWh / `month_kwh` (the month's facility kWh; 0 when not given), at most 1. An aware
    datetime is taken in the site's time zone."""
    if isinstance(month, datetime) and month.tzinfo is not None:
        month = month.astimezone(ZoneInfo(_site(cfg, site).timezone))
    key = _month_key(month)
    for g in cfg.energy.green:
        if g.site == site and g.month == key:
            if g.share_pct is not None:
                return g.share_pct / 100.0
            if g.kwh is not None and month_kwh:
                return min(1.0, g.kwh / month_kwh)
    return 0.0


def carbon_kg(cfg: config.Config, site: str, kwh: float, month: str | date | datetime | None = None, *,
              month_kwh: float | None = None) -> float:
    """kg CO2 of `kwh` drawn at `site` (in the site-local `month`, "YYYY-MM" or a date, whose
    green electricity is left out): kWh x (1 - green share) x `factors(...).emission_kg_per_kwh`."""
    return kwh * (1.0 - green_share(cfg, site, month, month_kwh)) * factors(cfg, site).emission_kg_per_kwh


def coal_kgce(cfg: config.Config, kwh: float) -> float:
    """kg of standard coal equivalent of `kwh` (kWh x energy.carbon.coal_kgce_per_kwh)."""
    return kwh * cfg.energy.carbon.coal_kgce_per_kwh


def _season(tariff: config.energy.Tariff, month: int) -> config.energy.Season:
    return next(s for s in tariff.seasons if month in s.months)


def _hour_periods(season: config.energy.Season) -> list[str]:
    out = [""] * 24
    for period, ranges in season.hours.items():
        for text in ranges:
            for h in hour_range(text):
                out[h] = period
    return out


def period_at(cfg: config.Config, site: str, when: datetime) -> tuple[str, float] | None:
    """The time-of-use period (sharp | peak | flat | valley) and its price in CNY/kWh at `when`
    (aware) by the site's local clock; None where the site has no tariff."""
    tariff = cfg.energy.tariff(cfg.energy.site(site).tariff)
    if tariff is None:
        return None
    local = when.astimezone(ZoneInfo(_site(cfg, site).timezone))
    season = _season(tariff, local.month)
    period = _hour_periods(season)[local.hour]
    return period, season.prices[period]


def price_kwh(cfg: config.Config, site: str, when: datetime) -> float | None:
    """CNY per kWh at `when` (aware) under the site's tariff; None where it has none."""
    got = period_at(cfg, site, when)
    return None if got is None else got[1]


def month_bounds(cfg: config.Config, site: str, month: str | date | datetime) -> tuple[datetime, datetime]:
    """A site-local calendar month ("YYYY-MM" or a date in it) as [start, end) in UTC."""
    key = _month_key(month) or ""
    y, m = int(key[:4]), int(key[5:7])
    zone = ZoneInfo(_site(cfg, site).timezone)
    start = datetime(y, m, 1, tzinfo=zone)
    end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def mean_price_kwh(cfg: config.Config, site: str, month: str | date | datetime) -> float | None:
    """The mean energy price (CNY/kWh) over every hour of a site-local month: what a flat load
    pays per kWh (demand charge not included); None where the site has no tariff."""
    start, end = month_bounds(cfg, site, month)
    prices = [price_kwh(cfg, site, start + k * HOUR) for k in range(int((end - start) / HOUR))]
    if not prices or prices[0] is None:
        return None
    return float(sum(p for p in prices if p is not None) / len(prices))


def site_capacity(cfg: config.Config) -> dict[str, SiteCapacity]:
    """Each site's facility power, cooling and contracted capacity (kW; None where not configured)."""
    out = {}
    for s in cfg.sites:
        e = cfg.energy.site(s.id)
        contracted = e.contracted_kw
        out[s.id] = SiteCapacity(e.power_kw, e.cooling_kw, contracted)
    return out


def pue_target(cfg: config.Config, site: str | None = None) -> float:
    """The site's PUE target (its own, else energy.pue.target)."""
    own = cfg.energy.site(site).pue_target if site is not None else None
    return own if own is not None else cfg.energy.pue.target


def grade(cfg: config.Config, pue: float | None) -> int | None:
    """The GB 40879-2021 grade a PUE reaches (1 best); None above every band or unknown."""
    if pue is None or not math.isfinite(pue):
        return None
    for g in sorted(cfg.energy.pue.grades, key=lambda g: g.grade):
        if pue <= g.max_pue:
            return g.grade
    return None


# ---- the energy job: facility_samples -> energy_meter_15m ----------------------------------

def _rollovers(cfg: config.Config) -> list[dict] | None:
    rows = [{"site": m.site, "meter": m.meter, "max_kwh": float(m.register_max_kwh)}
            for m in cfg.energy.meters if m.register_max_kwh is not None]
    return rows or None


def _runs(quarters: Iterable[datetime], pad: int) -> list[tuple[datetime, datetime]]:
    """Contiguous [lo, hi) spans covering each quarter with `pad` quarters either side."""
    step = timedelta(seconds=QUARTER_S)
    spans: list[tuple[datetime, datetime]] = []
    for q in sorted(set(quarters)):
        lo, hi = q - pad * step, q + (pad + 1) * step
        if spans and lo <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], hi))
        else:
            spans.append((lo, hi))
    return spans


def build_quarters(store: Store, cfg: config.Config, lo: datetime, hi: datetime) -> int:
    """(Re)build energy_meter_15m over [lo, hi) (quarter-aligned) from facility_samples, in one
    transaction: delete the span's rows, insert what the readings say. Returns rows written."""
    df = store.query("energy_meter_quarters", lo=lo, hi=hi, max_gap_s=cfg.energy.pue.max_gap_s,
                     rollovers=_rollovers(cfg))
    table = pa.Table.from_pandas(df, schema=arrow_schema("energy_meter_15m"), preserve_index=False)
    with store.cursor() as cur, transaction(cur):
        cur.execute("DELETE FROM energy_meter_15m WHERE quarter >= $lo AND quarter < $hi", {"lo": lo, "hi": hi})
        cur.register("energy_batch", table)
        try:
            cur.execute("INSERT INTO energy_meter_15m BY NAME SELECT * FROM energy_batch")
        finally:
            cur.unregister("energy_batch")
    return table.num_rows


def build(store: Store, cfg: config.Config, now: datetime | None = None, *, full: bool | None = None) -> Any:
    """The `energy` job: rebuild the quarter hours whose readings changed (new, late or the
    quarter still filling), with their neighbours within max_gap_s (an interval crossing into
    them changes too). It compares the last two days each run, and everything once a day or
    when the readings before those two days are not the ones the tier counted (a back-fill or an
    import wrote into older hours), so late readings are counted too."""
    from collectors.jobs import JobResult

    now = now or datetime.now(UTC)
    recent = datetime.fromtimestamp(math.floor((now - RECENT_CHECK).timestamp() / QUARTER_S) * QUARTER_S, UTC)
    if full is None:
        last = store.get_kv(KV_FULL_CHECK)
        full = last is None or now - datetime.fromisoformat(last) >= FULL_CHECK_EVERY
        if not full:            # older readings arrived (a back-fill, an import): look at everything
            counts = store.query("energy_older_counts", before=recent).iloc[0]
            full = int(counts["raw"]) != int(counts["built"])
    lo = datetime(2000, 1, 1, tzinfo=UTC) if full else recent
    changed = store.query("energy_meter_counts", lo=lo, hi=now + timedelta(days=1))
    pad = int(math.ceil(cfg.energy.pue.max_gap_s / QUARTER_S))
    rows = 0
    spans = _runs((pd.Timestamp(q).to_pydatetime() for q in changed["quarter"]), pad)
    for a, b in spans:
        rows += build_quarters(store, cfg, a, b)
    if full:
        store.set_kv(KV_FULL_CHECK, now.isoformat())
    return JobResult(rows=rows, detail=f"{len(changed)} meter quarters changed; {len(spans)} spans rebuilt"
                     + (" (full check)" if full else ""))


def add_jobs(runner: Any, store: Store, cfg: config.Config, *, history: bool = True) -> None:
    """Register the `energy` job (every collection interval, at least a minute; at start) on a
    JobRunner and, for the simulated centre with `history` (its back-fill wanted),
    `energy-history` (every minute until done): the simulated meters' quarter hours before the
    back-fill, `simulated_history_chunk`."""
    from collectors.jobs import Every

    runner.add("energy", Every(max(60.0, cfg.collection.interval_s), at_start=True),
               lambda now: build(store, cfg, now))
    if history and cfg.simulated and cfg.capacity.simulated_history_days > cfg.simulator.backfill_days:
        runner.add("energy-history", Every(60.0, at_start=True),
                   lambda now: simulated_history_chunk(store, cfg, now))


KV_HISTORY = "energy.simulated_history"          # kv: how far back the simulated history is written
HISTORY_CHUNK = timedelta(days=30)


def simulated_history(store: Store, cfg: config.Config, floor: Any, start: datetime, end: datetime) -> int:
    """The simulated meters' quarter hours in [start, end) straight into energy_meter_15m from
    the floor's noise-free readings at each quarter's edges (registers' deltas; a power-only
    meter's trapezoid): what the job makes of readings every 15 minutes. Only quarters the tier
    holds nothing for at that site (measured readings win), none before the floor's
    commissioning; `samples` 0 (no reading was stored). Returns rows written."""
    from simulator.model import COMMISSIONED_AT

    step = timedelta(seconds=QUARTER_S)
    lo = datetime.fromtimestamp(max(start.timestamp(), COMMISSIONED_AT), UTC)
    lo = datetime.fromtimestamp(math.ceil(lo.timestamp() / QUARTER_S) * QUARTER_S, UTC)
    hi = datetime.fromtimestamp(math.floor(end.timestamp() / QUARTER_S) * QUARTER_S, UTC)
    if hi <= lo:
        return 0
    n = int((hi - lo) / step)
    rows: list[dict] = []
    for s in cfg.sites:
        held = store.query("energy_quarters", lo=lo, hi=hi, site=s.id)
        have = set(pd.to_datetime(held["quarter"], utc=True)) if len(held) else set()
        edges = [floor.facility_values(s.id, (lo + k * step).timestamp())["meters"] for k in range(n + 1)]
        for k in range(n):
            q = lo + k * step
            if pd.Timestamp(q) in have:
                continue
            for (name, scope, cat, w0, e0), (_, _, _, w1, e1) in zip(edges[k], edges[k + 1]):
                register = e0 is not None and e1 is not None
                kwh = e1 - e0 if register else (w0 + w1) / 2 * QUARTER_S / 3.6e6
                rows.append({"quarter": q, "site": s.id, "meter": name, "scope": scope, "pue_category": cat,
                             "kwh": kwh, "covered_s": QUARTER_S, "samples": 0,
                             "register_s": QUARTER_S if register else 0.0, "resets": 0})
    if rows:
        store.insert("energy_meter_15m", pa.Table.from_pylist(rows, schema=arrow_schema("energy_meter_15m")))
    return len(rows)


def simulated_history_chunk(store: Store, cfg: config.Config, now: datetime) -> Any:
    """One step of `energy-history`: the next HISTORY_CHUNK back of the simulated meters' history
    before the back-fill, newest first, until capacity.simulated_history_days are written."""
    from collectors.jobs import JobResult
    from simulator.model import Floor

    now = datetime.fromtimestamp(math.floor(now.timestamp() / QUARTER_S) * QUARTER_S, UTC)   # chunks meet on quarters
    oldest = now - timedelta(days=cfg.capacity.simulated_history_days)
    done = store.get_kv(KV_HISTORY)
    end = datetime.fromisoformat(done) if done else now - timedelta(days=cfg.simulator.backfill_days)
    if end <= oldest:
        return JobResult(rows=0, detail="done")
    start = max(oldest, end - HISTORY_CHUNK)
    rows = simulated_history(store, cfg, Floor(cfg), start, end)
    store.set_kv(KV_HISTORY, start.isoformat())
    return JobResult(rows=rows, detail=f"{start:%Y-%m-%d}..{end:%Y-%m-%d}")


# ---- site hours: facility, IT, cooling per UTC hour ---------------------------------------

def _series_of(scope: str, category: Any) -> str | None:
    if scope == "it":
        return None if category is None or pd.isna(category) else f"it{int(category)}"
    return scope if scope in ("facility", "cooling") else None


def _configured(cfg: config.Config) -> pd.DataFrame:
    rows = [{"site": m.site, "meter": m.meter, "series": _series_of(m.scope, m.category),
             "sub": m.submeter_of is not None, "hall": m.hall, "loop": m.loop} for m in cfg.energy.meters]
    return pd.DataFrame(rows, columns=["site", "meter", "series", "sub", "hall", "loop"])


def _local_months(cfg: config.Config, rows: pd.DataFrame) -> pd.Series:
    """Each row's site-local month ("YYYY-MM") of its UTC `hour`."""
    out = pd.Series("", index=rows.index, dtype=object)
    for s in cfg.sites:
        m = rows["site"] == s.id
        if m.any():
            out[m] = pd.DatetimeIndex(rows.loc[m, "hour"]).tz_convert(s.timezone).strftime("%Y-%m")
    return out


def _hours(first: datetime, end: datetime, now: datetime) -> pd.DatetimeIndex:
    """The complete UTC hours whose start lies in [first, end) and that ended by `now`."""
    last = min(end, now.astimezone(UTC).replace(minute=0, second=0, microsecond=0))
    if last <= first:
        return pd.DatetimeIndex([], tz=UTC)
    return pd.date_range(first, last, freq="h", inclusive="left", tz=UTC)


@dataclass
class SiteHours:
    """Per site and complete UTC hour: facility, IT (the site's PUE category or the estimate)
    and cooling kWh, whether each is covered, board kWh, and the hour's max 15-minute demand."""

    frame: pd.DataFrame             # index (site, hour)
    category: dict[str, int | None]
    estimated: dict[str, bool]


def _hierarchy_params(cfg: config.Config) -> tuple[list[dict] | None, list[dict] | None]:
    """energy_site_hours.sql's $subs and $listed from the configured meters."""
    subs = [{"site": m.site, "meter": m.meter} for m in cfg.energy.meters if m.submeter_of is not None]
    listed = [{"site": m.site, "meter": m.meter, "series": _series_of(m.scope, m.category)}
              for m in cfg.energy.meters if m.submeter_of is None and _series_of(m.scope, m.category)]
    return subs or None, listed or None


_MEMO: dict[tuple, SiteHours] = {}
_MEMO_SIZE = 16


def site_hours(store: Store, cfg: config.Config, first: datetime, end: datetime, now: datetime,
               sites: list[str] | None = None, *, category: int | None = None) -> SiteHours:
    """facility_kwh, facility_ok, it_kwh, it_ok, cooling_kwh, cooling_ok, board_kwh, node_h, valid
    (facility and IT covered) and demand_kw (the hour's largest covered quarter's facility kWh x 4)
    per site and complete hour in [first, end); it_peak_kw and cooling_peak_kw likewise. `category`
    asks for another IT category than the site's own. The tables of one page render ask for the
    same hours at the same `now`: the answer is kept for them (complete hours do not change
    without a new `now`, but for a late import, which the next render sees)."""
    sites = sites or [s.id for s in cfg.sites]
    key = (id(store), id(cfg), first, end, now, tuple(sites), category)
    got = _MEMO.get(key)
    if got is not None:
        return got
    out = _site_hours(store, cfg, first, end, now, sites, category)
    if len(_MEMO) >= _MEMO_SIZE:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[key] = out
    return out


def _site_hours(store: Store, cfg: config.Config, first: datetime, end: datetime, now: datetime,
                sites: list[str], category: int | None) -> SiteHours:
    one = sites[0] if len(sites) == 1 else None
    subs, listed = _hierarchy_params(cfg)
    nodes = [{"cluster": c.id, "gpus_per_node": c.gpus_per_node} for c in cfg.clusters]
    df = store.query("energy_site_hours", lo=first, hi=end, now=now, site=one, subs=subs, listed=listed, nodes=nodes)
    df["hour"] = pd.to_datetime(df["hour"], utc=True)
    hours = _hours(first, end, now)
    cats: dict[str, int | None] = {}
    est: dict[str, bool] = {}
    parts = []
    for site in sites:
        f = df[df["site"] == site].set_index("hour").reindex(hours)
        metered = {x for x in ("it1", "it2", "it3") if f[f"{x}_kwh"].notna().any()}
        cat = category if category is not None else energy_category(cfg, site, metered)
        has_it = cat is not None and (
            any(m.site == site and m.scope == "it" and m.category == cat for m in cfg.energy.meters)
            or f"it{cat}" in metered)
        cats[site] = cat if has_it else None
        est[site] = not has_it
        out = pd.DataFrame(index=hours)
        for name in ("facility", "cooling", *((f"it{cat}",) if has_it else ())):
            short = "it" if name.startswith("it") else name
            out[f"{short}_kwh"] = f[f"{name}_kwh"].astype(float)
            out[f"{short}_ok"] = f[f"{name}_ok"].astype("boolean").fillna(False).astype(bool)
            out[f"{short}_peak_kw"] = f[f"{name}_peak_kw"].astype(float)
        out["board_kwh"] = f["board_kwh"].astype(float).fillna(0.0)
        out["node_h"] = f["node_h"].astype(float).fillna(0.0)
        if not has_it:
            out["it_kwh"] = out["board_kwh"] + out["node_h"] * cfg.energy.pue.per_node_overhead_w / 1000.0
            out["it_ok"] = out["node_h"] > 0
            out["it_peak_kw"] = out["it_kwh"].where(out["it_ok"])
        out["demand_kw"] = out["facility_peak_kw"]
        out["valid"] = out["facility_ok"] & out["it_ok"]
        out.index.name = "hour"
        out.insert(0, "site", site)
        parts.append(out.reset_index().set_index(["site", "hour"]))
    frame = (pd.concat(parts) if parts
             else pd.DataFrame(index=pd.MultiIndex.from_arrays([[], []], names=["site", "hour"])))
    return SiteHours(frame, cats, est)


def energy_category(cfg: config.Config, site: str, metered: Iterable[str] = ()) -> int | None:
    """The IT category a site's PUE uses: energy.sites[].it_category, else the highest category of
    its configured IT meters or of the series metered (it1..it3); None: no IT meter (estimate)."""
    own = cfg.energy.site(site).it_category
    if own is not None:
        return own
    cats = {m.category for m in cfg.energy.meters if m.site == site and m.scope == "it" and m.category}
    cats |= {int(x[2:]) for x in metered if x.startswith("it") and x[2:].isdigit()}
    return max(cats) if cats else None


# ---- tables for people -------------------------------------------------------------------

# the kinds of this module's columns history.HistoryTable does not format, as a page shows them
_FORMATS = {
    "ratio": lambda v: f"{v:.3f}",
    "kw": lambda v: f"{v:,.1f}",
    "kg": lambda v: f"{v:,.1f}",
}


class EnergyTable(HistoryTable):
    """A history.HistoryTable (the same JSON and CSV) whose page form also formats PUE-like
    ratios, kW and kg, and says yes / no for a flag in the reader's language. An empty table's
    records are [] (history's time conversion does not take an empty column)."""

    def records(self) -> list[dict[str, Any]]:
        return [] if self.rows.empty else super().records()

    def for_people(self, lang: str) -> pd.DataFrame:
        rows = self.rows.copy()
        cols = []
        for c in self.columns:
            if c.kind in _FORMATS and c.name in rows:
                fmt = _FORMATS[c.kind]
                rows[c.name] = [None if v is None or pd.isna(v) else fmt(float(v)) for v in rows[c.name]]
                c = Col(c.name, c.unit, c.label)
            elif c.kind == "level" and c.name in rows:
                rows[c.name] = [None if v is None or pd.isna(v) else i18n.t(f"energy.level.{v}", lang)
                                for v in rows[c.name]]
                c = Col(c.name, c.unit, c.label)
            elif c.kind == "flag" and c.name in rows:
                rows[c.name] = [None if v is None or pd.isna(v) else i18n.t("energy.yes" if v else "energy.no", lang)
                                for v in rows[c.name]]
                c = Col(c.name, c.unit, c.label)
            cols.append(c)
        return HistoryTable(tuple(cols), rows, tz=self.tz, names=self.names).for_people(lang)


# ---- buckets ---------------------------------------------------------------------------------

def _bucket_of(hours: pd.Series | pd.DatetimeIndex, step: str, tz: str, label: datetime) -> pd.DatetimeIndex:
    """Each UTC hour's bucket start (UTC): the hour, or the local day, week (Monday) or month in
    `tz` (wall-clock arithmetic, so a DST day is still one day), or `label` for step all."""
    h = pd.DatetimeIndex(hours).tz_convert(UTC)
    if step == "1h":
        return h
    if step == "all":
        return pd.DatetimeIndex(np.full(len(h), pd.Timestamp(label).tz_convert(UTC).as_unit("us").asm8),
                                dtype="datetime64[us, UTC]") if len(h) else h
    wall = h.tz_convert(tz).tz_localize(None).normalize()
    if step == "1w":
        wall = wall - pd.to_timedelta(wall.weekday, unit="D")
    elif step == "1mo":
        wall = wall - pd.to_timedelta(wall.day - 1, unit="D")
    elif step != "1d":
        raise ValueError(f"a step is one of 1h, 1d, 1w, 1mo, all, not {step!r}")
    return wall.tz_localize(tz, ambiguous=False, nonexistent="shift_forward").tz_convert(UTC)


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def _first(v: View) -> datetime:
    return v.first_hour


# ---- PUE -----------------------------------------------------------------------------------

PUE_COLUMNS = (
    Col("bucket", "", "energy.col.bucket", "time"),
    Col("site", "", "energy.col.site"),
    Col("pue", "", "energy.col.pue", "ratio"),
    Col("category", "", "energy.col.category"),
    Col("it_estimated", "", "energy.col.it_estimated", "flag"),
    Col("facility_kwh", "kWh", "energy.col.facility_kwh", "kwh"),
    Col("it_kwh", "kWh", "energy.col.it_kwh", "kwh"),
    Col("cooling_kwh", "kWh", "energy.col.cooling_kwh", "kwh"),
    Col("cooling_share_pct", "%", "energy.col.cooling_share", "share"),
    Col("hours", "h", "energy.col.hours", "count"),
    Col("excluded_hours", "h", "energy.col.excluded_hours", "count"),
    Col("cue", "kg/kWh", "energy.col.cue", "ratio"),
    Col("target", "", "energy.col.target", "ratio"),
    Col("grade", "", "energy.col.grade"),
)


def _sites(cfg: config.Config, v: View) -> list[str]:
    return [s.id for s in cfg.sites if v.site in (None, s.id)]


def pue_table(store: Store, cfg: config.Config, view: View, scope: Scope = EVERYTHING, *,
              now: datetime | None = None, category: int | None = None) -> HistoryTable:
    """PUE per bucket and site from energy (facility kWh / IT kWh over the hours both are
    covered), with its measurement category, whether IT is estimated, the kWh on both sides,
    cooling kWh and share of IT, the hours counted and excluded, CUE (kg CO2 / IT kWh), the
    site's target and GB 40879 grade. Not tenant-facing: a tenant scope gets no rows."""
    now = _now(now)
    sites = _sites(cfg, view) if scope.everything else []
    if not sites:
        return EnergyTable(PUE_COLUMNS, pd.DataFrame(columns=[c.name for c in PUE_COLUMNS]), tz=view.tz)
    sh = site_hours(store, cfg, view.first_hour, view.end, now, sites, category=category)
    f = sh.frame.reset_index()
    f["bucket"] = _bucket_of(f["hour"], view.step, view.tz, view.start)
    f["month"] = f["hour"].dt.tz_convert(view.tz).dt.strftime("%Y-%m")
    v = f["valid"]
    f["fac_v"] = f["facility_kwh"].where(v, 0.0).fillna(0.0)
    f["it_v"] = f["it_kwh"].where(v, 0.0).fillna(0.0)
    cool_ok = v & f["cooling_ok"]
    f["cool_v"] = f["cooling_kwh"].where(cool_ok, 0.0).fillna(0.0)
    f["it_cool"] = f["it_kwh"].where(cool_ok, 0.0).fillna(0.0)
    f["carbon"] = [carbon_kg(cfg, s, k, m) for s, k, m in zip(f["site"], f["fac_v"], f["month"])]
    g = f.groupby(["bucket", "site"], sort=True).agg(
        facility_kwh=("fac_v", "sum"), it_kwh=("it_v", "sum"), cooling_kwh=("cool_v", "sum"),
        it_cool=("it_cool", "sum"), hours=("valid", "sum"), total=("valid", "size"), carbon=("carbon", "sum"),
        cool_hours=("cooling_ok", "sum")).reset_index()
    g["pue"] = (g["facility_kwh"] / g["it_kwh"].where(g["it_kwh"] > 0)).round(4)
    g["excluded_hours"] = (g["total"] - g["hours"]).astype(int)
    g["hours"] = g["hours"].astype(int)
    g["cooling_share_pct"] = (100.0 * g["cooling_kwh"] / g["it_cool"].where(g["it_cool"] > 0)).round(3)
    g.loc[g["cool_hours"] == 0, "cooling_kwh"] = np.nan
    g["cue"] = (g["carbon"] / g["it_kwh"].where(g["it_kwh"] > 0)).round(4)
    g["category"] = g["site"].map(lambda s: sh.category.get(s))
    g["category"] = g["category"].astype(object).where(g["category"].notna(), None)
    g["it_estimated"] = g["site"].map(lambda s: sh.estimated.get(s, True))
    g["target"] = g["site"].map(lambda s: pue_target(cfg, s))
    g["grade"] = [grade(cfg, None if pd.isna(p) else float(p)) for p in g["pue"]]
    g.loc[g["hours"] == 0, ["facility_kwh", "it_kwh"]] = np.nan
    for c in ("facility_kwh", "it_kwh", "cooling_kwh"):
        g[c] = g[c].astype(float).round(3)
    out = g[[c.name for c in PUE_COLUMNS]].reset_index(drop=True)
    return EnergyTable(PUE_COLUMNS, out, tz=view.tz)


PPUE_COLUMNS = (
    Col("bucket", "", "energy.col.bucket", "time"),
    Col("site", "", "energy.col.site"),
    Col("level", "", "energy.col.level", "level"),
    Col("part", "", "energy.col.part"),
    Col("ppue", "", "energy.col.ppue", "ratio"),
    Col("it_kwh", "kWh", "energy.col.it_kwh", "kwh"),
    Col("infrastructure_kwh", "kWh", "energy.col.infrastructure_kwh", "kwh"),
    Col("category", "", "energy.col.category"),
    Col("hours", "h", "energy.col.hours", "count"),
    Col("excluded_hours", "h", "energy.col.excluded_hours", "count"),
)


def _parts(cfg: config.Config, sites: list[str]) -> list[dict]:
    """Each hall and cooling loop with meters: its IT meters and its infrastructure meters."""
    e = cfg.energy
    out = []
    for h in e.halls:
        if h.site not in sites:
            continue
        it_meters = [m for m in e.meters if m.hall == h.id and m.scope == "it"]
        cat = max((m.category for m in it_meters if m.category), default=None)
        it = [m.meter for m in it_meters if m.category == cat]
        fac = [m.meter for m in e.meters if m.hall == h.id and m.scope == "facility"]
        infra = fac or [m.meter for m in e.meters if m.hall == h.id and m.scope == "cooling"]
        if it and infra:
            out.append({"site": h.site, "level": "hall", "part": h.id, "it": it, "infra": infra,
                        "total": bool(fac), "category": cat})
        for lp in e.loops:
            if lp.hall != h.id:
                continue
            cool = [m.meter for m in e.meters if m.loop == lp.id]
            if it and cool:
                out.append({"site": h.site, "level": "loop", "part": lp.id, "it": it, "infra": cool,
                            "total": False, "category": cat})
    return out


def ppue_table(store: Store, cfg: config.Config, view: View, scope: Scope = EVERYTHING, *,
               now: datetime | None = None) -> HistoryTable:
    """Partial PUE per bucket, hall and cooling loop where meters allow: (IT kWh of the hall +
    the infrastructure kWh within the boundary) / IT kWh of the hall, where the infrastructure is
    the hall's own intake meter (then pPUE = its kWh / IT kWh) or its cooling meters; for a
    loop, its cooling meters over the IT of its hall. Hours not covered on both sides are
    excluded and counted."""
    now = _now(now)
    sites = _sites(cfg, view) if scope.everything else []
    parts = _parts(cfg, sites)
    empty = EnergyTable(PPUE_COLUMNS, pd.DataFrame(columns=[c.name for c in PPUE_COLUMNS]), tz=view.tz)
    if not parts:
        return empty
    spec = [{"part": f"{p['level']}:{p['part']}", "side": side, "site": p["site"], "meter": m, "meters": len(p[side])}
            for p in parts for side in ("it", "infra") for m in p[side]]
    g = store.query("energy_ppue", lo=view.first_hour, hi=view.end, now=now, parts=spec, step=view.step, tz=view.tz,
                    start_label=view.start)
    if not len(g):
        return empty
    meta = pd.DataFrame([{"part": f"{p['level']}:{p['part']}", "site": p["site"], "level": p["level"],
                          "name": p["part"], "total_meter": p["total"], "category": p["category"]} for p in parts])
    g = g.merge(meta, on="part", how="inner")
    num = np.where(g["total_meter"], g["infra_kwh"], g["it_kwh"] + g["infra_kwh"])
    g["ppue"] = (pd.Series(num, index=g.index) / g["it_kwh"].where(g["it_kwh"] > 0)).round(4)
    g["infrastructure_kwh"] = np.where(g["total_meter"], g["infra_kwh"] - g["it_kwh"], g["infra_kwh"]).round(3)
    g["it_kwh"] = g["it_kwh"].round(3)
    g["excluded_hours"] = (g["total"] - g["hours"]).astype(int)
    g["hours"] = g["hours"].astype(int)
    g["bucket"] = pd.to_datetime(g["bucket"], utc=True)
    g = g.drop(columns=["part"]).rename(columns={"name": "part"})
    rows = [g[[c.name for c in PPUE_COLUMNS]]]
    out = pd.concat(rows).sort_values(["bucket", "site", "level", "part"]).reset_index(drop=True)
    return EnergyTable(PPUE_COLUMNS, out, tz=view.tz)


# ---- energy per cluster and tenant -------------------------------------------------------

def _tariff_grid(cfg: config.Config, site: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The site's tariff as two 12 x 24 arrays (month - 1, local hour): price (CNY/kWh) and
    period (an index into PERIODS); None without a tariff."""
    tariff = cfg.energy.tariff(cfg.energy.site(site).tariff)
    if tariff is None:
        return None
    price = np.zeros((12, 24))
    period = np.zeros((12, 24), dtype=int)
    for m in range(1, 13):
        season = _season(tariff, m)
        for h, p in enumerate(_hour_periods(season)):
            price[m - 1, h] = season.prices[p]
            period[m - 1, h] = PERIODS.index(p)
    return price, period


def _prices(cfg: config.Config, site: str, hours: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Price (CNY/kWh, NaN without a tariff) and period (sharp | peak | flat | valley, "" without)
    of each UTC hour at the site."""
    grid = _tariff_grid(cfg, site)
    if grid is None:
        return np.full(len(hours), np.nan), np.full(len(hours), "", dtype=object)
    local = pd.DatetimeIndex(hours).tz_convert(_site(cfg, site).timezone)
    m, h = local.month.to_numpy() - 1, local.hour.to_numpy()
    return grid[0][m, h], np.array(PERIODS, dtype=object)[grid[1][m, h]]


def _set_prices(cfg: config.Config, rows: pd.DataFrame) -> None:
    """Adds each row's price and period (its site's tariff at its UTC `hour`)."""
    price = np.full(len(rows), np.nan)
    period = np.full(len(rows), "", dtype=object)
    for site in rows["site"].unique():
        m = (rows["site"] == site).to_numpy()
        price[m], period[m] = _prices(cfg, str(site), rows.loc[m, "hour"])
    rows["price"] = price
    rows["period"] = period


def _apportioned(store: Store, cfg: config.Config, first: datetime, end: datetime, now: datetime,
                 key: str, sites: list[str], *, tenant: str | None = None, cluster: str | None = None,
                 sh: SiteHours | None = None) -> pd.DataFrame:
    """Per UTC hour, site and `key` (tenant | cluster): board_kwh, it_kwh, facility_kwh, gap (the
    hour's meters had a gap: the range's ratios used), price and period (module docstring)."""
    sh = sh or site_hours(store, cfg, first, end, now, sites)
    b = store.query("energy_board_hours", first_hour=first, end_ts=end,
                    site=sites[0] if len(sites) == 1 else None, cluster=cluster, tenant=tenant)
    cols = ["hour", "site", key, "board_kwh", "it_kwh", "facility_kwh", "gap", "price", "period"]
    if not len(b):
        return pd.DataFrame(columns=cols)
    b["hour"] = pd.to_datetime(b["hour"], utc=True)
    b = b[b["site"].isin(sites)]
    hours = _hours(first, end, now)
    b = b[b["hour"].isin(hours)]
    b = b.groupby(["hour", "site", key], as_index=False)["energy_j"].sum()
    b["board_kwh"] = b["energy_j"] / 3.6e6
    fr = sh.frame.reset_index()
    v = fr["valid"] & (fr["board_kwh"] > 0)
    ratios = {}
    for site, g in fr.groupby("site"):
        gv = g[v.loc[g.index]]
        bsum = gv["board_kwh"].sum()
        ratios[site] = ((gv["it_kwh"].sum() / bsum, gv["facility_kwh"].sum() / bsum) if bsum > 0 else (np.nan, np.nan))
    fr["k_it"] = (fr["it_kwh"] / fr["board_kwh"]).where(v)
    fr["k_fac"] = (fr["facility_kwh"] / fr["board_kwh"]).where(v)
    b = b.merge(fr[["site", "hour", "k_it", "k_fac"]], on=["site", "hour"], how="left")
    b["gap"] = b["k_fac"].isna()
    b["k_it"] = b["k_it"].fillna(b["site"].map(lambda s: ratios.get(s, (np.nan, np.nan))[0]))
    b["k_fac"] = b["k_fac"].fillna(b["site"].map(lambda s: ratios.get(s, (np.nan, np.nan))[1]))
    b["it_kwh"] = b["board_kwh"] * b["k_it"]
    b["facility_kwh"] = b["board_kwh"] * b["k_fac"]
    _set_prices(cfg, b)
    return b[cols]


def _month_facility(store: Store, cfg: config.Config, site: str, months: Iterable[str],
                    now: datetime) -> dict[str, float]:
    """Facility kWh (covered hours) of whole site-local months: the base of a green kWh share."""
    if not any(g.site == site and g.kwh is not None for g in cfg.energy.green):
        return {}
    out = {}
    for m in months:
        a, b = month_bounds(cfg, site, m)
        sh = site_hours(store, cfg, a, b, now, [site])
        out[m] = float(sh.frame["facility_kwh"].fillna(0.0).sum())
    return out


def _demand(cfg: config.Config, sh: SiteHours) -> pd.DataFrame:
    """Per site and site-local month the hours touch: the maximum 15-minute demand (kW) among
    them and the month's demand charge on it (or the capacity charge on contracted kVA),
    prorated by the share of the month's hours the range holds (a whole month: the charge)."""
    rows = []
    fr = sh.frame.reset_index()
    for site, g in fr.groupby("site"):
        e = cfg.energy.site(str(site))
        tariff = cfg.energy.tariff(e.tariff)
        g = g.assign(month=_local_months(cfg, g))
        for month, gm in g.groupby("month"):
            peak = gm["demand_kw"].max()
            a, b = month_bounds(cfg, str(site), str(month))
            share = len(gm) / ((b - a) / HOUR)
            charge = None
            if tariff is not None and tariff.demand_cny_per_kw_month is not None and pd.notna(peak):
                charge = float(peak) * tariff.demand_cny_per_kw_month * share
            elif tariff is not None and tariff.capacity_cny_per_kva_month is not None and e.contracted_kva:
                charge = e.contracted_kva * tariff.capacity_cny_per_kva_month * share
            rows.append({"site": site, "month": month, "demand_kw": None if pd.isna(peak) else float(peak),
                         "demand_cny": charge})
    return pd.DataFrame(rows, columns=["site", "month", "demand_kw", "demand_cny"])


def tenant_energy(store: Store, cfg: config.Config, start: datetime, end: datetime, *,
                  tenant: str | None = None, now: datetime | None = None) -> pd.DataFrame:
    """Energy per tenant over the complete UTC hours in [start, end), one row per tenant with board
    energy (every configured tenant, Unattributed, Unallocated; only `tenant` when given):

    - board_kwh: board-level energy (MIG folded), kWh;
    - it_kwh: the tenant's share of its sites' metered IT energy, by board energy hour by hour
      (kWh; equals board_kwh x the site's IT/board ratio);
    - facility_kwh: it_kwh x the hour's PUE (= the site's facility kWh x the board share), kWh;
    - overhead_kwh: facility_kwh - it_kwh (cooling, power losses, the rest), kWh;
    - cost_cny: each hour's facility_kwh at the site's time-of-use price, CNY (energy only);
    - demand_cny: the months' demand (or capacity) charge shared by facility energy, CNY;
    - carbon_kg: kg CO2 of facility_kwh (green electricity left out);
    - gap_hours: hours with board energy but a meter gap (priced with the range's ratios).
    Facility energy of all tenants together is the sites' facility energy of the covered hours."""
    now = _now(now)
    sites = [s.id for s in cfg.sites]
    cols = ["tenant", "board_kwh", "it_kwh", "overhead_kwh", "facility_kwh", "cost_cny", "demand_cny",
            "carbon_kg", "gap_hours"]
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if first < start:
        first += HOUR
    sh = site_hours(store, cfg, first, end, now, sites)
    a = _apportioned(store, cfg, first, end, now, "tenant", sites, tenant=tenant, sh=sh)
    if not len(a):
        return pd.DataFrame(columns=cols)
    return _summarise(store, cfg, a, "tenant", sh, now)[cols]


def _summarise(store: Store, cfg: config.Config, a: pd.DataFrame, key: str, sh: SiteHours,
               now: datetime) -> pd.DataFrame:
    a = a.copy()
    a["cost"] = a["facility_kwh"] * a["price"]
    tz = {s.id: s.timezone for s in cfg.sites}
    a["month"] = _local_months(cfg, a)
    carbon = []
    for (site, month), g in a.groupby(["site", "month"]):
        mk = _month_facility(store, cfg, str(site), [str(month)], now).get(str(month))
        c = carbon_kg(cfg, str(site), 1.0, str(month), month_kwh=mk)
        carbon.append(pd.Series(g["facility_kwh"] * c, index=g.index))
    a["carbon"] = pd.concat(carbon) if carbon else 0.0
    dem = _demand(cfg, sh)
    a["demand"] = 0.0
    for _, d in dem.iterrows():
        if d["demand_cny"] is None or pd.isna(d["demand_cny"]):
            continue
        m = (a["site"] == d["site"]) & (a["month"] == d["month"])
        total = a.loc[m, "facility_kwh"].sum()
        site_total = sh.frame.loc[d["site"]]
        site_total = site_total[site_total.index.tz_convert(tz[d["site"]]).strftime("%Y-%m") == d["month"]]
        whole = site_total["facility_kwh"].where(site_total["valid"]).sum()
        if whole > 0 and total > 0:
            a.loc[m, "demand"] = a.loc[m, "facility_kwh"] / whole * d["demand_cny"]
    g = a.groupby(key).agg(board_kwh=("board_kwh", "sum"), it_kwh=("it_kwh", lambda s: s.sum(min_count=1)),
                           facility_kwh=("facility_kwh", lambda s: s.sum(min_count=1)),
                           cost_cny=("cost", lambda s: s.sum(min_count=1)), demand_cny=("demand", "sum"),
                           carbon_kg=("carbon", "sum"), gap_hours=("gap", "sum")).reset_index()
    g["overhead_kwh"] = g["facility_kwh"] - g["it_kwh"]
    g["gap_hours"] = g["gap_hours"].astype(int)
    return g


# ---- site power per day (capacity) -------------------------------------------------------

def site_power_daily(store: Store, cfg: config.Config, start: datetime, end: datetime, *,
                     now: datetime | None = None) -> pd.DataFrame:
    """Per site and site-local day in [start, end): IT, facility and cooling power in kW, the
    day's mean (kWh over the covered hours / those hours) and peak (the largest covered quarter
    hour's mean power); NaN where unmetered. `day` is the local day's start (tz-aware, the
    site's zone). IT is the site's PUE category (or the estimate, whose peak is hourly)."""
    now = _now(now)
    cols = ["day", "site", "it_kw_mean", "it_kw_peak", "facility_kw_mean", "facility_kw_peak",
            "cooling_kw_mean", "cooling_kw_peak"]
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    sh = site_hours(store, cfg, first, end, now)
    out = []
    for s in cfg.sites:
        if s.id not in sh.frame.index.get_level_values(0):
            continue
        fr = sh.frame.loc[s.id]
        if fr.empty:
            continue
        day = pd.DatetimeIndex(fr.index).tz_convert(s.timezone).normalize()
        res = pd.DataFrame(index=pd.DatetimeIndex(sorted(set(day))))
        for name in ("it", "facility", "cooling"):
            ok = fr[f"{name}_ok"].to_numpy()
            kwh = pd.Series(np.where(ok, fr[f"{name}_kwh"].to_numpy(), np.nan), index=day)
            n = pd.Series(ok.astype(float), index=day).groupby(level=0).sum()
            res[f"{name}_kw_mean"] = kwh.groupby(level=0).sum(min_count=1) / n.where(n > 0)
            peak = pd.Series(np.where(ok, fr[f"{name}_peak_kw"].to_numpy(), np.nan), index=day)
            res[f"{name}_kw_peak"] = peak.groupby(level=0).max()
        res = res.rename_axis("day").reset_index()
        res["site"] = s.id
        out.append(res)
    if not out:
        return pd.DataFrame(columns=cols)
    return pd.concat(out, ignore_index=True)[cols]


# ---- energy, cost and carbon per site, cluster and tenant (tables) ---------------------

ENERGY_KEY = {"site": Col("site", "", "energy.col.site"), "cluster": Col("cluster", "", "energy.col.cluster"),
              "tenant": Col("tenant", "", "energy.col.tenant")}
ENERGY_BYS = tuple(ENERGY_KEY)


def _energy_columns(by: str) -> tuple[Col, ...]:
    head = (Col("bucket", "", "energy.col.bucket", "time"), ENERGY_KEY[by])
    kwh = ((Col("board_kwh", "kWh", "energy.col.board_kwh", "kwh"),) if by != "site" else ()) + (
        Col("it_kwh", "kWh", "energy.col.it_kwh", "kwh"),
        Col("overhead_kwh", "kWh", "energy.col.overhead_kwh", "kwh"),
        Col("facility_kwh", "kWh", "energy.col.facility_kwh", "kwh"))
    periods = tuple(Col(f"{p}_kwh", "kWh", f"energy.col.{p}_kwh", "kwh") for p in ("sharp", "peak", "flat", "valley"))
    money = tuple(Col(f"{p}_cny", "CNY", f"energy.col.{p}_cny", "money") for p in ("sharp", "peak", "flat", "valley"))
    tail = (Col("energy_cny", "CNY", "energy.col.energy_cny", "money"),
            *((Col("demand_kw", "kW", "energy.col.demand_kw", "kw"),) if by == "site" else ()),
            Col("demand_cny", "CNY", "energy.col.demand_cny", "money"),
            Col("cost_cny", "CNY", "energy.col.cost_cny", "money"),
            Col("carbon_kg", "kg CO2", "energy.col.carbon_kg", "kg"),
            Col("coal_kgce", "kgce", "energy.col.coal_kgce", "kg"),
            Col("gap_hours", "h", "energy.col.gap_hours", "count"))
    return (*head, *kwh, *periods, *money, *tail)


def _site_hour_rows(cfg: config.Config, sh: SiteHours) -> pd.DataFrame:
    """Per site and hour: the metered kWh (facility over its covered hours, IT and overhead over
    the hours both are covered), price and period, gap (facility not covered)."""
    fr = sh.frame.reset_index()
    out = pd.DataFrame({"hour": fr["hour"], "site": fr["site"],
                        "facility_kwh": fr["facility_kwh"].where(fr["facility_ok"]),
                        "it_kwh": fr["it_kwh"].where(fr["valid"]),
                        "gap": ~fr["facility_ok"]})
    out["overhead_kwh"] = fr["facility_kwh"].where(fr["valid"]) - out["it_kwh"]
    _set_prices(cfg, out)
    return out


def _priced(store: Store, cfg: config.Config, rows: pd.DataFrame, sh: SiteHours, now: datetime) -> pd.DataFrame:
    """Adds cost (energy), the demand charge's share, carbon and coal to hourly rows."""
    rows = rows.copy()
    rows["month"] = _local_months(cfg, rows)
    rows["energy_cny"] = rows["facility_kwh"] * rows["price"]
    rows["carbon_kg"] = 0.0
    for (site, month), g in rows.groupby(["site", "month"]):
        mk = _month_facility(store, cfg, str(site), [str(month)], now).get(str(month))
        rows.loc[g.index, "carbon_kg"] = g["facility_kwh"].fillna(0.0) * carbon_kg(cfg, str(site), 1.0, str(month),
                                                                                   month_kwh=mk)
    rows["coal_kgce"] = rows["facility_kwh"].fillna(0.0) * cfg.energy.carbon.coal_kgce_per_kwh
    rows["demand_cny"] = 0.0
    fr = sh.frame.reset_index()
    fr["month"] = _local_months(cfg, fr)
    for _, d in _demand(cfg, sh).iterrows():
        if d["demand_cny"] is None or pd.isna(d["demand_cny"]):
            continue
        sel = (fr["site"] == d["site"]) & (fr["month"] == d["month"]) & fr["facility_ok"]
        whole = fr.loc[sel, "facility_kwh"].sum()
        m = (rows["site"] == d["site"]) & (rows["month"] == d["month"])
        if whole > 0:
            rows.loc[m, "demand_cny"] = rows.loc[m, "facility_kwh"].fillna(0.0) / whole * d["demand_cny"]
    return rows


def energy_table(store: Store, cfg: config.Config, view: View, scope: Scope = EVERYTHING, *, by: str = "site",
                 now: datetime | None = None) -> HistoryTable:
    """Energy, cost by tariff period, the demand charge, carbon and standard coal per bucket and
    site, cluster or tenant over the view's complete hours (module docstring for the rules).
    By site: the metered energy (facility over its covered hours; IT and overhead over the hours
    both are covered) and the month's maximum 15-minute demand. By cluster or tenant: board
    energy apportioning the site's (tenant_energy's rule). Tenant rows are restricted to
    `scope.tenants(view.tenant)`; a tenant scope sees no site or cluster rows."""
    if by not in ENERGY_KEY:
        raise ValueError(f"energy is grouped by one of {ENERGY_BYS}, not {by!r}")
    now = _now(now)
    cols = _energy_columns(by)
    empty = EnergyTable(cols, pd.DataFrame(columns=[c.name for c in cols]), tz=view.tz,
                         names=tenant_names(cfg) if by == "tenant" else {})
    if by != "tenant" and not scope.everything:
        return empty
    sites = _sites(cfg, view)
    if not sites:
        return empty
    sh = site_hours(store, cfg, view.first_hour, view.end, now, sites)
    if by == "site":
        rows = _site_hour_rows(cfg, sh)
        rows["key"] = rows["site"]
    else:
        rows = _apportioned(store, cfg, view.first_hour, view.end, now, by, sites, sh=sh,
                            tenant=scope.tenants(view.tenant) if by == "tenant" else None,
                            cluster=view.cluster if by == "cluster" else None)
        rows = rows.rename(columns={by: "key"})
        rows["overhead_kwh"] = rows["facility_kwh"] - rows["it_kwh"]
    if rows.empty:
        return empty
    rows = _priced(store, cfg, rows, sh, now)
    rows["bucket"] = _bucket_of(rows["hour"], view.step, view.tz, view.start)
    for p in ("sharp", "peak", "flat", "valley"):
        sel = rows["period"] == p
        rows[f"{p}_kwh"] = rows["facility_kwh"].where(sel, 0.0)
        rows[f"{p}_cny"] = rows["energy_cny"].where(sel, 0.0)
    nullable = ("it_kwh", "overhead_kwh", "facility_kwh", "energy_cny")
    for c in nullable:
        rows[f"n_{c}"] = rows[c].notna().astype(int)
    sums = [*nullable, *(f"n_{c}" for c in nullable), "sharp_kwh", "peak_kwh", "flat_kwh", "valley_kwh", "sharp_cny",
            "peak_cny", "flat_cny", "valley_cny", "demand_cny", "carbon_kg", "coal_kgce", "gap",
            *(("board_kwh",) if by != "site" else ())]
    g = rows.groupby(["bucket", "key"])[sums].sum().reset_index().rename(columns={"gap": "gap_hours"})
    for c in nullable:                  # a bucket with no value at all is missing, not 0
        g[c] = g[c].where(g[f"n_{c}"] > 0)
    if by == "site":
        dem = sh.frame.reset_index()
        dem["bucket"] = _bucket_of(dem["hour"], view.step, view.tz, view.start)
        peak = dem.groupby(["bucket", "site"])["demand_kw"].max().rename("demand_kw").reset_index()
        g = g.merge(peak.rename(columns={"site": "key"}), on=["bucket", "key"], how="left")
    has_tariff = {s: cfg.energy.tariff(cfg.energy.site(s).tariff) is not None for s in sites}
    if not any(has_tariff.values()):
        for c in ("energy_cny", "demand_cny", "sharp_cny", "peak_cny", "flat_cny", "valley_cny"):
            g[c] = np.nan
    g["cost_cny"] = g["energy_cny"] + g["demand_cny"].fillna(0.0)
    g["gap_hours"] = g["gap_hours"].astype(int)
    g = g.rename(columns={"key": by})
    for col in cols:
        if col.kind in ("kwh", "kg", "kw"):
            g[col.name] = g[col.name].astype(float).round(3)
        elif col.kind == "money":
            g[col.name] = g[col.name].astype(float).round(2)
    out = g[[c.name for c in cols]].sort_values(["bucket", by]).reset_index(drop=True)
    return EnergyTable(cols, out, tz=view.tz, names=tenant_names(cfg) if by == "tenant" else {})


# ---- meter readings off the bill against the metered energy -------------------------------

READING_COLUMNS = (
    Col("site", "", "energy.col.site"),
    Col("meter", "", "energy.col.meter"),
    Col("category", "", "energy.col.reading_category"),
    Col("period_start", "", "energy.col.period_start", "time"),
    Col("period_end", "", "energy.col.period_end", "time"),
    Col("read_kwh", "kWh", "energy.col.read_kwh", "kwh"),
    Col("meter_kwh", "kWh", "energy.col.meter_kwh", "kwh"),
    Col("covered_pct", "%", "energy.col.covered_pct", "share"),
    Col("site_kwh", "kWh", "energy.col.site_kwh", "kwh"),
    Col("difference_pct", "%", "energy.col.difference_pct", "delta"),
)


def readings_table(store: Store, cfg: config.Config, view: View, scope: Scope = EVERYTHING, *,
                   now: datetime | None = None) -> HistoryTable:
    """Each meter reading typed off the bill (facility_readings) whose period overlaps the view,
    beside the energy metered over the same period: the same meter's kWh and how much of the
    period its readings covered, the site's total of the same scope and IT category, and the
    difference of the metered figure (the meter's own where it is metered, else the site's)
    from the reading, in percent of the reading: what reconciles the dashboard with the bill.
    Not tenant-facing."""
    sites = _sites(cfg, view) if scope.everything else []
    empty = EnergyTable(READING_COLUMNS, pd.DataFrame(columns=[c.name for c in READING_COLUMNS]), tz=view.tz)
    if not sites:
        return empty
    subs, _ = _hierarchy_params(cfg)
    df = store.query("energy_readings", lo=view.start, hi=view.end, site=sites[0] if len(sites) == 1 else None,
                     subs=subs)
    df = df[df["site"].isin(sites)]
    if df.empty:
        return empty
    span = (pd.to_datetime(df["period_end"], utc=True)
            - pd.to_datetime(df["period_start"], utc=True)).dt.total_seconds()
    df["category"] = [s if s != "it" else f"it{int(c)}" if pd.notna(c) else "it"
                      for s, c in zip(df["scope"], df["pue_category"])]
    df["covered_pct"] = (100.0 * df["covered_s"].astype(float) / span).round(2)
    metered = df["meter_kwh"].astype(float).where(df["meter_kwh"].notna(), df["site_kwh"].astype(float))
    read = df["read_kwh"].astype(float)
    df["difference_pct"] = (100.0 * (metered - read) / read.where(read > 0)).round(3)
    for c in ("read_kwh", "meter_kwh", "site_kwh"):
        df[c] = df[c].astype(float).round(3)
    for c in ("period_start", "period_end"):
        df[c] = pd.to_datetime(df[c], utc=True)
    return EnergyTable(READING_COLUMNS, df[[c.name for c in READING_COLUMNS]].reset_index(drop=True), tz=view.tz)


# ---- headroom: power now against capacity ------------------------------------------------

HEADROOM_COLUMNS = (
    Col("site", "", "energy.col.site"),
    Col("at", "", "energy.col.at", "time"),
    Col("facility_kw", "kW", "energy.col.facility_kw", "kw"),
    Col("it_kw", "kW", "energy.col.it_kw", "kw"),
    Col("cooling_kw", "kW", "energy.col.cooling_kw", "kw"),
    Col("power_capacity_kw", "kW", "energy.col.power_capacity_kw", "kw"),
    Col("contracted_kw", "kW", "energy.col.contracted_kw", "kw"),
    Col("cooling_capacity_kw", "kW", "energy.col.cooling_capacity_kw", "kw"),
    Col("power_headroom_kw", "kW", "energy.col.power_headroom_kw", "kw"),
    Col("cooling_headroom_kw", "kW", "energy.col.cooling_headroom_kw", "kw"),
    Col("gpus", "GPUs", "energy.col.gpus", "gpus"),
    Col("kw_per_gpu", "kW", "energy.col.kw_per_gpu", "kw"),
    Col("power_headroom_gpus", "GPUs", "energy.col.power_headroom_gpus", "gpus"),
    Col("cooling_kw_per_gpu", "kW", "energy.col.cooling_kw_per_gpu", "kw"),
    Col("cooling_headroom_gpus", "GPUs", "energy.col.cooling_headroom_gpus", "gpus"),
)
HEADROOM_WINDOW = timedelta(hours=24)


def headroom_table(store: Store, cfg: config.Config, view: View | None = None, scope: Scope = EVERYTHING, *,
                   now: datetime | None = None) -> HistoryTable:
    """Per site: power now (the last covered quarter hour's mean kW of the facility, IT and
    cooling meters) against the facility power capacity, the contracted demand (the tighter of
    the two is the power headroom) and the cooling capacity, and the headroom in GPUs of the
    fleet's typical draw: the facility (and cooling) kW per GPU reporting over the last 24
    hours (covered hours' kWh / hours / mean GPUs reporting). Not tenant-facing."""
    now = _now(now)
    tz = view.tz if view is not None else "UTC"
    sites = _sites(cfg, view) if view is not None else [s.id for s in cfg.sites]
    if not scope.everything:
        sites = []
    rows = []
    lo = now - HEADROOM_WINDOW
    q = store.query("energy_quarters", lo=lo - timedelta(hours=1), hi=now, site=None) if sites else pd.DataFrame()
    sh = site_hours(store, cfg, lo.replace(minute=0, second=0, microsecond=0), now, now, sites) if sites else None
    for site in sites:
        cap = site_capacity(cfg)[site]
        fac = it = cool = None
        at = None
        if len(q):
            sq = q[q["site"] == site]
            subs = {m.meter for m in cfg.energy.meters if m.site == site and m.submeter_of}
            sq = sq[~sq["meter"].isin(subs)]
            cat = sh.category.get(site) if sh else None
            done = sq[sq["covered_s"] >= QUARTER_S - COVER_TOLERANCE_S]
            if len(done):
                last = done["quarter"].max()
                lq = sq[sq["quarter"] == last]
                at = last

                def kw(mask: pd.Series, lq: pd.DataFrame = lq) -> float | None:
                    x = lq[mask]
                    return float(x["kwh"].sum() * 4.0) if len(x) else None
                fac = kw(lq["scope"] == "facility")
                it = kw((lq["scope"] == "it") & (lq["pue_category"] == (cat or -1)))
                cool = kw(lq["scope"] == "cooling")
        gpus = kw_gpu = cool_gpu = None
        if sh is not None:
            fr = sh.frame.loc[site] if site in sh.frame.index.get_level_values(0) else pd.DataFrame()
            b = store.query("energy_board_hours", first_hour=lo.replace(minute=0, second=0, microsecond=0), end_ts=now,
                            site=site, cluster=None, tenant=None)
            n_hours = len(fr)
            if len(b) and n_hours:
                gpus = float(b["observed_s"].sum() / 3600.0 / n_hours)
            if gpus and len(fr) and fr["facility_ok"].any():
                kw_gpu = float(fr.loc[fr["facility_ok"], "facility_kwh"].mean()) / gpus
            if gpus and len(fr) and fr["cooling_ok"].any():
                cool_gpu = float(fr.loc[fr["cooling_ok"], "cooling_kwh"].mean()) / gpus
        limits = [x for x in (cap.power_kw, cap.contracted_kw) if x is not None]
        p_head = min(limits) - fac if limits and fac is not None else None
        c_head = cap.cooling_kw - cool if cap.cooling_kw is not None and cool is not None else None
        rows.append({"site": site, "at": at, "facility_kw": fac, "it_kw": it, "cooling_kw": cool,
                     "power_capacity_kw": cap.power_kw, "contracted_kw": cap.contracted_kw,
                     "cooling_capacity_kw": cap.cooling_kw, "power_headroom_kw": p_head,
                     "cooling_headroom_kw": c_head, "gpus": gpus, "kw_per_gpu": kw_gpu,
                     "power_headroom_gpus": p_head / kw_gpu if p_head is not None and kw_gpu else None,
                     "cooling_kw_per_gpu": cool_gpu,
                     "cooling_headroom_gpus": c_head / cool_gpu if c_head is not None and cool_gpu else None})
    out = pd.DataFrame(rows, columns=[c.name for c in HEADROOM_COLUMNS])
    for c in HEADROOM_COLUMNS:
        if c.kind in ("kw", "gpus"):
            out[c.name] = out[c.name].astype(float).round(3)
    if len(out):
        out["at"] = pd.to_datetime(out["at"], utc=True)
    return EnergyTable(HEADROOM_COLUMNS, out, tz=tz)


# ---- live power --------------------------------------------------------------------------

def live_power(store: Store, cfg: config.Config, now: datetime, stale_s: float) -> pd.DataFrame:
    """Per site, the newest power readings within `stale_s`: facility_w, it_w, cooling_w (site
    totals: sub-meters left out; IT of the site's one category), pue_category, pue (an
    instantaneous ratio, for the live page only: the energy page's PUE is from energy) and ts.
    The columns of queries/sql/facility_live.sql, which adds every IT meter of any category."""
    cols = ["site", "facility_w", "it_w", "cooling_w", "pue_category", "pue", "ts"]
    df = store.query("energy_live", now=now, stale_s=stale_s)
    if df.empty:
        return pd.DataFrame(columns=cols)
    subs = {(m.site, m.meter) for m in cfg.energy.meters if m.submeter_of}
    df = df[[(s, m) not in subs for s, m in zip(df["site"], df["meter"])]]
    rows = []
    for site, g in df.groupby("site", sort=True):
        it = g[g["scope"] == "it"]
        cat = cfg.energy.site(str(site)).it_category
        if cat is None and len(it):
            cat = int(it["pue_category"].dropna().max()) if it["pue_category"].notna().any() else None
        if cat is not None:
            it = it[it["pue_category"] == cat]

        def total(x: pd.DataFrame) -> float | None:
            return float(x["power_w"].sum()) if len(x) else None
        fac, it_w = total(g[g["scope"] == "facility"]), total(it)
        rows.append({"site": site, "facility_w": fac, "it_w": it_w, "cooling_w": total(g[g["scope"] == "cooling"]),
                     "pue_category": cat if len(it) else None,
                     "pue": fac / it_w if fac is not None and it_w else None, "ts": g["ts"].max()})
    return pd.DataFrame(rows, columns=cols)
