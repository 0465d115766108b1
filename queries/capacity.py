"""Capacity planning: the daily series, the forecast job, exhaustion and the sizing calculator.

- **Series** (daily, the first site's local calendar): allocated GPUs (the day's mean) and peak
  concurrent GPUs (the day's largest hourly mean) for the fleet, each cluster, model and tenant,
  from the hourly group tier (`capacity_daily_gpus.sql`); IT, facility and cooling kW (the day's
  mean and peak) per site from queries/energy.py `site_power_daily` when the energy side is
  there. A series is named `measure:by[:key]`, e.g. `peak_gpus:cluster:train-a`.
- **The forecast job** (`add_jobs`: `forecast`, every `capacity.fit_every_hours`) fits every series
  with queries/forecast.py and stores the newest run in `capacity_fits` and `capacity_forecasts`,
  so pages, the API, what-if scenarios and reports read results and never fit per view.
- **Exhaustion**: capacity is owned GPUs (the config's inventory: queries/measures.py) per
  fleet, cluster and model, and the site's power and cooling capacity (queries/energy.py
  `site_capacity`); tenants have none. Headroom now is capacity minus the highest measured daily
  value of the last smoothing window: measured, not nameplate.
- **Scope**: forecasts and exhaustion are for planners and managers. They reveal every tenant's
  demand and the fleet's, so a tenant scope is refused (`ScopeRefused`), never filtered.
- **Calculator** (`size_training_run`): a planned run's compute -> accelerators x days, energy,
  cost, carbon, coal, and whether the forecast leaves that many GPUs free.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa

import config
import i18n
from collectors.jobs import Every, JobResult
from queries import forecast as fc
from queries import measures
from queries.catalogue import arrow_schema
from queries.history import Col, HistoryTable, ParamError
from queries.scope import EVERYTHING, Scope
from queries.store import Store, transaction

GPU_MEASURES = ("peak_gpus", "allocated_gpus")
POWER_MEASURES = ("it_kw_peak", "it_kw_mean", "facility_kw_peak", "facility_kw_mean", "cooling_kw_peak",
                  "cooling_kw_mean")
GPU_BYS = ("fleet", "cluster", "model", "tenant")
RESOURCES = ("gpus", "it", "facility", "cooling")
# which site capacity a power series runs out against (queries/energy.py SiteCapacity: power_kw is
# the facility's transformers and feeders, cooling_kw the cooling plant); the energy config has no
# IT (UPS) capacity, so IT power is forecast without an exhaustion date
POWER_CAPACITY = {"facility": "power_kw", "cooling": "cooling_kw"}
HORIZON_MIN, HORIZON_MAX = 90, 548


class ScopeRefused(ParamError):
    """A tenant asked for a planners' figure: forecasts show every tenant's demand."""

    def __init__(self) -> None:
        super().__init__("scope", "capacity.expect.planner")


def require_planner(scope: Scope) -> None:
    """Refuse a tenant scope (see module docstring)."""
    if not scope.everything:
        raise ScopeRefused()


# ---- series ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SeriesId:
    measure: str
    by: str
    key: str | None = None

    @property
    def name(self) -> str:
        return f"{self.measure}:{self.by}" + (f":{self.key}" if self.key is not None else "")

    @property
    def unit(self) -> str:
        return "GPUs" if self.measure in GPU_MEASURES else "kW"

    @property
    def resource(self) -> str:
        """gpus | it | facility | cooling"""
        return "gpus" if self.measure in GPU_MEASURES else self.measure.split("_")[0]

    @classmethod
    def parse(cls, text: str) -> "SeriesId":
        parts = text.split(":", 2)
        if len(parts) < 2 or parts[0] not in GPU_MEASURES + POWER_MEASURES:
            raise ValueError(text)
        if parts[0] in GPU_MEASURES and parts[1] not in GPU_BYS or parts[0] in POWER_MEASURES and parts[1] != "site":
            raise ValueError(text)
        if (parts[1] == "fleet") != (len(parts) == 2):
            raise ValueError(text)
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def series_label(sid: SeriesId, cfg: config.Config, lang: str) -> str:
    """A series in words: "Peak concurrent GPUs · Training A"."""
    what = i18n.t(f"capacity.measure.{sid.measure}", lang)
    if sid.by == "fleet":
        return f"{what} · {i18n.t('capacity.by.fleet', lang)}"
    names = {**{c.id: c.name for c in cfg.clusters}, **{t.id: t.name for t in cfg.tenants},
             **{s.id: s.name for s in cfg.sites}}
    key = sid.key or ""
    if sid.by == "tenant" and key.startswith("_"):
        shown = i18n.t(f"measures.tenant.{key.lstrip('_')}", lang)
    else:
        shown = names.get(key, key)
    return f"{what} · {shown}"


def fleet_tz(cfg: config.Config) -> str:
    """The calendar of the forecasts' days: the first site's."""
    return measures.site_timezone(cfg)


def day_start(d: date, tz: str) -> datetime:
    """A local day's start as a UTC instant."""
    return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


def today(now: datetime, tz: str) -> date:
    return now.astimezone(ZoneInfo(tz)).date()


def _energy() -> Any:
    """queries/energy.py, when the energy side is there (None before it lands)."""
    try:
        from queries import energy
    except ImportError:
        return None
    return energy if hasattr(energy, "site_power_daily") else None


def gpu_daily(store: Store, cfg: config.Config, start: date, end: date) -> dict[SeriesId, pd.Series]:
    """Every GPU series over the local days [start, end): values indexed by day (a day the
    tier holds nothing for is absent; the fit interpolates it)."""
    tz = fleet_tz(cfg)
    df = store.query("capacity_daily_gpus", cap_start=day_start(start, tz), cap_end=day_start(end, tz), tz=tz)
    out: dict[SeriesId, pd.Series] = {}
    if df.empty:
        return out
    df["day"] = pd.to_datetime(df["day"], utc=True).dt.tz_convert(tz).dt.date
    df["allocated_gpus"] = df["gpu_hours"].astype(float) / df["day_hours"].astype(float)
    for (by, key), g in df.groupby(["by_key", df["key"].fillna("")], sort=True):
        k = None if by == "fleet" else str(key)
        days = pd.DatetimeIndex(pd.to_datetime(g["day"]))
        for measure in GPU_MEASURES:
            out[SeriesId(measure, str(by), k)] = pd.Series(g[measure].astype(float).to_numpy(), index=days)
    # a tenant on no day of the range still has a series of zeros: its demand is known to be none
    for t in cfg.tenants:
        for measure in GPU_MEASURES:
            sid = SeriesId(measure, "tenant", t.id)
            if sid not in out and (fleet := out.get(SeriesId(measure, "fleet"))) is not None:
                out[sid] = pd.Series(0.0, index=fleet.index)
    for measure in GPU_MEASURES:
        fleet = out.get(SeriesId(measure, "fleet"))
        if fleet is None:
            continue
        for sid in [s for s in out if s.by == "tenant" and s.measure == measure]:
            out[sid] = out[sid].reindex(fleet.index, fill_value=0.0)      # a day without the tenant: none held
    return out


def power_daily(store: Store, cfg: config.Config, start: date, end: date) -> dict[SeriesId, pd.Series]:
    """IT, facility and cooling kW (daily mean and peak) per site, from queries/energy.py; empty
    when the energy side is not there or measured nothing."""
    energy = _energy()
    if energy is None:
        return {}
    tz = fleet_tz(cfg)
    df = energy.site_power_daily(store, cfg, day_start(start, tz), day_start(end, tz))
    out: dict[SeriesId, pd.Series] = {}
    if df is None or df.empty:
        return out
    for site, g in df.groupby("site", sort=True):
        days = pd.DatetimeIndex(pd.to_datetime(g["day"].map(_as_date)))
        for measure in POWER_MEASURES:
            if measure in g and g[measure].notna().any():
                out[SeriesId(measure, "site", str(site))] = pd.Series(g[measure].astype(float).to_numpy(), index=days)
    return out


def _as_date(v: Any) -> date:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    return pd.Timestamp(v).date()


def all_series(store: Store, cfg: config.Config, now: datetime) -> dict[SeriesId, pd.Series]:
    """Every series the job fits: complete local days up to yesterday, at most history_days."""
    tz = fleet_tz(cfg)
    end = today(now, tz)
    start = end - timedelta(days=cfg.capacity.history_days)
    out = gpu_daily(store, cfg, start, end)
    out.update(power_daily(store, cfg, start, end))
    return out


def capacity_of(cfg: config.Config, sid: SeriesId) -> float | None:
    """What the series runs out against: owned GPUs, or the site's power or cooling capacity."""
    if sid.measure in GPU_MEASURES:
        if sid.by == "tenant":
            return None
        owned = measures.owned_gpus(cfg, sid.by)
        return float(owned.get(sid.key, 0)) if sid.key in owned or sid.by == "fleet" else None
    energy = _energy()
    if energy is None or not hasattr(energy, "site_capacity"):
        return None
    cap = energy.site_capacity(cfg).get(sid.key)
    attr = POWER_CAPACITY.get(sid.resource)
    value = getattr(cap, attr, None) if cap is not None and attr is not None else None
    return None if value is None else float(value)


# ---- the job ---------------------------------------------------------------------------

def _iso_day(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


def fit_one(sid: SeriesId, history: pd.Series, cfg: config.Config, run_at: datetime) -> tuple[dict, pd.DataFrame]:
    """Fit one series: its capacity_fits row and its capacity_forecasts rows."""
    tz = fleet_tz(cfg)
    t0 = time.perf_counter()
    f = fc.fit_series(history, cfg.capacity)
    cap = capacity_of(cfg, sid)
    values = history.sort_index().to_numpy(dtype=float)
    measured = float(np.nanmax(values[-cfg.capacity.smoothing_days:])) if len(values) else None
    med, up = fc.exhaustion(f.points, cap) if f.trusted else (None, None)
    last_day = pd.Timestamp(history.index.max()).date() if len(history) else None
    if cap is not None and measured is not None and measured >= cap and last_day is not None:
        med = up = last_day                       # already there: exhausted now
    first_day = pd.Timestamp(history.index.min()).date() if len(history) else None
    row = {
        "run_at": run_at, "series": sid.name, "measure": sid.measure, "by_key": sid.by, "key": sid.key,
        "unit": sid.unit, "tz": tz, "model": f.model, "trusted": f.trusted,
        "reason_msg": i18n.dumps([f.reason]) if f.reason else None, "history_days": f.history_days,
        "history_start": day_start(first_day, tz) if first_day else None,
        "history_end": day_start(last_day + timedelta(days=1), tz) if last_day else None,
        "backtests": json.dumps([b.__dict__ for b in f.backtests]),
        "scores": json.dumps({k: (None if math.isinf(v) else v) for k, v in f.scores.items()}),
        "capacity": cap, "measured_now": measured,
        "headroom_now": None if cap is None or measured is None else cap - measured,
        "exhaust_median": day_start(med, tz) if med else None, "exhaust_upper": day_start(up, tz) if up else None,
        "band": cfg.capacity.exhaustion_band, "fit_s": time.perf_counter() - t0,
    }
    pts = f.points.copy()
    if not pts.empty:
        pts["day"] = [day_start(d, tz) for d in pts["day"]]
        pts.insert(0, "series", sid.name)
        pts.insert(0, "run_at", run_at)
    return row, pts


def _table(name: str, rows: list[dict] | pd.DataFrame) -> pa.Table:
    schema = arrow_schema(name)
    if isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    return pa.Table.from_pylist(list(rows), schema=schema)


def fit_all(store: Store, cfg: config.Config, now: datetime,
            only: Iterable[str] | None = None) -> JobResult:
    """The forecast job: fit every series (or the named ones), store this run, drop older runs."""
    run_at = now.astimezone(timezone.utc).replace(microsecond=0)
    series = all_series(store, cfg, now)
    wanted = set(only) if only is not None else None
    fits: list[dict] = []
    points: list[pd.DataFrame] = []
    for sid, hist in sorted(series.items(), key=lambda kv: kv[0].name):
        if wanted is not None and sid.name not in wanted:
            continue
        row, pts = fit_one(sid, hist, cfg, run_at)
        fits.append(row)
        if not pts.empty:
            points.append(pts)
    if not fits:
        return JobResult(rows=0, detail="no history to fit yet")
    rows = store.insert("capacity_fits", _table("capacity_fits", fits))
    if points:
        rows += store.insert("capacity_forecasts", _table("capacity_forecasts", pd.concat(points, ignore_index=True)))
    # a full run replaces every older one (a series gone from the history goes too); a partial
    # run only the series it fitted
    names = [r["series"] for r in fits] if wanted is not None else None
    with store.write_lock, store.cursor() as cur, transaction(cur):
        for table in ("capacity_forecasts", "capacity_fits"):
            cur.execute(f"DELETE FROM {table} WHERE run_at < $r AND ($s IS NULL OR list_contains($s, series))",
                        {"r": run_at, "s": names}).fetchall()
    trusted = sum(1 for r in fits if r["trusted"])
    return JobResult(rows=rows, detail=f"{len(fits)} series fitted, {trusted} trusted")


BASIS_KEY = "capacity.fit_basis"
CHECK_EVERY_S = 900.0


def _basis(store: Store, cfg: config.Config, now: datetime) -> str:
    """What a fit depends on beyond the clock: the tier's first hour, how many days it holds (it
    grows while history is generated, back-filled or imported) and the last complete day."""
    with store.cursor() as cur:
        row = cur.execute("SELECT min(bucket), count(DISTINCT floor(epoch(bucket) / 86400)) "
                          "FROM rollup_group_1h").fetchone()
    first, days = (row[0], row[1]) if row else (None, 0)
    return json.dumps({"first": None if first is None else pd.Timestamp(first).isoformat(), "days": int(days or 0),
                       "day": today(now, fleet_tz(cfg)).isoformat()})


def forecast_job(store: Store, cfg: config.Config, now: datetime) -> JobResult:
    """The scheduled job: refit when the last fit is `fit_every_hours` old, or when the history
    it would read changed (a new complete day, older months generated or imported); else a
    check that writes nothing."""
    basis = _basis(store, cfg, now)
    fits = latest_fits(store)
    last = None if fits.empty else pd.Timestamp(fits["run_at"].max()).to_pydatetime()
    due = last is None or now - last >= timedelta(hours=cfg.capacity.fit_every_hours)
    if not due and store.get_kv(BASIS_KEY) == basis:
        return JobResult(rows=0, detail="forecasts current")
    res = fit_all(store, cfg, now)
    store.set_kv(BASIS_KEY, basis)
    return res


def add_jobs(runner: Any, store: Store, cfg: config.Config) -> None:
    """Register `forecast` on a collectors.jobs.JobRunner: at start and every 15 minutes it checks,
    and refits every series when its history changed or fit_every_hours have passed."""
    runner.add("forecast", Every(CHECK_EVERY_S, at_start=True), lambda now: forecast_job(store, cfg, now))


# ---- reading the results ----------------------------------------------------------------

def latest_fits(store: Store) -> pd.DataFrame:
    return store.query("capacity_fits_latest")


def _date(v: Any, tz: str) -> date | None:
    if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    return pd.Timestamp(v).tz_convert(tz).date()


def points(store: Store, fit: dict | pd.Series, horizon_days: int | None = None) -> pd.DataFrame:
    """A fit's daily points (day as a local date), cut to `horizon_days`."""
    df = store.query("capacity_points", cap_series=fit["series"], cap_run_at=fit["run_at"])
    if df.empty:
        return df
    df["day"] = pd.to_datetime(df["day"], utc=True).dt.tz_convert(fit["tz"]).dt.date
    return df.head(horizon_days) if horizon_days else df


def reason_text(fit: dict | pd.Series, lang: str) -> str | None:
    stored = fit.get("reason_msg")
    if stored is None or (isinstance(stored, float) and math.isnan(stored)):
        return None
    return i18n.render(stored, None, lang)


EXHAUSTION_COLUMNS = (
    Col("resource", "", "capacity.col.resource"),
    Col("series", "", "capacity.col.series"),
    Col("key", "", "capacity.col.key"),
    Col("unit", "", "capacity.col.unit"),
    Col("capacity", "", "capacity.col.capacity", "gpus"),
    Col("measured_now", "", "capacity.col.measured_now", "gpus"),
    Col("headroom_now", "", "capacity.col.headroom_now", "gpus"),
    Col("exhaust_median", "", "capacity.col.exhaust_median"),
    Col("exhaust_upper", "", "capacity.col.exhaust_upper"),
    Col("model", "", "capacity.col.model"),
    Col("trusted", "", "capacity.col.trusted"),
    Col("why_not", "", "capacity.col.why_not"),
)


def exhaustion_table(store: Store, cfg: config.Config, scope: Scope = EVERYTHING, *,
                     lang: str = i18n.DEFAULT, peaks_only: bool = True) -> HistoryTable:
    """Time to exhaustion of every resource with a capacity, from the forecast job's newest run:
    one row per series (peak GPUs per fleet/cluster/model, peak IT/facility/cooling kW per site;
    with `peaks_only=False` the daily-mean series too): resource (gpus | it | facility |
    cooling), series, key, unit, capacity, measured_now (highest day of the last smoothing
    window), headroom_now (capacity - measured_now), exhaust_median and exhaust_upper (ISO
    dates the smoothed median and upper band reach capacity; empty: not within the horizon, or
    not trusted), model (the ETS form chosen by backtest), trusted, why_not (in `lang`).
    Refuses a tenant scope (ScopeRefused)."""
    require_planner(scope)
    fits = latest_fits(store)
    rows = []
    for f in fits.to_dict("records"):
        if f["capacity"] is None or (isinstance(f["capacity"], float) and math.isnan(f["capacity"])):
            continue
        if peaks_only and not (f["measure"] == "peak_gpus" or f["measure"].endswith("_peak")):
            continue
        rows.append({
            "resource": SeriesId.parse(f["series"]).resource, "series": f["series"], "key": f["key"],
            "unit": f["unit"], "capacity": f["capacity"], "measured_now": _round(f["measured_now"], 2),
            "headroom_now": _round(f["headroom_now"], 2),
            "exhaust_median": _iso_day(_date(f["exhaust_median"], f["tz"])),
            "exhaust_upper": _iso_day(_date(f["exhaust_upper"], f["tz"])),
            "model": fc.MODEL_LABELS.get(f["model"]) if f["model"] else None,
            "trusted": bool(f["trusted"]), "why_not": reason_text(f, lang),
        })
    df = pd.DataFrame(rows, columns=[c.name for c in EXHAUSTION_COLUMNS])
    return HistoryTable(EXHAUSTION_COLUMNS, df, tz=fleet_tz(cfg), names=_names(cfg))


def _round(v: Any, digits: int) -> float | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return round(float(v), digits)


def _names(cfg: config.Config) -> dict[str, str]:
    return {**{c.id: c.name for c in cfg.clusters}, **{t.id: t.name for t in cfg.tenants},
            **{s.id: s.name for s in cfg.sites}}


BACKTEST_COLUMNS = (
    Col("series", "", "capacity.col.series"),
    Col("model", "", "capacity.col.model"),
    Col("weeks", "", "capacity.col.weeks", "count"),
    Col("mape_pct", "%", "capacity.col.mape", "pct"),
    Col("mase", "", "capacity.col.mase", "pflops"),
    Col("cover80_pct", "%", "capacity.col.cover80", "pct"),
    Col("cover95_pct", "%", "capacity.col.cover95", "pct"),
    Col("trusted", "", "capacity.col.trusted"),
)


def backtest_table(store: Store, cfg: config.Config, scope: Scope = EVERYTHING,
                   series: str | None = None) -> HistoryTable:
    """The backtest figures of the newest run: one row per series and hold-out (weeks): MAPE,
    MASE, and the share of actual days inside the 80 % and 95 % bands. Refuses a tenant scope."""
    require_planner(scope)
    rows = []
    for f in latest_fits(store).to_dict("records"):
        if series is not None and f["series"] != series:
            continue
        for b in json.loads(f["backtests"] or "[]"):
            rows.append({"series": f["series"], "model": fc.MODEL_LABELS.get(f["model"]) if f["model"] else None,
                         "weeks": b["weeks"], "mape_pct": _round(b["mape_pct"], 2), "mase": _round(b["mase"], 3),
                         "cover80_pct": _round(b["cover80_pct"], 1), "cover95_pct": _round(b["cover95_pct"], 1),
                         "trusted": bool(f["trusted"])})
    df = pd.DataFrame(rows, columns=[c.name for c in BACKTEST_COLUMNS])
    return HistoryTable(BACKTEST_COLUMNS, df, tz=fleet_tz(cfg))


POINT_COLUMNS = (
    Col("day", "", "capacity.col.day"),
    Col("median", "", "capacity.col.median", "gpus"),
    Col("lo80", "", "capacity.col.lo80", "gpus"),
    Col("hi80", "", "capacity.col.hi80", "gpus"),
    Col("lo95", "", "capacity.col.lo95", "gpus"),
    Col("hi95", "", "capacity.col.hi95", "gpus"),
    Col("median_smooth", "", "capacity.col.median_smooth", "gpus"),
    Col("upper_smooth", "", "capacity.col.upper_smooth", "gpus"),
)


@dataclass
class ForecastTable(HistoryTable):
    """A forecast's daily points (none when it cannot be trusted) and, in its JSON, what the
    points need beside them: the series, model, trust and why not, capacity, headroom now,
    exhaustion dates and the backtest figures."""

    about: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {**(self.about or {}), **super().to_json()}


def parse_horizon(text: str | None, cfg: config.Config) -> int:
    """horizon_days: 90..548 (3-18 months), at most what the job stored."""
    top = min(HORIZON_MAX, cfg.capacity.horizon_days)
    if text is None or text == "":
        return top
    try:
        n = int(text)
    except ValueError:
        raise ParamError("horizon_days", "capacity.expect.horizon", lo=HORIZON_MIN, hi=top) from None
    if not HORIZON_MIN <= n <= top:
        raise ParamError("horizon_days", "capacity.expect.horizon", lo=HORIZON_MIN, hi=top)
    return n


def forecast_table(store: Store, cfg: config.Config, series: str, horizon_days: int | None = None,
                   scope: Scope = EVERYTHING, *, lang: str = i18n.DEFAULT) -> ForecastTable:
    """One series' forecast from the job's newest run: daily points (day as an ISO date;
    median, lo80, hi80, lo95, hi95, and the smoothed median and upper band exhaustion is read
    on) over `horizon_days` (default: all stored); `about` (merged into its JSON): series,
    label, unit, model and model_label, trusted, why_not, history_days, capacity,
    measured_now, headroom_now, exhaust_median, exhaust_upper, band, backtests, fitted_at.
    An untrusted forecast has no points: it says why instead. ParamError for an unknown series;
    ScopeRefused for a tenant scope."""
    require_planner(scope)
    fits = latest_fits(store)
    match = fits[fits["series"] == series]
    if match.empty:
        known = ", ".join(fits["series"].tolist()[:40]) or "-"
        raise ParamError("series", "capacity.expect.series", known=known)
    f = match.iloc[0].to_dict()
    sid = SeriesId.parse(series)
    pts = points(store, f, horizon_days) if f["trusted"] else pd.DataFrame(columns=[c.name for c in POINT_COLUMNS])
    out = pts[[c.name for c in POINT_COLUMNS]].copy() if not pts.empty else pd.DataFrame(
        columns=[c.name for c in POINT_COLUMNS])
    if not out.empty:
        out["day"] = [d.isoformat() for d in out["day"]]
        for c in POINT_COLUMNS[1:]:
            out[c.name] = out[c.name].astype(float).round(3)
    tz = f["tz"]
    about = {
        "series": series, "label": series_label(sid, cfg, lang), "unit": sid.unit,
        "model": f["model"], "model_label": fc.MODEL_LABELS.get(f["model"]) if f["model"] else None,
        "trusted": bool(f["trusted"]), "why_not": reason_text(f, lang), "history_days": int(f["history_days"]),
        "capacity": _round(f["capacity"], 3), "measured_now": _round(f["measured_now"], 3),
        "headroom_now": _round(f["headroom_now"], 3),
        "exhaust_median": _iso_day(_date(f["exhaust_median"], tz)),
        "exhaust_upper": _iso_day(_date(f["exhaust_upper"], tz)), "band": int(f["band"]),
        "backtests": json.loads(f["backtests"] or "[]"), "fitted_at": pd.Timestamp(f["run_at"]).isoformat(),
    }
    cols = tuple(Col(c.name, sid.unit if c.name != "day" else "", c.label, c.kind) for c in POINT_COLUMNS)
    return ForecastTable(cols, out.reset_index(drop=True), tz=tz, about=about)


def actuals(store: Store, cfg: config.Config, series: str, days: int, now: datetime) -> pd.Series:
    """The measured daily values of a series over the last `days` complete days (for charts)."""
    sid = SeriesId.parse(series)
    tz = fleet_tz(cfg)
    end = today(now, tz)
    start = end - timedelta(days=days)
    got = gpu_daily(store, cfg, start, end) if sid.measure in GPU_MEASURES else power_daily(store, cfg, start, end)
    return got.get(sid, pd.Series(dtype=float))


# ---- the training-job sizing calculator -------------------------------------------------

@dataclass(frozen=True)
class Sizing:
    """A planned training run sized: units (accelerators or servers) x days, energy, cost."""

    units: int                   # accelerators (or servers) needed for the run's days
    days: float
    unit_pflops: float           # peak dense PFLOPS of one unit
    unit_kw: float               # IT kW of one unit at work
    ratio: float                 # effective-compute ratio used
    unit_days: float             # exact unit-days of compute (before rounding units up)
    it_kwh: float
    facility_kwh: float
    pue: float
    cost_cny: float | None
    carbon_kg: float | None
    coal_kgce: float | None


PFLOPS_DAY_FLOPS = 1e15 * 86_400.0         # one PFLOPS for a day: 8.64e19 FLOPs


def pflops_days(flops: float) -> float:
    """Total FLOPs as PFLOPS-days (GPT-3 175B's 3.14e23 FLOPs: 3,634 PFLOPS-days)."""
    return flops / PFLOPS_DAY_FLOPS


def size_training_run(pflops_days: float, unit_pflops: float, unit_kw: float, *, days: float = 1.0,
                      ratio: float = 1.0, pue: float = 1.0, price_per_unit_hour: float | None = None,
                      grid_kg_per_kwh: float | None = None, coal_kgce_per_kwh: float | None = None) -> Sizing:
    """Units x days for `pflops_days` of compute delivered at `ratio` of each unit's peak over
    `days` days; whole units (rounded up) run the whole time, so energy = units x kW x 24 h x
    days, and facility energy = IT x PUE. The check case (a published analysis of GPT-3):
    17,117 PFLOPS-days on 2-PFLOPS, 10-kW servers in one day -> 8,559 servers, at PUE 1.2
    2,464,992 kWh (8,559 x 10 kW x 24 h x 1.2)."""
    if pflops_days <= 0 or unit_pflops <= 0 or days <= 0 or not 0 < ratio <= 1 or unit_kw < 0 or pue < 1:
        raise ValueError("compute, unit PFLOPS and days must be positive, 0 < ratio <= 1, PUE >= 1")
    unit_days = pflops_days / (unit_pflops * ratio)
    units = math.ceil(unit_days / days - 1e-9)
    it = units * unit_kw * 24.0 * days
    fac = it * pue
    hours = units * 24.0 * days
    return Sizing(units, days, unit_pflops, unit_kw, ratio, unit_days, it, fac, pue,
                  None if price_per_unit_hour is None else hours * price_per_unit_hour,
                  None if grid_kg_per_kwh is None else fac * grid_kg_per_kwh,
                  None if coal_kgce_per_kwh is None else fac * coal_kgce_per_kwh)


def delivered_ratio(store: Store, cfg: config.Config, model: str, now: datetime) -> tuple[float | None, str]:
    """The effective-compute ratio this centre delivered for `model` over the last
    calculator_lookback_days: tensor work done / (allocated GPU-seconds x peak TFLOPS), from the
    hourly group tier; with its source in words (None when nothing was allocated)."""
    spec = next((m for m in cfg.catalogue.models if m.id == model), None)
    days = cfg.capacity.calculator_lookback_days
    end = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    df = store.query("capacity_delivered_ratio", cap_start=end - timedelta(days=days), cap_end=end)
    row = df[df["model"] == model]
    source = f"rollup_group_1h, {days} d to {end:%Y-%m-%d %H:00Z}"
    if spec is None or row.empty or not float(row["allocated_s"].iloc[0]):
        return None, source
    ratio = float(row["tflop_s"].iloc[0]) / (float(row["allocated_s"].iloc[0]) * spec.peak_dense_tflops)
    return min(1.0, ratio), source


def site_pue(store: Store, cfg: config.Config, site: str, now: datetime) -> tuple[float, str]:
    """The site's measured PUE over the last 30 days (facility / IT mean kW from the energy side),
    else the configured default; with where it came from."""
    energy = _energy()
    if energy is not None:
        end = today(now, fleet_tz(cfg))
        try:
            tz = fleet_tz(cfg)
            df = energy.site_power_daily(store, cfg, day_start(end - timedelta(days=30), tz), day_start(end, tz))
        except Exception:
            df = None
        if df is not None and not df.empty:
            g = df[df["site"] == site]
            it, fac = g["it_kw_mean"].astype(float).sum(), g["facility_kw_mean"].astype(float).sum()
            if it > 0 and fac >= it:
                return fac / it, "measured"
    return cfg.capacity.default_pue, "default"


def gpus_free(store: Store, cfg: config.Config, model: str, start: date, days: int) -> tuple[float | None, bool]:
    """GPUs of `model` free over [start, start + days) by the forecast: owned minus the highest
    upper band of its peak-GPU series in those days; and whether that forecast is trusted."""
    fits = latest_fits(store)
    match = fits[fits["series"] == f"peak_gpus:model:{model}"]
    owned = measures.owned_gpus(cfg, "model").get(model)
    if match.empty or owned is None:
        return None, False
    f = match.iloc[0].to_dict()
    pts = points(store, f)
    if pts.empty:
        return None, False
    window = pts[(pts["day"] >= start) & (pts["day"] < start + timedelta(days=max(1, days)))]
    if window.empty:
        return None, False
    return float(owned) - float(window["upper_smooth"].max()), bool(f["trusted"])
