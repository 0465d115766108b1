"""Capacity planning: forecast settings (horizon, trust bounds) and what the forecast job fits.

Written as the `[capacity]` table of centre.toml, or as its own file capacity.toml beside centre.toml
(the same keys at its top level); config/__init__.py validates it with `Section` and then
calls `check` with the rest of the centre, so that every problem names its file and key.

The forecast job (queries/capacity.py) fits every daily series on `fit_every_hours`; a forecast
is trusted only when the series spans `min_seasonal_cycles` weekly cycles beyond the longest
backtest hold-out and its backtest error stays within `max_mase` (and `max_mape_pct`). The
scenario constants say how a what-if turns GPUs into kW (docs/capacity.md "Scenarios"): a GPU at
work draws its catalogue TDP times `it_overhead_factor` (its server's CPUs, fans, NICs and its
share of fabric and storage), an idle one `idle_fraction` of that.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from config.base import Problems, Strict

ModelName = Literal["AAA", "AAdA", "ANA"]
# ETS(error, trend, season): additive error; additive, damped or no trend; weekly season
MODEL_NAMES: tuple[ModelName, ...] = ("AAA", "AAdA", "ANA")


class Arrival(Strict):
    """A cluster of the simulated centre that arrived later: absent from the floor before `on`
    (Beijing midnight), so the history shows it arrive; the inventory counts it as owned now."""

    cluster: str
    on: date


class Section(Strict):
    """The [capacity] settings."""

    fit_every_hours: Annotated[float, Field(ge=1, le=24 * 7, allow_inf_nan=False)] = 6.0
    history_days: Annotated[int, Field(ge=28, le=3660)] = 548          # history a fit reads, at most
    horizon_days: Annotated[int, Field(ge=90, le=548)] = 548           # stored forecast length (3-18 months)
    # the damped trend (AAdA) is a candidate only when listed: it under-forecasts a steady trend and,
    # winning short backtests on noisy series, would flatten a trend that is there
    models: Annotated[list[ModelName], Field(min_length=1)] = ["AAA", "ANA"]
    season_days: Annotated[int, Field(ge=2, le=31)] = 7
    min_seasonal_cycles: Annotated[int, Field(ge=2, le=52)] = 2
    backtest_weeks: Annotated[list[Annotated[int, Field(ge=1, le=26)]], Field(min_length=1)] = [4, 8]
    max_mase: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 2.0
    max_mape_pct: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] = 25.0
    exhaustion_band: Literal[80, 95] = 95          # the upper band whose crossing is the early date
    smoothing_days: Annotated[int, Field(ge=1, le=31)] = 7
    # what-if: GPUs -> kW, and defaults where the energy side has no measurement
    it_overhead_factor: Annotated[float, Field(ge=1, le=5, allow_inf_nan=False)] = 1.5
    idle_fraction: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.3
    default_pue: Annotated[float, Field(ge=1, le=5, allow_inf_nan=False)] = 1.3
    default_price_cny_per_kwh: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 0.7
    calculator_lookback_days: Annotated[int, Field(ge=1, le=365)] = 90
    # the simulated centre: months before the raw back-fill generated straight into the hourly tiers
    simulated_history_days: Annotated[int, Field(ge=0, le=3660)] = 365
    simulated_arrivals: list[Arrival] = []


def check(problems: Problems, path: Path, key: str, section: Section, cf: Any, catalogue: Any) -> None:
    """Cross-checks against the rest of the centre (`cf`: the validated centre file). `key` is the
    prefix of this section's keys in messages ("capacity." inside centre.toml, "" in its own file)."""
    if len(set(section.models)) != len(section.models):
        problems.add(path, f"{key}models", f"a model is listed twice in {section.models}; list each once")
    if len(set(section.backtest_weeks)) != len(section.backtest_weeks):
        problems.add(path, f"{key}backtest_weeks", f"a hold-out is listed twice in {section.backtest_weeks}")
    clusters = [c.id for c in cf.clusters]
    for i, a in enumerate(section.simulated_arrivals):
        if a.cluster not in clusters:
            problems.add(path, f"{key}simulated_arrivals[{i}].cluster",
                         f"unknown cluster {a.cluster!r}; expected one of {clusters}")
    longest = max(section.backtest_weeks) * 7 + section.min_seasonal_cycles * section.season_days
    if longest > section.history_days:
        problems.add(path, f"{key}history_days",
                     f"{section.history_days} days cannot hold the longest backtest ({max(section.backtest_weeks)} "
                     f"weeks) plus {section.min_seasonal_cycles} seasonal cycles ({longest} days); give more days")
