"""The energy routes, in the history routes' style (api/history.py, docs/api.md; docs/energy.md):

- `GET /api/v1/pue`: PUE per bucket and site from energy, each row with `pue`, `category`,
  `it_estimated`, `facility_kwh`, `it_kwh`, `excluded_hours` (queries/energy.py pue_table).
  Parameters: from, to (ISO 8601 with an offset), step (1h | 1d | 1w | 1mo | all), site, tz,
  category (1 | 2 | 3: another IT category than the site's own), format (json | csv).
- `GET /api/v1/energy`: energy, cost by tariff period, demand charge, carbon and coal per bucket
  and site, cluster or tenant (energy_table). Parameters: from, to, step, by (site | cluster |
  tenant), site, cluster, tenant, tz, format. Tenant rows follow the caller's scope.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Mapping

import config
from queries import energy, history
from queries.history import ParamError, View
from queries.scope import Scope
from queries.store import Store

MAX_RANGE = timedelta(days=3660)
MAX_BUCKETS = 10_000


def _one_of(name: str, value: str | None, options: list[str], default: str | None = None) -> str | None:
    if value is None or value == "":
        return default
    if value not in options:
        raise ParamError(name, "history.expect.one_of", options=", ".join(options))
    return value


def view_of(params: Mapping[str, str], cfg: config.Config, *, route: str) -> tuple[View, str, dict[str, str | None]]:
    """The view, format and route-specific choices (category, by) an energy route asks for."""
    known = {"from", "to", "step", "site", "tz", "format"} | (
        {"category"} if route == "pue" else {"by", "cluster", "tenant"})
    for name in params:
        if name not in known:
            raise ParamError(name, "history.expect.known", names=", ".join(sorted(known)))
    start, end = history.parse_time("from", params.get("from")), history.parse_time("to", params.get("to"))
    fmt = _one_of("format", params.get("format"), ["json", "csv"], "json") or "json"
    step = _one_of("step", params.get("step"), list(history.STEPS), "all") or "all"
    site = _one_of("site", params.get("site"), [s.id for s in cfg.sites])
    tz = history.parse_tz(params.get("tz"), history.default_tz(cfg, site))
    extra: dict[str, str | None] = {}
    cluster = tenant = None
    if route == "pue":
        extra["category"] = _one_of("category", params.get("category"), ["1", "2", "3"])
    else:
        extra["by"] = _one_of("by", params.get("by"), list(energy.ENERGY_BYS), "site")
        cluster = _one_of("cluster", params.get("cluster"), [c.id for c in cfg.clusters])
        tenant = _one_of("tenant", params.get("tenant"),
                         [t.id for t in cfg.tenants] + [history.UNATTRIBUTED, history.UNALLOCATED])
    if end <= start:
        raise ParamError("to", "history.expect.after_from")
    if end - start > MAX_RANGE:
        raise ParamError("from", "history.expect.range_days", days=MAX_RANGE.days)
    if step == "1h" and (end - start) / timedelta(hours=1) > MAX_BUCKETS:
        raise ParamError("step", "history.expect.coarser", n=MAX_BUCKETS)
    v = View(start=start, end=end, step=step, by="site", tz=tz, site=site, cluster=cluster, tenant=tenant)
    return v, fmt, extra


def pue_route(store: Store, cfg: config.Config, params: dict[str, str], now: datetime,
              scope: Scope) -> tuple[history.HistoryTable, str]:
    v, fmt, extra = view_of(params, cfg, route="pue")
    cat = extra.get("category")
    return energy.pue_table(store, cfg, v, scope, now=now, category=int(cat) if cat else None), fmt


def energy_route(store: Store, cfg: config.Config, params: dict[str, str], now: datetime,
                 scope: Scope) -> tuple[history.HistoryTable, str]:
    v, fmt, extra = view_of(params, cfg, route="energy")
    return energy.energy_table(store, cfg, v, scope, by=extra.get("by") or "site", now=now), fmt


ROUTES = [
    ("/api/v1/pue", "pue", pue_route),
    ("/api/v1/energy", "energy", energy_route),
]
