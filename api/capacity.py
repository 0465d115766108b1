"""The capacity routes, in the history routes' style (api/history.py, docs/capacity.md):

- `GET /api/v1/forecast?series=&horizon_days=&format=`: one series' forecast from the forecast
  job's newest run: daily points (median, 80 % and 95 % bands, the smoothed median and upper
  band), and in the JSON beside them the model the backtest chose, trusted or why not, capacity,
  headroom now, the exhaustion dates and the backtest figures. Without `series`: the exhaustion
  table of every resource (`series` names come from it).
- `GET /api/v1/forecast/backtest?format=`: the backtest table of every series.
- `GET /api/v1/scenario?name=&format=`: a saved what-if scenario's months beside the baseline.

Planners' and managers' figures: a tenant's scope is refused (HTTP 400 naming `scope`).
"""

from __future__ import annotations

from datetime import datetime

import config
import queries.scenarios as scenarios
from queries import capacity
from queries.history import FORMATS, HistoryTable, ParamError
from queries.scope import Scope
from queries.store import Store


def _known(params: dict[str, str], names: set[str]) -> str:
    for name in params:
        if name not in names:
            raise ParamError(name, "capacity.expect.known", names=", ".join(sorted(names)))
    fmt = params.get("format") or "json"
    if fmt not in FORMATS:
        raise ParamError("format", "history.expect.one_of", options=", ".join(FORMATS))
    return fmt


def forecast_route(store: Store, cfg: config.Config, params: dict[str, str], now: datetime,
                   scope: Scope) -> tuple[HistoryTable, str]:
    fmt = _known(params, {"series", "horizon_days", "format"})
    capacity.require_planner(scope)
    horizon = capacity.parse_horizon(params.get("horizon_days"), cfg)
    series = params.get("series")
    if not series:
        return capacity.exhaustion_table(store, cfg, scope), fmt
    return capacity.forecast_table(store, cfg, series, horizon, scope), fmt


def backtest_route(store: Store, cfg: config.Config, params: dict[str, str], now: datetime,
                   scope: Scope) -> tuple[HistoryTable, str]:
    fmt = _known(params, {"format"})
    return capacity.backtest_table(store, cfg, scope), fmt


def scenario_route(store: Store, cfg: config.Config, params: dict[str, str], now: datetime,
                   scope: Scope) -> tuple[HistoryTable, str]:
    fmt = _known(params, {"name", "format"})
    capacity.require_planner(scope)
    name = params.get("name")
    if not name:
        raise ParamError("name", "capacity.expect.scenario")
    sc = scenarios.load(store, name)
    if sc is None:
        raise ParamError("name", "capacity.expect.scenario")
    return scenarios.compare_table(store, cfg, [sc], now), fmt


ROUTES = [
    ("/api/v1/forecast", "forecast", forecast_route),
    ("/api/v1/forecast/backtest", "forecast-backtest", backtest_route),
    ("/api/v1/scenario", "scenario", scenario_route),
]
