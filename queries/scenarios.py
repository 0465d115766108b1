"""What-if scenarios: dated changes applied to the forecast job's baseline, month by month.

A scenario is a name, a title, a horizon in months and a list of changes, each with a date:

- `add_gpus`: N accelerators of a catalogue model join a cluster (their TDP from the catalogue);
- `retire_hosts`: N hosts of a cluster leave (their GPUs leave the capacity);
- `tenant_growth`: a tenant's demand grows g % a month (compounded from the date);
- `tenant_step`: a tenant's demand steps to N GPUs;
- `new_tenant`: a new tenant arrives with N GPUs;
- `pue`: the site's PUE becomes x (e.g. a hall moves to liquid cooling);
- `ppue`: the cooling's partial PUE becomes x ((IT + cooling) / IT);
- `price`: electricity costs x CNY/kWh.

It is saved in `capacity_scenarios` (JSON), never in the centre's configuration, and shared by
its name in the page's URL or `/api/v1/scenario?name=`.

The baseline, per day over the horizon (fleet totals; power summed over the sites):
peak GPU demand (the smoothed median and upper band of `peak_gpus:fleet`), mean allocated GPUs
(`allocated_gpus:fleet`), GPUs owned, IT, facility and cooling kW (the sites' forecasts when the
energy side measures them; else derived from the GPUs: an owned GPU draws its idle IT power, a
demanded one its working power, see config/capacity.py), PUE and cooling ratio (measured or the
configured default), electricity price and grid emission factor. Changes move it:

- GPUs added or retired move capacity, and IT power by their idle draw (TDP x
  it_overhead_factor x idle_fraction); demand does not move with them;
- demand changes move peak and mean demand, and IT power by the working-minus-idle draw of
  each GPU of demand (the fleet's first model);
- facility = IT x PUE, cooling = IT x (pPUE - 1): a pPUE change moves facility by the same kW.

Exhaustion of each resource is the first day its value reaches capacity (the smoothed series;
GPUs also by the upper band). `apply` is pure, so scenarios are tested on hand-made baselines.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

import config
import i18n
from queries import capacity as cap
from queries import measures
from queries.catalogue import arrow_schema
from queries.history import Col, HistoryTable
from queries.store import Store, transaction

KINDS = ("add_gpus", "retire_hosts", "tenant_growth", "tenant_step", "new_tenant", "pue", "ppue", "price")
# what each kind needs beside its date
NEEDS: dict[str, tuple[str, ...]] = {
    "add_gpus": ("cluster", "model", "count"), "retire_hosts": ("cluster", "count"),
    "tenant_growth": ("tenant", "pct"), "tenant_step": ("tenant", "count"), "new_tenant": ("tenant", "count"),
    "pue": ("value",), "ppue": ("value",), "price": ("value",),
}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MONTH_DAYS = 30.4375
MAX_MONTHS = 18
BASELINE = "baseline"
RESOURCES = ("gpus", "it", "facility", "cooling")


class ScenarioError(ValueError):
    """A change or a scenario that cannot be applied: `key` (i18n) and `values` say what."""

    def __init__(self, message_key: str, /, **values: object):
        self.key, self.values = message_key, values
        super().__init__(self.message("en"))

    def message(self, lang: str = i18n.DEFAULT) -> str:
        return i18n.t(self.key, lang, **self.values)


@dataclass(frozen=True)
class Change:
    kind: str
    on: date
    cluster: str | None = None
    model: str | None = None
    tenant: str | None = None
    count: float | None = None
    pct: float | None = None
    value: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(self).items() if v is not None}


@dataclass
class Scenario:
    name: str
    title: str
    changes: list[Change] = field(default_factory=list)
    horizon_months: int = 12


def parse_change(i: int, raw: dict[str, Any], cfg: config.Config) -> Change:
    """One change from its JSON form, checked against the config and the catalogue."""
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ScenarioError("capacity.bad.kind", i=i + 1, got=kind, kinds=", ".join(KINDS))
    try:
        on = date.fromisoformat(str(raw.get("on")))
    except ValueError:
        raise ScenarioError("capacity.bad.date", i=i + 1, got=raw.get("on")) from None
    unknown = set(raw) - {"kind", "on", *NEEDS[kind]}
    if unknown:
        raise ScenarioError("capacity.bad.key", i=i + 1, key=sorted(unknown)[0], kind=kind,
                            keys=", ".join(NEEDS[kind]))
    for k in NEEDS[kind]:
        if raw.get(k) is None or raw.get(k) == "":
            raise ScenarioError("capacity.bad.missing", i=i + 1, key=k, kind=kind)
    values: dict[str, Any] = {}
    for k in ("count", "pct", "value"):
        if k in NEEDS[kind]:
            v = raw[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
                raise ScenarioError("capacity.bad.number", i=i + 1, key=k, got=v)
            values[k] = float(v)
    if "count" in values and (values["count"] < 0 or (kind != "tenant_step" and values["count"] == 0)):
        raise ScenarioError("capacity.bad.number", i=i + 1, key="count", got=raw["count"])
    if kind in ("add_gpus", "retire_hosts") and values["count"] != int(values["count"]):
        raise ScenarioError("capacity.bad.number", i=i + 1, key="count", got=raw["count"])
    if kind == "tenant_growth" and not -100 < values["pct"] <= 1000:
        raise ScenarioError("capacity.bad.number", i=i + 1, key="pct", got=raw["pct"])
    if kind in ("pue", "ppue") and not 1.0 <= values["value"] <= 5.0:
        raise ScenarioError("capacity.bad.ratio", i=i + 1, got=raw["value"])
    if kind == "price" and not 0 <= values["value"] <= 100:
        raise ScenarioError("capacity.bad.number", i=i + 1, key="value", got=raw["value"])
    clusters = {c.id: c for c in cfg.clusters}
    if "cluster" in NEEDS[kind] and raw["cluster"] not in clusters:
        raise ScenarioError("capacity.bad.cluster", i=i + 1, got=raw["cluster"], known=", ".join(clusters))
    if kind == "retire_hosts" and values["count"] > clusters[raw["cluster"]].nodes:
        raise ScenarioError("capacity.bad.hosts", i=i + 1, got=int(values["count"]),
                            have=clusters[raw["cluster"]].nodes, cluster=raw["cluster"])
    models = [m.id for m in cfg.catalogue.models]
    if "model" in NEEDS[kind] and raw["model"] not in models:
        raise ScenarioError("capacity.bad.model", i=i + 1, got=raw["model"], known=", ".join(models))
    tenants = [t.id for t in cfg.tenants]
    if kind in ("tenant_growth", "tenant_step") and raw["tenant"] not in tenants:
        raise ScenarioError("capacity.bad.tenant", i=i + 1, got=raw["tenant"], known=", ".join(tenants))
    if kind == "new_tenant" and (raw["tenant"] in tenants or not NAME_RE.match(str(raw["tenant"]))):
        raise ScenarioError("capacity.bad.new_tenant", i=i + 1, got=raw["tenant"])
    return Change(kind, on, cluster=raw.get("cluster"), model=raw.get("model"), tenant=raw.get("tenant"),
                  **values)


def parse(name: str, title: str, changes: Iterable[dict[str, Any]], horizon_months: int,
          cfg: config.Config) -> Scenario:
    """A checked scenario (ScenarioError naming the change and what was wrong)."""
    if not NAME_RE.match(name or "") or name == BASELINE:
        raise ScenarioError("capacity.bad.name", got=name)
    if not isinstance(horizon_months, int) or not 3 <= horizon_months <= MAX_MONTHS:
        raise ScenarioError("capacity.bad.horizon", got=horizon_months)
    return Scenario(name, title or name, [parse_change(i, c, cfg) for i, c in enumerate(changes)], horizon_months)


# ---- storage ---------------------------------------------------------------------------

def save(store: Store, sc: Scenario, now: datetime, who: str | None = None) -> None:
    """Save (or replace) a scenario under its name."""
    old = load(store, sc.name)
    row = {"name": sc.name, "title": sc.title, "changes": json.dumps([c.to_json() for c in sc.changes]),
           "horizon_months": sc.horizon_months, "created_at": old_created(store, sc.name) if old else now,
           "updated_at": now, "created_by": who}
    table = pa.Table.from_pylist([row], schema=arrow_schema("capacity_scenarios"))
    with store.write_lock, store.cursor() as cur, transaction(cur):
        cur.execute("DELETE FROM capacity_scenarios WHERE name = $n", {"n": sc.name}).fetchall()
        cur.register("new_scenario", table)
        cur.execute("INSERT INTO capacity_scenarios BY NAME SELECT * FROM new_scenario").fetchall()
        cur.unregister("new_scenario")


def old_created(store: Store, name: str) -> datetime | None:
    df = store.query("capacity_scenarios")
    row = df[df["name"] == name]
    return None if row.empty else pd.Timestamp(row["created_at"].iloc[0]).to_pydatetime()


def delete(store: Store, name: str) -> None:
    with store.write_lock, store.cursor() as cur, transaction(cur):
        cur.execute("DELETE FROM capacity_scenarios WHERE name = $n", {"n": name}).fetchall()


def _from_row(r: dict[str, Any]) -> Scenario:
    changes = []
    for c in json.loads(r["changes"]):
        c = dict(c)
        c["on"] = date.fromisoformat(c["on"])
        changes.append(Change(**c))
    return Scenario(r["name"], r["title"] or r["name"], changes, int(r["horizon_months"]))


def saved(store: Store) -> list[Scenario]:
    """Every saved scenario, newest first."""
    return [_from_row(r) for r in store.query("capacity_scenarios").to_dict("records")]


def load(store: Store, name: str) -> Scenario | None:
    return next((s for s in saved(store) if s.name == name), None)


# ---- the baseline ------------------------------------------------------------------------

@dataclass
class Baseline:
    """Daily frame (see module docstring) plus what it was built from."""

    days: pd.DataFrame
    first_model: str | None
    sources: dict[str, str]          # resource -> i18n key of where its baseline came from
    trusted: bool
    capacity_kw: dict[str, float | None]


def _kw(cfg: config.Config, model: str | None) -> tuple[float, float]:
    """(working, idle) IT kW of one GPU of catalogue `model` (700 W when unknown)."""
    spec = next((m for m in cfg.catalogue.models if m.id == model), None)
    tdp = spec.tdp_w if spec is not None else 700.0
    busy = tdp * cfg.capacity.it_overhead_factor / 1000.0
    return busy, busy * cfg.capacity.idle_fraction


def _series_points(store: Store, fits: pd.DataFrame, name: str) -> tuple[pd.DataFrame | None, bool]:
    match = fits[fits["series"] == name]
    if match.empty:
        return None, False
    f = match.iloc[0].to_dict()
    pts = cap.points(store, f)
    return (pts if not pts.empty else None), bool(f["trusted"])


def baseline(store: Store, cfg: config.Config, now: datetime, months: int) -> Baseline:
    """The baseline over `months` from the forecast job's newest run (ScenarioError when the
    job has not fitted the fleet's peak GPUs yet)."""
    fits = cap.latest_fits(store)
    peak, trusted = _series_points(store, fits, "peak_gpus:fleet")
    if peak is None:
        raise ScenarioError("capacity.bad.no_baseline")
    alloc, _ = _series_points(store, fits, "allocated_gpus:fleet")
    n = min(len(peak), int(math.ceil(months * MONTH_DAYS)))
    days = pd.DataFrame({"day": list(peak["day"][:n])})
    days["d_med"] = peak["median_smooth"].to_numpy()[:n]
    days["d_up"] = peak["upper_smooth"].to_numpy()[:n]
    days["a_med"] = alloc["median_smooth"].to_numpy()[:n] if alloc is not None and len(alloc) >= n else days["d_med"]
    owned = float(sum(measures.owned_gpus(cfg, "fleet").values()))
    days["cap_gpus"] = owned
    first_model = measures.cluster_model(cfg, cfg.clusters[0]) if cfg.clusters else None
    busy, idle = _kw(cfg, first_model)
    sources = {"gpus": "capacity.basis.forecast"}
    it: dict[str, np.ndarray] = {}
    for m in ("it_kw_peak", "it_kw_mean", "facility_kw_peak", "facility_kw_mean", "cooling_kw_peak"):
        total: np.ndarray | None = None
        for s in cfg.sites:
            pts, _ = _series_points(store, fits, f"{m}:site:{s.id}")
            if pts is None or len(pts) < n:
                total = None
                break
            v = pts["median_smooth"].to_numpy()[:n]
            total = v if total is None else total + v
        if total is not None:
            it[m] = total
    derived_it = owned * idle + days["d_med"].to_numpy() * (busy - idle)
    derived_it_mean = owned * idle + days["a_med"].to_numpy() * (busy - idle)
    days["it_med"] = it.get("it_kw_peak", derived_it)
    days["it_mean"] = it.get("it_kw_mean", derived_it_mean)
    sources["it"] = "capacity.basis.forecast" if "it_kw_peak" in it else "capacity.basis.derived"
    site = cfg.sites[0].id
    pue, pue_source = cap.site_pue(store, cfg, site, now)
    if "facility_kw_peak" in it:
        ratio = it["facility_kw_peak"] / days["it_med"].replace(0, np.nan)
        days["fac_ratio"] = np.where(days["it_med"] > 0, ratio, pue)
        sources["facility"] = "capacity.basis.forecast"
    else:
        days["fac_ratio"] = pue
        sources["facility"] = f"capacity.basis.pue_{pue_source}"
    if "cooling_kw_peak" in it:
        days["cool_ratio"] = it["cooling_kw_peak"] / days["it_med"].replace(0, np.nan)
        sources["cooling"] = "capacity.basis.forecast"
    else:
        days["cool_ratio"] = days["fac_ratio"] - 1.0
        sources["cooling"] = "capacity.basis.cooling_derived"
    days["price"] = [_price(cfg, site, d) for d in days["day"]]
    energy = cap._energy()              # its factor (grid or coal method), else the site's grid factor
    days["grid"] = (energy.factors(cfg, site).emission_kg_per_kwh if energy is not None and hasattr(energy, "factors")
                    else cfg.sites[0].grid_emission_kg_per_kwh)
    caps = _capacities(cfg)
    tenants: dict[str, pd.DataFrame] = {}
    for t in cfg.tenants:
        pts, _ = _series_points(store, fits, f"peak_gpus:tenant:{t.id}")
        apts, _ = _series_points(store, fits, f"allocated_gpus:tenant:{t.id}")
        if pts is not None and len(pts) >= n:
            days[f"t_med:{t.id}"] = pts["median_smooth"].to_numpy()[:n]
            days[f"t_up:{t.id}"] = pts["upper_smooth"].to_numpy()[:n]
            days[f"t_mean:{t.id}"] = (apts["median_smooth"].to_numpy()[:n] if apts is not None and len(apts) >= n
                                      else days[f"t_med:{t.id}"])
    del tenants
    return Baseline(days, first_model, sources, trusted, caps)


def _price(cfg: config.Config, site: str, d: date) -> float:
    energy = cap._energy()
    if energy is not None and hasattr(energy, "mean_price_kwh"):
        try:
            v = energy.mean_price_kwh(cfg, site, f"{d:%Y-%m}")
            if v is not None:
                return float(v)
        except Exception:
            pass
    return cfg.capacity.default_price_cny_per_kwh


def _capacities(cfg: config.Config) -> dict[str, float | None]:
    """IT, facility and cooling capacity (kW) summed over the sites (None where not known)."""
    energy = cap._energy()
    out: dict[str, float | None] = {"it": None, "facility": None, "cooling": None}
    if energy is None or not hasattr(energy, "site_capacity"):
        return out
    caps = energy.site_capacity(cfg)
    for res, attr in cap.POWER_CAPACITY.items():      # no IT capacity in the energy config: none
        vals = [getattr(caps.get(s.id), attr, None) for s in cfg.sites]
        known = [float(v) for v in vals if v is not None]
        out[res] = float(sum(known)) if vals and len(known) == len(vals) else None
    return out


# ---- applying a scenario (pure) -------------------------------------------------------------

def apply(base: Baseline, changes: Iterable[Change], cfg: config.Config) -> pd.DataFrame:
    """The scenario's daily frame: the baseline's columns moved by each change from its date,
    plus the derived facility and cooling kW (see module docstring)."""
    d = base.days.copy()
    day = np.array(d["day"].tolist(), dtype="datetime64[D]")
    busy, idle = _kw(cfg, base.first_model)
    fac_ratio = d["fac_ratio"].to_numpy(dtype=float).copy()
    cool_ratio = d["cool_ratio"].to_numpy(dtype=float).copy()
    for c in sorted(changes, key=lambda c: c.on):
        on = day >= np.datetime64(c.on, "D")
        k = (day - np.datetime64(c.on, "D")).astype(float) / MONTH_DAYS
        if c.kind == "add_gpus":
            _, idle_new = _kw(cfg, c.model)
            n = float(c.count or 0)
            d.loc[on, "cap_gpus"] += n
            for col in ("it_med", "it_mean"):
                d.loc[on, col] += n * idle_new
        elif c.kind == "retire_hosts":
            cl = cfg.cluster(str(c.cluster))
            n = float(c.count or 0) * cl.gpus_per_node
            _, idle_old = _kw(cfg, measures.cluster_model(cfg, cl))
            d.loc[on, "cap_gpus"] -= n
            for col in ("it_med", "it_mean"):
                d.loc[on, col] -= n * idle_old
        elif c.kind in ("tenant_growth", "tenant_step", "new_tenant"):
            delta = _demand_delta(d, c, on, k)
            for col, dv in zip(("d_med", "d_up", "a_med"), delta):
                d[col] = d[col].to_numpy() + dv
            d["it_med"] = d["it_med"].to_numpy() + delta[0] * (busy - idle)
            d["it_mean"] = d["it_mean"].to_numpy() + delta[2] * (busy - idle)
        elif c.kind == "pue":
            old = fac_ratio.copy()
            fac_ratio[on] = float(c.value or 1.0)
            cool_ratio[on] = np.where(old[on] > 1, cool_ratio[on] * (fac_ratio[on] - 1) / (old[on] - 1),
                                      fac_ratio[on] - 1)
        elif c.kind == "ppue":
            new = float(c.value or 1.0) - 1.0
            fac_ratio[on] = fac_ratio[on] - cool_ratio[on] + new
            cool_ratio[on] = new
        elif c.kind == "price":
            d.loc[on, "price"] = float(c.value or 0.0)
    d["fac_ratio"], d["cool_ratio"] = fac_ratio, cool_ratio
    d["fac_med"] = d["it_med"] * d["fac_ratio"]
    d["fac_mean"] = d["it_mean"] * d["fac_ratio"]
    d["cool_med"] = d["it_med"] * d["cool_ratio"]
    return d


def _demand_delta(d: pd.DataFrame, c: Change, on: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, ...]:
    """The change in (peak median, peak upper, mean allocated) GPU demand a tenant change makes."""
    zero = np.zeros(len(d))
    if c.kind == "new_tenant":
        n = np.where(on, float(c.count or 0), 0.0)
        return n, n, n
    cols = (f"t_med:{c.tenant}", f"t_up:{c.tenant}", f"t_mean:{c.tenant}")
    series = [d[col].to_numpy(dtype=float) if col in d else zero for col in cols]
    if c.kind == "tenant_growth":
        factor = np.where(on, (1.0 + float(c.pct or 0) / 100.0) ** np.maximum(k, 0.0) - 1.0, 0.0)
        return tuple(s * factor for s in series)
    step = float(c.count or 0)                    # tenant_step: its demand becomes this
    return tuple(np.where(on, step - s, 0.0) for s in series)


def exhaustion(frame: pd.DataFrame, base: Baseline) -> dict[str, date | None]:
    """The first day each resource reaches its capacity in a scenario's daily frame."""
    days = list(frame["day"])

    def first(values: np.ndarray, capacity: np.ndarray | float | None) -> date | None:
        if capacity is None:
            return None
        hit = np.nonzero(np.asarray(values, dtype=float) >= np.asarray(capacity, dtype=float))[0]
        return days[int(hit[0])] if len(hit) else None

    return {
        "gpus": first(frame["d_med"].to_numpy(), frame["cap_gpus"].to_numpy()),
        "gpus_upper": first(frame["d_up"].to_numpy(), frame["cap_gpus"].to_numpy()),
        "it": first(frame["it_med"].to_numpy(), base.capacity_kw["it"]),
        "facility": first(frame["fac_med"].to_numpy(), base.capacity_kw["facility"]),
        "cooling": first(frame["cool_med"].to_numpy(), base.capacity_kw["cooling"]),
    }


MONTH_COLUMNS = (
    Col("scenario", "", "capacity.col.scenario"),
    Col("month", "", "capacity.col.month"),
    Col("gpu_demand", "GPUs", "capacity.col.gpu_demand", "gpus"),
    Col("gpu_demand_upper", "GPUs", "capacity.col.gpu_demand_upper", "gpus"),
    Col("gpu_capacity", "GPUs", "capacity.col.gpu_capacity", "count"),
    Col("util_pct", "%", "capacity.col.util", "pct"),
    Col("it_kw", "kW", "capacity.col.it_kw", "kwh"),
    Col("it_capacity_kw", "kW", "capacity.col.it_capacity", "kwh"),
    Col("facility_kw", "kW", "capacity.col.facility_kw", "kwh"),
    Col("facility_capacity_kw", "kW", "capacity.col.facility_capacity", "kwh"),
    Col("cooling_kw", "kW", "capacity.col.cooling_kw", "kwh"),
    Col("cooling_capacity_kw", "kW", "capacity.col.cooling_capacity", "kwh"),
    Col("energy_mwh", "MWh", "capacity.col.energy", "kwh"),
    Col("cost_cny", "CNY", "capacity.col.cost", "money"),
    Col("carbon_t", "t CO2", "capacity.col.carbon", "kwh"),
)


def months(frame: pd.DataFrame, base: Baseline, name: str) -> pd.DataFrame:
    """A scenario's daily frame month by month: peaks of demand and power, capacity at the
    month's end, mean allocated over mean owned, energy from the mean facility kW x 24 h a day,
    its cost at the day's price and its carbon at the grid factor."""
    f = frame.copy()
    f["month"] = [f"{d:%Y-%m}" for d in f["day"]]
    f["kwh"] = f["fac_mean"] * 24.0
    f["cost"] = f["kwh"] * f["price"]
    f["co2"] = f["kwh"] * f["grid"] / 1000.0
    g = f.groupby("month", sort=True)
    out = pd.DataFrame({
        "scenario": name,
        "month": list(g.groups),
        "gpu_demand": g["d_med"].max().round(2).to_numpy(),
        "gpu_demand_upper": g["d_up"].max().round(2).to_numpy(),
        "gpu_capacity": g["cap_gpus"].last().to_numpy(),
        "util_pct": (100.0 * g["a_med"].mean() / g["cap_gpus"].mean()).round(2).to_numpy(),
        "it_kw": g["it_med"].max().round(1).to_numpy(),
        "it_capacity_kw": base.capacity_kw["it"],
        "facility_kw": g["fac_med"].max().round(1).to_numpy(),
        "facility_capacity_kw": base.capacity_kw["facility"],
        "cooling_kw": g["cool_med"].max().round(1).to_numpy(),
        "cooling_capacity_kw": base.capacity_kw["cooling"],
        "energy_mwh": (g["kwh"].sum() / 1000.0).round(3).to_numpy(),
        "cost_cny": g["cost"].sum().round(0).to_numpy(),
        "carbon_t": g["co2"].sum().round(3).to_numpy(),
    })
    return out


EXHAUSTION_COLUMNS = (
    Col("scenario", "", "capacity.col.scenario"),
    Col("gpus", "", "capacity.col.exhaust_gpus"),
    Col("gpus_upper", "", "capacity.col.exhaust_upper"),
    Col("it", "", "capacity.col.exhaust_it"),
    Col("facility", "", "capacity.col.exhaust_facility"),
    Col("cooling", "", "capacity.col.exhaust_cooling"),
)


@dataclass
class Comparison:
    """Scenarios side by side with the baseline: months (long, a scenario column) and dates."""

    months: HistoryTable
    exhaustion: HistoryTable
    base: Baseline


def compare(store: Store, cfg: config.Config, scenarios: list[Scenario], now: datetime,
            months_ahead: int | None = None) -> Comparison:
    """The baseline and each scenario over the longest horizon asked for."""
    horizon = months_ahead or max([s.horizon_months for s in scenarios] or [12])
    base = baseline(store, cfg, now, horizon)
    frames = [(BASELINE, apply(base, [], cfg))] + [(s.name, apply(base, s.changes, cfg)) for s in scenarios]
    m = pd.concat([months(f, base, name) for name, f in frames], ignore_index=True)
    ex = pd.DataFrame([{"scenario": name, **{k: (v.isoformat() if v else None) for k, v in exhaustion(f, base).items()}}
                       for name, f in frames], columns=[c.name for c in EXHAUSTION_COLUMNS])
    tz = cap.fleet_tz(cfg)
    return Comparison(HistoryTable(MONTH_COLUMNS, m, tz=tz), HistoryTable(EXHAUSTION_COLUMNS, ex, tz=tz), base)


def compare_table(store: Store, cfg: config.Config, scenarios: list[Scenario], now: datetime) -> HistoryTable:
    """The API's and CSV's form: the months of the baseline and the scenarios, with each
    scenario's exhaustion dates (and the baseline's sources) in the JSON beside the rows."""
    cmp = compare(store, cfg, scenarios, now)
    about = {"exhaustion": cmp.exhaustion.records(), "sources": cmp.base.sources,
             "baseline_trusted": cmp.base.trusted,
             "scenarios": [{"name": s.name, "title": s.title, "horizon_months": s.horizon_months,
                            "changes": [c.to_json() for c in s.changes]} for s in scenarios]}
    return cap.ForecastTable(cmp.months.columns, cmp.months.rows, tz=cmp.months.tz, about=about)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def default_changes(cfg: config.Config, today: date) -> list[dict[str, Any]]:
    """An example to start from: a quarter from now, 64 accelerators of the first cluster's model
    join it."""
    if not cfg.clusters:
        return []
    c = cfg.clusters[0]
    return [{"kind": "add_gpus", "on": (today + timedelta(days=90)).isoformat(), "cluster": c.id,
             "model": measures.cluster_model(cfg, c), "count": 64}]
