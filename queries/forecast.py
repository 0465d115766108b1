"""Forecasting one daily series: ETS models with bands, chosen by backtest, trusted or not, and
the dates a forecast crosses a capacity. Pure (pandas, statsmodels); no store, no Streamlit.

Why these choices (docs/capacity.md):
- statsmodels' `ETSModel` with additive error and a weekly season, in three forms: additive
  trend (AAA), damped trend (AAdA) and no trend (ANA). Additive-error ETS models of these forms
  have closed-form prediction intervals, so an 18-month band costs no simulation. A damped trend
  under-forecasts a steady trend, an undamped one over-runs a flattening one: the backtest picks.
- The backtest holds out the last 4 and 8 weeks (configurable), fits on what is left and compares
  the forecast with what happened: MAPE (over actual days above zero), MASE (scaled by the
  seasonal-naive error of the fitted part, so series of any size compare) and how often actuals
  fell inside the 80 % and 95 % bands. The model with the lowest mean MASE is chosen and named.
- A forecast is trusted only when the series holds the longest hold-out plus
  `min_seasonal_cycles` seasons and the chosen model's backtest error stays within the
  configured bounds; otherwise it says why (a message key) and pages draw no line.
- Exhaustion is read on a centred moving mean (`smoothing_days`) of the median and of the upper
  band, not on the daily path, whose weekly wiggle crosses a capacity weeks before the level does.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from config.capacity import Section
from i18n import Msg, msg

MODEL_FORMS = {                      # name -> (trend, damped)
    "AAA": ("add", False),
    "AAdA": ("add", True),
    "ANA": (None, False),
}
MODEL_LABELS = {"AAA": "ETS(A,A,A)", "AAdA": "ETS(A,Ad,A)", "ANA": "ETS(A,N,A)"}
POINT_COLUMNS = ("day", "median", "lo80", "hi80", "lo95", "hi95", "median_smooth", "upper_smooth")


@dataclass(frozen=True)
class Backtest:
    """One hold-out: the last `weeks` weeks forecast from what came before."""

    weeks: int
    mape_pct: float | None         # None: no actual day above zero
    mase: float | None             # None: the fitted part has no seasonal-naive error to scale by
    cover80_pct: float
    cover95_pct: float


@dataclass
class Forecast:
    """A fitted series: the chosen model, its backtests, whether it can be trusted (and why not),
    and the daily points over the horizon (empty when it could not be fitted)."""

    model: str | None
    trusted: bool
    reason: Msg | None
    history_days: int
    backtests: list[Backtest] = field(default_factory=list)
    points: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(POINT_COLUMNS)))
    scores: dict[str, float] = field(default_factory=dict)     # model -> mean MASE (the choice)

    @property
    def label(self) -> str | None:
        return MODEL_LABELS.get(self.model) if self.model else None


def smooth(values: pd.Series | np.ndarray, days: int) -> np.ndarray:
    """A centred moving mean over `days` (shorter at the ends)."""
    return pd.Series(np.asarray(values, dtype=float)).rolling(days, center=True, min_periods=1).mean().to_numpy()


def _fit(y: np.ndarray, name: str, season: int):
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    trend, damped = MODEL_FORMS[name]
    model = ETSModel(pd.Series(np.asarray(y, dtype=float)), error="add", trend=trend, damped_trend=damped,
                     seasonal="add", seasonal_periods=season)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # convergence chatter on short or flat series
        return model.fit(disp=False)


def _predict(res, n_fit: int, steps: int) -> pd.DataFrame:
    """Median and the 80 % and 95 % bands for the `steps` days after the fitted ones."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = res.get_prediction(start=n_fit, end=n_fit + steps - 1)
        f80 = pred.summary_frame(alpha=0.2)
        f95 = pred.summary_frame(alpha=0.05)
    out = pd.DataFrame({"median": f95["mean"].to_numpy(), "lo80": f80["pi_lower"].to_numpy(),
                        "hi80": f80["pi_upper"].to_numpy(), "lo95": f95["pi_lower"].to_numpy(),
                        "hi95": f95["pi_upper"].to_numpy()})
    return out.clip(lower=0.0)                  # GPUs and kW are never negative


def mase_scale(y: np.ndarray, season: int) -> float:
    """The in-sample mean absolute error of the seasonal-naive forecast (y[t] = y[t - season])."""
    if len(y) <= season:
        return float("nan")
    return float(np.mean(np.abs(y[season:] - y[:-season])))


def backtest(y: np.ndarray, name: str, weeks: int, season: int) -> Backtest:
    """Fit `name` on all but the last `weeks` weeks and score its forecast of them."""
    h = weeks * 7
    train, test = y[:-h], y[-h:]
    res = _fit(train, name, season)
    p = _predict(res, len(train), h)
    err = np.abs(test - p["median"].to_numpy())
    pos = test > 0
    mape = float(np.mean(err[pos] / test[pos]) * 100.0) if pos.any() else None
    scale = mase_scale(train, season)
    if scale > 1e-9 * (1.0 + float(np.mean(np.abs(train)))):     # not a flat (exactly periodic) fitted part
        mase: float | None = float(np.mean(err) / scale)
    else:                               # a flat fitted part: exact forecasts score 0, others are off the scale
        mase = 0.0 if float(np.mean(err)) < 1e-9 else None
    inside80 = (test >= p["lo80"].to_numpy() - 1e-9) & (test <= p["hi80"].to_numpy() + 1e-9)
    inside95 = (test >= p["lo95"].to_numpy() - 1e-9) & (test <= p["hi95"].to_numpy() + 1e-9)
    return Backtest(weeks, mape, mase, float(inside80.mean() * 100.0), float(inside95.mean() * 100.0))


def min_history_days(cfg: Section) -> int:
    """Days a series needs to be trusted: the longest hold-out plus the required seasonal cycles."""
    return max(cfg.backtest_weeks) * 7 + cfg.min_seasonal_cycles * cfg.season_days


def fit_series(history: pd.Series, cfg: Section, horizon_days: int | None = None) -> Forecast:
    """Forecast a daily series (`history`: values indexed by consecutive days, oldest first; a
    missing day is filled by interpolation) `horizon_days` ahead (default: the configured one)."""
    horizon = horizon_days or cfg.horizon_days
    season = cfg.season_days
    y = pd.Series(history, dtype=float)
    y.index = pd.DatetimeIndex(pd.to_datetime(y.index)).normalize()
    y = y.sort_index()
    n = len(y)
    need = min_history_days(cfg)
    if n < cfg.min_seasonal_cycles * season:
        return Forecast(None, False, msg("capacity.why.short", days=n, cycles=cfg.min_seasonal_cycles,
                                         need=cfg.min_seasonal_cycles * season), n)
    full = pd.date_range(y.index[0], y.index[-1], freq="D")
    values = y.reindex(full).interpolate(limit_direction="both").to_numpy()
    holdouts = [w for w in sorted(cfg.backtest_weeks) if n - w * 7 >= cfg.min_seasonal_cycles * season]
    scores: dict[str, float] = {}
    tests: dict[str, list[Backtest]] = {}
    for name in cfg.models:
        try:
            bt = [backtest(values, name, w, season) for w in holdouts]
        except Exception:               # a form that cannot be fitted to this series is not a candidate
            continue
        tests[name] = bt
        m = [b.mase for b in bt if b.mase is not None]
        scores[name] = float(np.mean(m)) if bt and len(m) == len(bt) else math.inf
    candidates = [k for k in cfg.models if k in tests]
    if not candidates:
        return Forecast(None, False, msg("capacity.why.fit_failed"), n)
    best = min(candidates, key=lambda k: (scores[k], cfg.models.index(k)))
    try:
        res = _fit(values, best, season)
    except Exception:
        return Forecast(None, False, msg("capacity.why.fit_failed"), n)
    pts = _predict(res, len(values), horizon)
    days = pd.date_range(full[-1] + pd.Timedelta(days=1), periods=horizon, freq="D")
    pts.insert(0, "day", [d.date() for d in days])
    # smoothing reads the last days of history too, so the first forecast days are not half a window
    tail = values[-cfg.smoothing_days:]
    med = smooth(np.concatenate([tail, pts["median"].to_numpy()]), cfg.smoothing_days)[len(tail):]
    upper = pts[f"hi{cfg.exhaustion_band}"].to_numpy()
    up = smooth(np.concatenate([tail, upper]), cfg.smoothing_days)[len(tail):]
    pts["median_smooth"], pts["upper_smooth"] = med, up
    bt = tests[best]
    reason: Msg | None = None
    if n < need or len(bt) < len(cfg.backtest_weeks):
        reason = msg("capacity.why.short", days=n, cycles=cfg.min_seasonal_cycles, need=need)
    else:
        worst_mase = max((b.mase for b in bt), key=lambda v: math.inf if v is None else v)
        mapes = [b.mape_pct for b in bt if b.mape_pct is not None]
        if worst_mase is None or worst_mase > cfg.max_mase:
            reason = msg("capacity.why.error_mase", mase="∞" if worst_mase is None else f"{worst_mase:.2f}",
                         bound=f"{cfg.max_mase:g}")
        elif mapes and max(mapes) > cfg.max_mape_pct:
            reason = msg("capacity.why.error_mape", mape=f"{max(mapes):.1f}", bound=f"{cfg.max_mape_pct:g}")
    return Forecast(best, reason is None, reason, n, bt, pts, scores)


def crossing(days: list[date] | pd.Series, values: np.ndarray | pd.Series, capacity: float | None) -> date | None:
    """The first day whose value reaches `capacity` (None: never within the days, or no capacity)."""
    if capacity is None or (isinstance(capacity, float) and math.isnan(capacity)):
        return None
    v = np.asarray(values, dtype=float)
    hit = np.nonzero(v >= capacity)[0]
    return None if not len(hit) else list(days)[int(hit[0])]


def exhaustion(points: pd.DataFrame, capacity: float | None) -> tuple[date | None, date | None]:
    """The days the smoothed median and the smoothed upper band first reach `capacity`."""
    if points.empty:
        return None, None
    return (crossing(points["day"], points["median_smooth"], capacity),
            crossing(points["day"], points["upper_smooth"], capacity))
