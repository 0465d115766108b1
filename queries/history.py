"""History tables meant for people, and the view parameters pages and the API share.

The utilisation and tenant-usage pages, their CSV downloads, the `/api/v1/...` routes and
later the monthly report all build their tables here, outside Streamlit, so each shows the
same rows: a `HistoryTable` holds machine column names with units (what the API and CSV
carry) and an i18n label per column (what a page shows, in the reader's language, numbers
formatted). The figures come from the rollup tiers' sums (docs/history.md) read by the
named queries `history_*.sql` through the SQL macros of queries/macros/measures.sql; the
inventory, prices, calendars and tenant words are queries/measures.py's.

A view (`View`) is a range [start, end), a bucket step, a `by` key, a time zone and the
site/cluster/model/tenant filters. It covers the UTC hours whose start lies in the range
(the tiers' resolution is the hour), each up to `now`: owned and observed time are counted
over the same hours, so shares stay right in the current hour and in a range that is not on
the hour. Parameters arrive as text (URL or API query strings) and are checked here, each
against a whitelist; a bad one raises `ParamError` naming the parameter and what was
expected.

Scope (queries/scope.py): every function here that reads the store, and the API's view, takes
`scope`. For a signed-in tenant (`scope.tenant` set) the tenant filter is forced to that tenant
in the SQL itself, whatever was asked: its rows alone come back (by=tenant one key, devices
only those it held and only for the hours it held them, the heatmap only its devices' held
hours, the tenant lists and names only its own), and the figures that describe the fleet
rather than its own time are left empty: owned, available and no-data GPU-hours and
installed PFLOPS (and so every share of owned).
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import math
import re
import weakref
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import numpy as np
import pandas as pd

import config
import i18n
from queries import measures, rollup
from queries.scope import EVERYTHING, Scope
from queries.store import NamedQuery, Store, named_query

STEPS = ("1h", "1d", "1w", "1mo", "all")
BYS = ("fleet", "site", "cluster", "model", "tenant")
FILTERS = ("site", "cluster", "model", "tenant")
RANGES = ("24h", "7d", "30d", "month", "custom")
FORMATS = ("json", "csv")
UNATTRIBUTED = "_unattributed"
UNALLOCATED = "_unallocated"
MAX_BUCKETS = 10_000           # buckets in one answer beyond this are refused (a coarser step): a year of hours fits
MAX_RANGE = timedelta(days=3660)
HOUR = timedelta(hours=1)
_MONTH_RE = re.compile(r"(\d{4})-(\d{2})\Z")


class ParamError(ValueError):
    """A bad view parameter: `param` names it, `key` (i18n) and `values` say what was expected."""

    def __init__(self, param: str, key: str, **values: object):
        self.param, self.key, self.values = param, key, values
        super().__init__(self.message("en"))

    def message(self, lang: str = i18n.DEFAULT) -> str:
        return i18n.t("history.error.param", lang, param=self.param,
                      expected=i18n.t(self.key, lang, **self.values))


# ---- the view -------------------------------------------------------------------------

@dataclass(frozen=True)
class View:
    start: datetime                     # aware, UTC
    end: datetime                       # aware, UTC; exclusive
    step: str = "all"
    by: str = "fleet"
    tz: str = "UTC"
    site: str | None = None
    cluster: str | None = None
    model: str | None = None
    tenant: str | None = None

    @property
    def filters(self) -> dict[str, str | None]:
        return {"site": self.site, "cluster": self.cluster, "model": self.model, "tenant": self.tenant}

    @property
    def first_hour(self) -> datetime:
        """The first UTC hour whose start lies in the range."""
        floor = self.start.replace(minute=0, second=0, microsecond=0)
        return floor if floor == self.start else floor + HOUR

    def previous(self) -> "View":
        """The range of equal length just before this one (a trend's reference)."""
        span = self.end - self.start
        return replace(self, start=self.start - span, end=self.start)


def default_tz(cfg: config.Config, site: str | None = None) -> str:
    """The site's time zone (the filtered site's, else the first site's)."""
    return measures.site_timezone(cfg, site if site in {s.id for s in cfg.sites} else None)


def choices(cfg: config.Config, store: Store | None = None, *,
            scope: Scope = EVERYTHING) -> dict[str, list[str]]:
    """What each filter accepts: the config's sites, clusters, models (catalogue ids) and tenants
    (plus unattributed), and any value the hourly group tier holds. For a tenant's scope the
    tenants are its own alone, and the tier's values only those of its own rows."""
    out = {"site": [s.id for s in cfg.sites], "cluster": [c.id for c in cfg.clusters],
           "model": list(dict.fromkeys(measures.cluster_model(cfg, c) for c in cfg.clusters)),
           "tenant": ([t.id for t in cfg.tenants] + [UNATTRIBUTED] if scope.tenant is None else [scope.tenant])}
    if store is not None:
        held = store.query("history_keys", tenant=scope.tenant)
        for name in FILTERS:
            for v in held[name].dropna().unique():
                if v not in out[name] and v != UNALLOCATED:
                    out[name].append(str(v))
    return out


def parse_time(param: str, text: str | None) -> datetime:
    """An ISO 8601 time with an offset or Z, as UTC."""
    if not text:
        raise ParamError(param, "history.expect.time")
    try:
        ts = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ParamError(param, "history.expect.time") from None
    if ts.tzinfo is None:
        raise ParamError(param, "history.expect.time")
    return ts.astimezone(timezone.utc)


def parse_tz(text: str | None, default: str) -> str:
    if not text:
        return default
    if text not in _zones():
        raise ParamError("tz", "history.expect.tz")
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ParamError("tz", "history.expect.tz") from None
    return text


def _zones() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = set(available_timezones()) | {"UTC"}
    return _ZONES


_ZONES: set[str] | None = None


def _one_of(param: str, value: str | None, options: Iterable[str], default: str | None = None) -> str | None:
    if value is None or value == "":
        return default
    opts = list(options)
    if value not in opts:
        raise ParamError(param, "history.expect.one_of", options=", ".join(opts))
    return value


def _filters(params: Mapping[str, str], cfg: config.Config, store: Store | None,
             scope: Scope) -> dict[str, str | None]:
    """The filters asked for, each checked against `choices`: a value the config lists costs no
    read, one it does not is looked up in the tier (one short query, not the tier's every key:
    an API answer without filters reads nothing here)."""
    listed = choices(cfg, None, scope=scope)
    out: dict[str, str | None] = {}
    for name in FILTERS:
        value = params.get(name) or None
        if value is not None and value not in listed[name] and not (
                store is not None and bool(store.query("history_key_held", key_name=name, key_value=value,
                                                       tenant=scope.tenant)["held"].iloc[0])):
            _one_of(name, value, choices(cfg, store, scope=scope)[name])      # raises, naming what is accepted
        out[name] = value
    return out


def _check_span(v: View) -> View:
    if v.end <= v.start:
        raise ParamError("to", "history.expect.after_from")
    if v.end - v.start > MAX_RANGE:
        raise ParamError("from", "history.expect.range_days", days=MAX_RANGE.days)
    hours = (v.end - v.start) / HOUR
    per_bucket = {"1h": 1, "1d": 23, "1w": 167, "1mo": 672}.get(v.step)
    if per_bucket is not None and hours / per_bucket > MAX_BUCKETS:
        raise ParamError("step", "history.expect.coarser", n=MAX_BUCKETS)
    return v


def api_view(params: Mapping[str, str], cfg: config.Config, store: Store | None, *,
             route: str, scope: Scope = EVERYTHING) -> tuple[View, str]:
    """The view and format (json | csv) an API call asks for; ParamError on a bad parameter.
    `route`: "utilisation" (from, to, step, by, tz, filters, format) or "tenants" (from, to,
    filters but tenant, format). For a tenant's scope the tenant filter is the scope's own,
    whatever `tenant` says (not checked against the tenants, so an answer never tells which
    other tenants exist)."""
    known = ({"from", "to", "step", "by", "tz", "format", *FILTERS} if route == "utilisation"
             else {"from", "to", "format", "site", "cluster", "model"})
    for name in params:
        if name not in known:
            raise ParamError(name, "history.expect.known", names=", ".join(sorted(known)))
    start, end = parse_time("from", params.get("from")), parse_time("to", params.get("to"))
    fmt = _one_of("format", params.get("format"), FORMATS, "json") or "json"
    step = by = None
    if route == "utilisation":
        step = params.get("step")
        if not step:
            raise ParamError("step", "history.expect.one_of", options=", ".join(STEPS))
        step = _one_of("step", step, STEPS)
        by = _one_of("by", params.get("by"), BYS, "fleet")
    f = _filters({k: v for k, v in params.items() if not (k == "tenant" and scope.tenant is not None)},
                 cfg, store, scope)
    f["tenant"] = scope.tenants(f["tenant"])
    tz = parse_tz(params.get("tz"), default_tz(cfg, f["site"]))
    v = View(start=start, end=end, step=step or "all", by=by or "tenant", tz=tz, **f)
    return _check_span(v), fmt


def shift_month(month: str, months: int) -> str:
    """A calendar month ("YYYY-MM") `months` later (earlier when negative)."""
    k = int(month[:4]) * 12 + int(month[5:7]) - 1 + months
    return f"{k // 12:04d}-{k % 12 + 1:02d}"


def recent_months(now: datetime, tz: str, n: int = 24, *, ended: bool = False) -> list[str]:
    """The last `n` calendar months in zone `tz`, newest first, as "YYYY-MM": from the one `now`
    falls in, or with `ended` from the one before it (months that are over)."""
    local = now.astimezone(ZoneInfo(tz))
    first = shift_month(f"{local.year:04d}-{local.month:02d}", -1 if ended else 0)
    return [shift_month(first, -k) for k in range(n)]


def range_bounds(kind: str, now: datetime, tz: str, *, month: str | None = None,
                 day_from: date | None = None, day_to: date | None = None) -> tuple[datetime, datetime]:
    """A page's named range as [start, end) in UTC. The last 24 h / 7 d / 30 d end with the
    current hour (included, up to now); a calendar month and custom days are the site's
    local calendar (custom: day_from to day_to, both included)."""
    zone = ZoneInfo(tz)
    if kind in ("24h", "7d", "30d"):
        end = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0) + HOUR
        return end - {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}[kind], end
    if kind == "month":
        m = _MONTH_RE.match(month or "")
        if not m or not 1 <= int(m.group(2)) <= 12 or not 2000 <= int(m.group(1)) <= 2100:
            raise ParamError("month", "history.expect.month")
        y, mo = int(m.group(1)), int(m.group(2))
        first = datetime(y, mo, 1, tzinfo=zone)
        nxt = datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=zone)
        return first.astimezone(timezone.utc), nxt.astimezone(timezone.utc)
    if kind == "custom":
        if day_from is None:
            raise ParamError("from", "history.expect.day")
        if day_to is None:
            raise ParamError("to", "history.expect.day")
        if day_to < day_from:
            raise ParamError("to", "history.expect.after_from")
        start = datetime(day_from.year, day_from.month, day_from.day, tzinfo=zone)
        end = datetime(day_to.year, day_to.month, day_to.day, tzinfo=zone) + timedelta(days=1)
        return start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    raise ParamError("range", "history.expect.one_of", options=", ".join(RANGES))


def parse_day(param: str, text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ParamError(param, "history.expect.day") from None


def auto_step(v: View) -> str:
    """A readable step for a chart over the view's range: hours up to 8 days, days up to
    95, then weeks."""
    days = (v.end - v.start) / timedelta(days=1)
    return "1h" if days <= 8 else "1d" if days <= 95 else "1w"


# ---- tables for people ----------------------------------------------------------------

# kind -> how a page shows a value (the CSV and API keep the number)
_FORMATS: dict[str, Callable[[Any], str]] = {
    "hours": lambda v: f"{v:,.1f}",
    "pct": lambda v: f"{v:.1f} %",
    "share": lambda v: f"{v:.1f} %",
    "pflops": lambda v: f"{v:,.2f}",
    "kwh": lambda v: f"{v:,.1f}",
    "money": lambda v: f"{v:,.0f}",
    "count": lambda v: f"{v:,.0f}",
    "gpus": lambda v: f"{v:,.1f}",
    "delta": lambda v: f"{v:+.1f} %",
    "points": lambda v: f"{v:+.1f}",
}


@dataclass(frozen=True)
class Col:
    name: str                   # machine name: the API's and the CSV's
    unit: str                   # "" when none
    label: str                  # i18n key of the page's header
    kind: str = "text"          # text | time | hours | pct | share | pflops | kwh | money | count | gpus | delta


@dataclass
class HistoryTable:
    columns: tuple[Col, ...]
    rows: pd.DataFrame          # one column per Col.name, raw values (numbers, UTC timestamps, ids)
    tz: str = "UTC"
    names: dict[str, str] = field(default_factory=dict)   # id -> display name (tenants, clusters)

    def records(self) -> list[dict[str, Any]]:
        """Rows as JSON values: times in ISO 8601 with the view's offset, NaN as null. Each
        column is converted at once, not value by value (4,320 rows of 15 columns took 0.039 s
        value by value, mostly the time column's Timestamp per value)."""
        out = {col.name: (_iso_times(self.rows[col.name], self.tz) if col.kind == "time"
                          else _json_values(self.rows[col.name])) for col in self.columns}
        names = [c.name for c in self.columns]
        return list(map(dict, map(zip, itertools.repeat(names), zip(*(out[n] for n in names)))))

    def to_json(self) -> dict[str, Any]:
        return {"columns": [{"name": c.name, "unit": c.unit} for c in self.columns], "rows": self.records()}

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([c.name for c in self.columns])
        for rec in self.records():
            w.writerow(["" if rec[c.name] is None else rec[c.name] for c in self.columns])
        return buf.getvalue()

    def for_people(self, lang: str) -> pd.DataFrame:
        """The table as a page shows it: headers in `lang` with their units, numbers formatted,
        ids as names, a missing value as a dash."""
        zone = ZoneInfo(self.tz)
        data: dict[str, list[str]] = {}
        for col in self.columns:
            header = i18n.t(col.label, lang)
            if col.unit:
                header = f"{header} ({col.unit})"
            values = self.rows[col.name] if col.name in self.rows else pd.Series([None] * len(self.rows))
            data[header] = [_shown(col, v, zone, self.names, lang) for v in values]
        return pd.DataFrame(data)


def _iso_times(values: pd.Series, tz: str) -> list[str | None]:
    """A time column as ISO 8601 text in zone `tz` with its offset ("2026-11-20T08:00:00+08:00",
    as datetime.isoformat writes it), NULL as None: the wall times and offsets as arrays."""
    if len(values) == 0:                # numpy's string ops refuse the empty float arrays this would make
        return []
    utc = pd.to_datetime(values, utc=True)
    local = utc.dt.tz_convert(tz)
    wall = local.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    missing = np.isnat(wall)
    if (wall[~missing].astype("int64") % 1_000_000).any():      # sub-second times: isoformat's own way
        return [None if v is pd.NaT else v.isoformat() for v in local]
    offset = wall - utc.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    offset_s = np.where(missing, 0, offset.astype("timedelta64[s]").astype("int64"))
    offsets, which = np.unique(offset_s, return_inverse=True)
    text = np.char.add(np.datetime_as_string(wall, unit="s"),
                       np.array([_offset(int(o)) for o in offsets])[which]).astype(object)
    text[missing] = None
    return text.tolist()


def _offset(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    h, m = divmod(abs(seconds) // 60, 60)
    return f"{sign}{h:02d}:{m:02d}"


def _json_values(values: pd.Series) -> list[Any]:
    """A column's values as JSON's: numbers as Python numbers, a missing value as None."""
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "fiub":    # tolist gives Python numbers
        array = values.to_numpy()
        missing = np.isnan(array) if array.dtype.kind == "f" else None
        if missing is None or not missing.any():
            return array.tolist()
        listed = array.astype(object)
        listed[missing] = None
        return listed.tolist()
    if isinstance(values.dtype, pd.StringDtype):         # str or missing: no numpy scalars to unwrap
        return values.to_numpy(dtype=object, na_value=None).tolist()
    listed = values.astype(object).where(values.notna(), None).tolist()
    return [v.item() if hasattr(v, "item") else v for v in listed]


def _missing(v: object) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def _shown(col: Col, v: Any, zone: ZoneInfo, names: Mapping[str, str], lang: str) -> str:
    if _missing(v):
        return "—"
    if col.kind == "time":
        return pd.Timestamp(v).to_pydatetime().astimezone(zone).strftime("%Y-%m-%d %H:%M")
    if col.kind in _FORMATS:
        return _FORMATS[col.kind](float(v))
    if col.name in ("tenant", "key"):
        return tenant_name(str(v), names, lang)
    return str(v)


def tenant_name(tenant: str, names: Mapping[str, str], lang: str) -> str:
    """A tenant key in words (queries/measures.py `tenant_label`), with the id after a
    configured tenant's name."""
    if tenant in (UNATTRIBUTED, UNALLOCATED):
        return i18n.t(f"measures.tenant.{tenant.lstrip('_')}", lang)
    name = names.get(tenant)
    return f"{name} ({tenant})" if name and name != tenant else tenant


def tenant_names(cfg: config.Config, *, scope: Scope = EVERYTHING) -> dict[str, str]:
    """Configured tenants' names by id; for a tenant's scope its own alone."""
    return {t.id: t.name for t in cfg.tenants if scope.tenant in (None, t.id)}


def scoped(v: View, scope: Scope) -> View:
    """The view with the scope's tenant forced as its tenant filter (unchanged for everything)."""
    return v if scope.tenant is None else replace(v, tenant=scope.tenant)


# what a utilisation row says about the fleet rather than the rows' own time: empty for a tenant
FLEET_FIGURES = ("owned_gpu_hours", "available_gpu_hours", "no_data_gpu_hours", "installed_pflops")


# ---- figures of figures -----------------------------------------------------------------
# The measures themselves come from the SQL macros (queries/macros/measures.sql) in the
# history_*.sql reads; these are the few figures a table derives from two of them.

def share_pct(part: Any, whole: Any) -> pd.Series:
    """queries/measures.py `share_pct` of each pair, missing where there is none."""
    pairs = zip(pd.Series(part, dtype=float), pd.Series(whole, dtype=float))
    return pd.Series([measures.share_pct(None if _missing(p) else p, None if _missing(w) else w)
                      for p, w in pairs], dtype=float)


def change_pct(after: Any, before: Any) -> pd.Series:
    """The change from `before` to `after` in percent of `before` (missing when before is 0)."""
    a, b = pd.Series(after, dtype=float), pd.Series(before, dtype=float)
    return 100.0 * (a - b) / b.where(b > 0)


def idle_cost(cfg: config.Config, idle_hours: pd.Series, model: pd.Series) -> pd.Series:
    """queries/measures.py `idle_cost_cny` of each row; missing for unpriced models."""
    return pd.Series([measures.idle_cost_cny(cfg, float(h) * 3600.0, None if _missing(m) else str(m))
                      for h, m in zip(idle_hours, model)], index=idle_hours.index, dtype=float)


def _round(df: pd.DataFrame, cols: Iterable[str], digits: int) -> None:
    for c in cols:
        df[c] = df[c].astype(float).round(digits)


def _view_params(v: View, now: datetime) -> dict[str, Any]:
    return {"first_hour": v.first_hour, "end_ts": v.end, "now": now}


# ---- utilisation ----------------------------------------------------------------------

BY_COL = {"site": Col("site", "", "history.col.site"), "cluster": Col("cluster", "", "history.col.cluster"),
          "model": Col("model", "", "history.col.model"), "tenant": Col("tenant", "", "history.col.tenant")}

UTIL_COLUMNS = (
    Col("util_pct", "%", "history.col.util", "pct"),
    Col("observed_gpu_hours", "GPU-h", "history.col.observed", "hours"),
    Col("owned_gpu_hours", "GPU-h", "history.col.owned", "hours"),
    Col("available_gpu_hours", "GPU-h", "history.col.available", "hours"),
    Col("allocated_gpu_hours", "GPU-h", "history.col.allocated", "hours"),
    Col("busy_gpu_hours", "GPU-h", "history.col.busy", "hours"),
    Col("useful_gpu_hours", "GPU-h", "history.col.useful", "hours"),
    Col("no_data_gpu_hours", "GPU-h", "history.col.no_data", "hours"),
    Col("useful_basis", "", "history.col.useful_basis"),
    Col("idle_allocated_gpu_hours", "GPU-h", "history.col.idle_allocated", "hours"),
    Col("delivered_pflops", "PFLOPS", "history.col.delivered_pflops", "pflops"),
    Col("installed_pflops", "PFLOPS", "history.col.installed_pflops", "pflops"),
    Col("energy_kwh", "kWh", "history.col.energy_board", "kwh"),
)


def inventory(cfg: config.Config, v: View) -> list[dict[str, Any]]:
    """Owned GPUs and installed TFLOPS per `by` key for the view's filters (queries/measures.py:
    every accelerator in the config's inventory). Not defined per tenant, nor under a tenant
    filter: those keys carry no GPUs."""
    if v.by == "tenant":
        keys = [t.id for t in cfg.tenants] + [UNATTRIBUTED, UNALLOCATED] if v.tenant is None else [v.tenant]
        return [{"key": k, "gpus": None, "tflops": None} for k in keys]
    filters = {"site": v.site, "cluster": v.cluster, "model": v.model}
    gpus: dict[str | None, float] = {k: float(n) for k, n in measures.owned_gpus(cfg, v.by, **filters).items()}
    tflops = measures.installed_tflops(cfg, v.by, **filters)
    if v.by == "site":
        gpus = {s.id: gpus.get(s.id, 0.0) for s in cfg.sites if v.site in (None, s.id)}
    if v.by == "fleet" and not gpus:
        gpus = {None: 0.0}
    return [{"key": k, "gpus": None if v.tenant is not None else n,
             "tflops": None if v.tenant is not None else tflops.get(k, 0.0 if not n else None)}
            for k, n in gpus.items()]


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_HOUR_US = 3_600_000_000
_UTIL_SUMS = ("observed_s", "available_s", "allocated_s", "busy_s", "useful_s", "alloc_idle_s", "util_s",
              "util_obs_s", "tflop_s", "energy_j")


def _us(t: datetime) -> int:
    return (t - _EPOCH) // _US


@functools.lru_cache(maxsize=None)
def _named(name: str) -> NamedQuery:
    return named_query(name)


def _fetch(store: Store, name: str, **params: Any) -> dict[str, np.ndarray]:
    """A named query's columns as numpy arrays (NULL as NaN, or None in a text column): what a
    table built column by column needs, without a DataFrame in between. Parameters as
    queries.store.run checks them."""
    q = _named(name)
    if set(params) != set(q.params):
        raise TypeError(f"query {name!r} takes {', '.join(q.params)}; got {', '.join(sorted(params))}")
    with store.cursor() as cur:
        cols = cur.execute(q.text, params).fetchnumpy()
    return {k: _unmasked(a) for k, a in cols.items()}


def _unmasked(a: np.ndarray) -> np.ndarray:
    if not isinstance(a, np.ma.MaskedArray):
        return a
    text = a.dtype == object
    out = np.array(a.data, dtype=object if text else float)
    out[np.ma.getmaskarray(a)] = None if text else np.nan
    return out


def buckets(v: View, now: datetime) -> tuple[np.ndarray, np.ndarray]:
    """Every output bucket of the view, data or not: its start (epoch microseconds, UTC; 'all':
    the view's start) and the seconds it covers, those of its UTC hours whose start lies in the
    range and before `now`, each up to `now`. A calendar bucket holds the hours whose start its
    local day, week or month holds (queries/measures.py bucket_start, as the SQL's bucket_local);
    a bucket none of the view's hours fall in is not one."""
    first, stop = v.first_hour, min(v.end, now)
    if stop <= first:
        return np.empty(0, np.int64), np.empty(0)
    n = math.ceil((stop - first) / HOUR)
    last_span = min(3600.0, (now - (first + (n - 1) * HOUR)).total_seconds())
    if v.step == "1h":
        spans = np.full(n, 3600.0)
        spans[-1] = last_span
        return _us(first) + np.arange(n, dtype=np.int64) * _HOUR_US, spans
    if v.step == "all":
        return np.array([_us(v.start)], np.int64), np.array([3600.0 * (n - 1) + last_span])
    starts: list[int] = []
    covered: list[float] = []
    b, last = measures.bucket_start(first, v.step, v.tz), first + (n - 1) * HOUR
    while b <= last:
        after = measures.next_bucket(b, v.step, v.tz)
        k0, k1 = max(0, math.ceil((b - first) / HOUR)), min(n, math.ceil((after - first) / HOUR))
        if k1 > k0:
            starts.append(_us(b))
            covered.append(3600.0 * (k1 - k0) - (3600.0 - last_span if k1 == n else 0.0))
        b = after
    return np.array(starts, np.int64), np.array(covered)


def _key_order(k: str | None) -> tuple[bool, str]:
    return (k is not None, k or "")


def utilisation(store: Store, cfg: config.Config, v: View, now: datetime, *,
                scope: Scope = EVERYTHING) -> HistoryTable:
    """The ladder per bucket and `by` key: the API's /utilisation rows and every ladder,
    utilisation and PFLOPS table of the utilisation page. For a tenant's scope: its own held
    time alone, FLEET_FIGURES empty.

    Every bucket of the range (`buckets`) and every key of the inventory (and any other the
    data holds) gets a row, data or not, ordered by bucket, then key (the fleet's None first):
    the SQL sums the tier per bucket and key; the grid, each bucket's span, owned time and the
    measures (queries/measures.py's array forms) are laid here, column by column."""
    v = scoped(v, scope)
    starts, spans = buckets(v, now)
    tiers = _tenant_tier(store)            # the tenant and cluster tiers hold the same sums in fewer rows
    if tiers and v.tenant is None and v.by != "tenant":
        data = _fetch(store, "history_utilisation_clusters", **_view_params(v, now), start_label=v.start,
                      step=v.step, tz=v.tz, by=v.by, site=v.site, cluster=v.cluster, model=v.model)
    elif tiers and v.by in ("fleet", "tenant") and v.site is None and v.cluster is None and v.model is None:
        data = _fetch(store, "history_utilisation_tenants", **_view_params(v, now), start_label=v.start,
                      step=v.step, tz=v.tz, by=v.by, tenant=v.tenant)
    else:
        data = _fetch(store, "history_utilisation", **_view_params(v, now), start_label=v.start, step=v.step,
                      tz=v.tz, by=v.by, **v.filters)
    inv = inventory(cfg, v)
    gpus = {o["key"]: o["gpus"] for o in inv}
    tflops = {o["key"]: o["tflops"] for o in inv}
    data_keys = data["key"].tolist()
    keys = sorted(set(gpus) | set(data_keys), key=_key_order)
    nb, nk = len(starts), len(keys)
    at = np.searchsorted(starts, data["bucket_us"])
    if len(at) and (at.max() >= nb or (starts[np.minimum(at, nb - 1)] != data["bucket_us"]).any()):
        raise RuntimeError(f"history_utilisation gave a bucket outside the view's calendar ({v.step}, {v.tz})")
    index = {k: i for i, k in enumerate(keys)}
    cell = at * nk + np.array([index[k] for k in data_keys], dtype=np.int64)
    sums = {}
    for c in _UTIL_SUMS:
        sums[c] = np.zeros(nb * nk)
        sums[c][cell] = data[c]
    basis = np.full(nb * nk, None, dtype=object)
    basis[cell] = data["useful_basis"]
    span_s = np.repeat(spans, nk)
    owned_s = np.tile(np.array([np.nan if gpus.get(k) is None else gpus[k] for k in keys], dtype=float), nb) * span_s
    installed = np.tile(np.array([np.nan if tflops.get(k) is None else tflops[k] for k in keys], dtype=float), nb)
    hours = {f"{c.removesuffix('_s')}_gpu_hours": np.round(sums[c] / 3600, 4)
             for c in ("observed_s", "available_s", "allocated_s", "busy_s", "useful_s")}
    cols_data: dict[str, Any] = {"bucket": pd.to_datetime(np.repeat(starts, nk), unit="us", utc=True)}
    if v.by != "fleet":
        cols_data[v.by] = np.tile(np.array(keys, dtype=object), nb)
    cols_data.update({
        "util_pct": np.round(measures.util_pct_array(sums["util_s"], sums["util_obs_s"]), 3),
        "observed_gpu_hours": hours["observed_gpu_hours"],
        "owned_gpu_hours": np.round(owned_s / 3600, 4),
        **{k: hours[k] for k in ("available_gpu_hours", "allocated_gpu_hours", "busy_gpu_hours",
                                 "useful_gpu_hours")},
        "no_data_gpu_hours": np.round(measures.no_data_s_array(owned_s, sums["observed_s"]) / 3600, 4),
        "useful_basis": basis,
        "idle_allocated_gpu_hours": np.round(sums["alloc_idle_s"] / 3600, 4),
        "delivered_pflops": np.round(measures.delivered_pflops_array(sums["tflop_s"], span_s), 4),
        "installed_pflops": np.round(installed / 1000, 4),
        "energy_kwh": np.round(sums["energy_j"] / 3.6e6, 4),
    })
    if scope.tenant is not None:
        for name in FLEET_FIGURES:
            cols_data[name] = np.full(nb * nk, np.nan)
    cols = (Col("bucket", "", "history.col.bucket", "time"),
            *((BY_COL[v.by],) if v.by != "fleet" else ()), *UTIL_COLUMNS)
    names = tenant_names(cfg, scope=scope) if v.by == "tenant" else {}
    return HistoryTable(cols, pd.DataFrame(cols_data), tz=v.tz, names=names)


LADDER_STEPS = ("owned", "observed", "available", "allocated", "busy", "useful")


def ladder_shares(row: Mapping[str, Any]) -> dict[str, float | None]:
    """Each ladder step as a share of owned (percent) for one utilisation row."""
    owned = row.get("owned_gpu_hours")
    out: dict[str, float | None] = {}
    for step in (*LADDER_STEPS, "no_data"):
        v = row.get(f"{step}_gpu_hours")
        if owned is None or v is None or _missing(owned) or _missing(v) or not owned:
            out[step] = None
        else:
            out[step] = 100.0 * float(v) / float(owned)
    return out


def ladder_table(util: HistoryTable, by: str) -> HistoryTable:
    """A step-all utilisation table as the ladder per key: GPU-hours and shares of owned."""
    df = util.rows
    keyed = by in df.columns
    out = pd.DataFrame({by: df[by]}) if keyed else pd.DataFrame(index=df.index)
    cols: list[Col] = [BY_COL[by]] if keyed else []
    for step in (*LADDER_STEPS, "no_data"):
        out[f"{step}_gpu_hours"] = df[f"{step}_gpu_hours"]
        cols.append(next(c for c in UTIL_COLUMNS if c.name == f"{step}_gpu_hours"))
    for step in ("available", "allocated", "busy", "useful", "no_data"):
        out[f"{step}_share_pct"] = share_pct(df[f"{step}_gpu_hours"], df["owned_gpu_hours"]).round(3).to_numpy()
        cols.append(Col(f"{step}_share_pct", "%", f"history.col.{step}_share", "share"))
    out["util_pct"] = df["util_pct"]
    cols.append(UTIL_COLUMNS[0])
    return HistoryTable(tuple(cols), out.reset_index(drop=True), tz=util.tz, names=util.names)


def heatmap(store: Store, v: View, now: datetime, *, scope: Scope = EVERYTHING) -> pd.DataFrame:
    """Utilisation (util_pct) by weekday (1 = Monday) x hour of day in the view's time zone; for a
    tenant's scope, over the hours its devices were held by it."""
    v = scoped(v, scope)
    df = store.query("history_heatmap", **_view_params(v, now), tz=v.tz, **v.filters)
    return df.assign(weekday=df["weekday"].astype(int), hour_of_day=df["hour_of_day"].astype(int),
                     util_pct=df["util_pct"].astype(float).round(3))


# ---- tenants --------------------------------------------------------------------------

TENANT_COLUMNS = (
    Col("tenant", "", "history.col.tenant"),
    Col("allocated_gpu_hours", "GPU-h", "history.col.allocated", "hours"),
    Col("busy_gpu_hours", "GPU-h", "history.col.busy", "hours"),
    Col("useful_gpu_hours", "GPU-h", "history.col.useful", "hours"),
    Col("util_pct", "%", "history.col.util_allocated", "pct"),
    Col("peak_gpus", "GPUs", "history.col.peak_gpus", "gpus"),
    Col("energy_kwh", "kWh", "history.col.energy_board", "kwh"),
)
TREND_COLUMNS = (
    Col("allocated_change_pct", "%", "history.col.allocated_change", "delta"),
    Col("util_change_points", "pp", "history.col.util_change", "points"),
)


_TENANT_TIER_FILLED: "weakref.WeakSet[Store]" = weakref.WeakSet()


def _tenant_tier(store: Store) -> bool:
    """Whether rollup_tenant_1h and rollup_cluster_1h are filled (queries/rollup.py: the rollup
    job fills them over the group tiers' span once, then builds them with them): the answers
    they can give (per tenant without a site, cluster or model filter; per fleet, site, cluster
    or model without a tenant filter) read them instead of the hourly group tier. Asked of the
    store until it says yes (a store written by hand, as tests do, never does), then remembered."""
    if store in _TENANT_TIER_FILLED:
        return True
    if store.get_kv(rollup.TENANT_KEY) == rollup.TENANT_FILLED:
        _TENANT_TIER_FILLED.add(store)
        return True
    return False


_TENANT_SUMS = ("allocated_gpu_hours", "busy_gpu_hours", "useful_gpu_hours", "peak_gpus", "energy_kwh",
                "idle_allocated_gpu_hours")


def _tenant_rows(store: Store, cfg: config.Config, v: View, now: datetime, scope: Scope) -> dict[str, np.ndarray]:
    """Per tenant (every configured one and unattributed, then any other the tier holds) the
    history_tenants columns, as arrays: 0 where a tenant has no rows, util_pct NaN."""
    if v.site is None and v.cluster is None and v.model is None and _tenant_tier(store):
        sums = _fetch(store, "history_tenants_all", **_view_params(v, now), tenant=scope.tenant)
        order = np.argsort(sums["tenant"].astype(str), kind="stable")
        sums = {k: a[order] for k, a in sums.items()}
        data = {"tenant": sums["tenant"], "peak_gpus": sums["peak_gpus"],
                "util_pct": measures.util_pct_array(sums["util_s"], sums["util_obs_s"]),
                "energy_kwh": sums["energy_j"] / 3.6e6, "idle_allocated_gpu_hours": sums["alloc_idle_s"] / 3600,
                **{f"{c}_gpu_hours": sums[f"{c}_s"] / 3600 for c in ("allocated", "busy", "useful")}}
    else:
        data = _fetch(store, "history_tenants", **_view_params(v, now), site=v.site, cluster=v.cluster,
                      model=v.model, tenant=scope.tenant)
    every = [t.id for t in cfg.tenants] + [UNATTRIBUTED] if scope.tenant is None else [scope.tenant]
    got = data["tenant"].tolist()
    keys = every + [k for k in got if k not in every]
    where = {k: i for i, k in enumerate(got)}
    at = np.array([where.get(k, len(got)) for k in keys], dtype=np.int64)    # len(got): the missing row
    out: dict[str, np.ndarray] = {"tenant": np.array(keys, dtype=object)}
    for c in (*_TENANT_SUMS, "util_pct"):
        col = np.append(data[c].astype(float), np.nan)[at]
        out[c] = col if c == "util_pct" else np.where(np.isnan(col), 0.0, col)
    return out


def tenants(store: Store, cfg: config.Config, v: View, now: datetime, *, trend: bool = True,
            scope: Scope = EVERYTHING) -> HistoryTable:
    """One row per configured tenant (and any other the tier holds), and one for Unattributed,
    always, even with nothing in the range: the API's /tenants rows and the tenant-usage page's
    table. With `trend`, the change against the previous range of equal length (missing for a
    tenant the previous range does not list). For a tenant's scope, its own row alone."""
    out = _tenant_rows(store, cfg, v, now, scope)
    cols = list(TENANT_COLUMNS)
    if trend:
        prev = _tenant_rows(store, cfg, v.previous(), now, scope)
        where = {k: i for i, k in enumerate(prev["tenant"].tolist())}
        at = np.array([where.get(k, len(where)) for k in out["tenant"].tolist()], dtype=np.int64)
        before = {c: np.append(prev[c], np.nan)[at] for c in ("allocated_gpu_hours", "util_pct")}
        out["allocated_change_pct"] = change_pct(out["allocated_gpu_hours"], before["allocated_gpu_hours"]).to_numpy()
        out["util_change_points"] = out["util_pct"] - before["util_pct"]
        cols.extend(TREND_COLUMNS)
    for c in cols:
        if c.kind in ("hours", "kwh", "gpus"):
            out[c.name] = np.round(out[c.name], 4)
        elif c.kind in ("pct", "delta", "points"):
            out[c.name] = np.round(out[c.name], 3)
    rows = pd.DataFrame({c.name: out[c.name] for c in cols})
    return HistoryTable(tuple(cols), rows, tz=v.tz, names=tenant_names(cfg, scope=scope))


def tenant_daily(store: Store, cfg: config.Config, v: View, tenant: str, now: datetime, *,
                 scope: Scope = EVERYTHING) -> HistoryTable:
    """One tenant's daily series (site-local days): the utilisation rows by tenant (for a
    tenant's scope, its own whatever `tenant` says)."""
    return utilisation(store, cfg, replace(v, step="1d", by="tenant", tenant=scope.tenants(tenant)), now,
                       scope=scope)


# ---- devices: the reclaim list and a tenant's drill-down --------------------------------

DEVICE_COLUMNS = (
    Col("device_id", "", "history.col.device"),
    Col("host", "", "history.col.host"),
    Col("gpu_index", "", "history.col.gpu"),
    Col("cluster", "", "history.col.cluster"),
    Col("model", "", "history.col.model"),
    Col("tenant", "", "history.col.tenant"),
    Col("allocated_gpu_hours", "GPU-h", "history.col.allocated", "hours"),
    Col("busy_gpu_hours", "GPU-h", "history.col.busy", "hours"),
    Col("idle_allocated_gpu_hours", "GPU-h", "history.col.idle_allocated", "hours"),
    Col("util_pct", "%", "history.col.util", "pct"),
    Col("idle_cost_cny", "CNY", "history.col.idle_cost", "money"),
    Col("energy_kwh", "kWh", "history.col.energy_board", "kwh"),
)


def devices(store: Store, cfg: config.Config, v: View, now: datetime, *, tenant: str | None = None,
            idle_only: bool = False, limit: int | None = None, scope: Scope = EVERYTHING) -> HistoryTable:
    """Per device and tenant that held it in the range, most idle first: the reclaim list's
    devices (`idle_only`) or one tenant's devices (`tenant`; `_unallocated`: the time nobody
    held). Held time counts the device's available time, and its busy, useful and idle time
    count while held. Read from rollup_device_tenant_1h, attributed when the group tiers are
    built or regrouped (queries/rollup.py), so a page view attributes nothing. Idle cost: the
    idle GPU-hours at the model's configured price (missing where the model has none). For a
    tenant's scope, the devices it held and only for the hours it held them, whatever
    `tenant` says."""
    g = store.query("history_devices", **_view_params(v, now), tenant=scope.tenants(tenant), site=v.site,
                    cluster=v.cluster, model=v.model)
    if idle_only:
        g = g[g["alloc_idle_s"] > 0]
    g = g.sort_values(["alloc_idle_s", "device_id", "tenant"], ascending=[False, True, True])
    if limit is not None:
        g = g.head(limit)
    out = pd.DataFrame({
        "device_id": g["device_id"], "host": g["host"],
        "gpu_index": g["gpu_index"].map(lambda x: None if _missing(x) else str(int(x))),
        "cluster": g["cluster"], "model": g["model"], "tenant": g["tenant"],
        "allocated_gpu_hours": g["available_s"].astype(float) / 3600.0,
        "busy_gpu_hours": g["busy_s"].astype(float) / 3600.0,
        "idle_allocated_gpu_hours": g["alloc_idle_s"].astype(float) / 3600.0,
        "util_pct": [measures.util_pct(u, o) for u, o in zip(g["util_s"].astype(float), g["util_obs_s"].astype(float))],
        "idle_cost_cny": idle_cost(cfg, g["alloc_idle_s"].astype(float) / 3600.0, g["model"]),
        "energy_kwh": g["energy_j"].astype(float) / 3.6e6,
    })
    _round(out, ["allocated_gpu_hours", "busy_gpu_hours", "idle_allocated_gpu_hours", "energy_kwh"], 4)
    _round(out, ["util_pct", "idle_cost_cny"], 2)
    return HistoryTable(DEVICE_COLUMNS, out.reset_index(drop=True), tz=v.tz, names=tenant_names(cfg, scope=scope))


RECLAIM_TENANT_COLUMNS = (
    Col("tenant", "", "history.col.tenant"),
    Col("allocated_gpu_hours", "GPU-h", "history.col.allocated", "hours"),
    Col("idle_allocated_gpu_hours", "GPU-h", "history.col.idle_allocated", "hours"),
    Col("idle_share_pct", "%", "history.col.idle_share", "share"),
    Col("idle_cost_cny", "CNY", "history.col.idle_cost", "money"),
)


def reclaim_tenants(store: Store, cfg: config.Config, v: View, now: datetime, *,
                    scope: Scope = EVERYTHING) -> HistoryTable:
    """Tenants ranked by allocated-but-idle GPU-hours in the range, with what the idle time
    cost at each model's configured price per GPU-hour (missing when no model is priced); for
    a tenant's scope, its own row alone."""
    v = scoped(v, scope)
    df = store.query("history_idle_by_tenant", **_view_params(v, now), **v.filters)
    df = df.assign(idle_cost_cny=idle_cost(cfg, df["idle_allocated_gpu_hours"], df["model"]))
    g = df.groupby("tenant", sort=False).agg(allocated_gpu_hours=("allocated_gpu_hours", "sum"),
                                             idle_allocated_gpu_hours=("idle_allocated_gpu_hours", "sum"),
                                             idle_cost_cny=("idle_cost_cny", lambda s: s.sum(min_count=1)))
    g = g.reset_index().sort_values(["idle_allocated_gpu_hours", "tenant"], ascending=[False, True])
    g["idle_share_pct"] = share_pct(g["idle_allocated_gpu_hours"], g["allocated_gpu_hours"]).to_numpy()
    out = g[[c.name for c in RECLAIM_TENANT_COLUMNS]].copy()
    _round(out, ["allocated_gpu_hours", "idle_allocated_gpu_hours"], 4)
    _round(out, ["idle_share_pct", "idle_cost_cny"], 2)
    return HistoryTable(RECLAIM_TENANT_COLUMNS, out.reset_index(drop=True), tz=v.tz,
                        names=tenant_names(cfg, scope=scope))
