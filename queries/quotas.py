"""Tenants' usage against their quotas (`billing.quotas`: GPUs a tenant deserves on a cluster, a
model or the whole centre).

GPUs held in an hour are the history tiers' allocated GPU-seconds of that hour / 3600
(rollup_group_1h, billing_quota_usage.sql), so a tenant's usage here is the tenant-usage page's
allocated time. Over a range, per quota: the mean and peak GPUs held, hours over quota and the
GPU-hours borrowed above it (idle GPUs lent beyond the deserved share), and the GPU-hours that
stayed idle under it (deserved but not used). Only complete hours count: the hour in progress
would read as mostly idle. GPUs *denied* (jobs queued while under quota) need the scheduler's
queue, which no collector reads; the page says so rather than guess.

A quota is near at `billing.quota_near_pct` of it (peak GPUs held in an hour), over above it.
Every function takes `scope`: a tenant sees its own quotas alone.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

import config
from config.billing import Quota
from queries.billing import BillTable
from queries.history import Col, HistoryTable, View, tenant_names
from queries.scope import EVERYTHING, Scope
from queries.store import Store

HOUR = timedelta(hours=1)

QUOTA_COLUMNS = (
    Col("tenant", "", "billing.col.tenant"),
    Col("scope", "", "billing.col.scope"),
    Col("quota_gpus", "GPUs", "billing.col.quota_gpus", "gpus"),
    Col("mean_gpus", "GPUs", "billing.col.mean_gpus", "gpus"),
    Col("peak_gpus", "GPUs", "billing.col.peak_gpus", "gpus"),
    Col("peak_share_pct", "%", "billing.col.peak_share", "share"),
    Col("hours_over", "h", "billing.col.hours_over", "count"),
    Col("over_gpu_hours", "GPU-h", "billing.col.over_gpu_hours", "hours"),
    Col("idle_under_gpu_hours", "GPU-h", "billing.col.idle_under_gpu_hours", "hours"),
    Col("status", "", "billing.col.quota_status", "word"),
)


def _hours(v: View, now: datetime) -> pd.DatetimeIndex:
    """The complete UTC hours whose start lies in the view's range."""
    last = min(v.end, now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0))
    first = v.first_hour
    if last <= first:
        return pd.DatetimeIndex([], tz="UTC")
    return pd.date_range(first, last - HOUR, freq="h", tz="UTC")


def _quotas(cfg: config.Config, scope: Scope, tenant: str | None) -> list[Quota]:
    only = scope.tenants(tenant)
    return [q for q in cfg.billing.quotas if only is None or q.tenant == only]


def quota_label(q: Quota) -> str | None:
    """The cluster or model a quota is on; None for the whole centre."""
    return q.cluster or q.model


def _usage(store: Store, v: View, now: datetime, only: str | None) -> pd.DataFrame:
    return store.query("billing_quota_usage", first_hour=v.first_hour, end_ts=v.end,
                       now=now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0), tenant=only)


def _held(usage: pd.DataFrame, q: Quota, hours: pd.DatetimeIndex) -> pd.Series:
    rows = usage[usage["tenant"] == q.tenant]
    if q.cluster is not None:
        rows = rows[rows["cluster"] == q.cluster]
    if q.model is not None:
        rows = rows[rows["model"] == q.model]
    per_hour = rows.groupby("bucket")["gpus"].sum()
    per_hour.index = pd.to_datetime(per_hour.index, utc=True)
    return per_hour.reindex(hours, fill_value=0.0).astype(float)


def status(cfg: config.Config, q: Quota, peak: float) -> str:
    if peak > q.gpus + 1e-9:
        return "over"
    if peak >= q.gpus * cfg.billing.quota_near_pct / 100.0 - 1e-9:
        return "near"
    return "ok"


def quota_table(store: Store, cfg: config.Config, v: View, now: datetime | None = None, *,
                scope: Scope = EVERYTHING, tenant: str | None = None) -> BillTable:
    """One row per quota in the scope over the view's range (its tenant filter, or `tenant`):
    quota, mean and peak GPUs held, the peak as a share of the quota, hours over quota, GPU-hours
    borrowed above it and idle under it, and its status (ok, near, over)."""
    now = now or datetime.now(timezone.utc)
    quotas = _quotas(cfg, scope, tenant or v.tenant)
    hours = _hours(v, now)
    usage = _usage(store, v, now, scope.tenants(tenant or v.tenant)) if quotas else None
    rows = []
    for q in quotas:
        held = _held(usage, q, hours) if usage is not None else pd.Series(dtype=float)
        g = held.to_numpy()
        peak = float(g.max()) if len(g) else 0.0
        rows.append({"tenant": q.tenant, "scope": quota_label(q), "quota_gpus": q.gpus,
                     "mean_gpus": round(float(g.mean()), 4) if len(g) else None, "peak_gpus": round(peak, 4),
                     "peak_share_pct": round(100.0 * peak / q.gpus, 3),
                     "hours_over": int((g > q.gpus + 1e-9).sum()),
                     "over_gpu_hours": round(float(np.clip(g - q.gpus, 0, None).sum()), 4),
                     "idle_under_gpu_hours": round(float(np.clip(q.gpus - g, 0, None).sum()), 4),
                     "status": status(cfg, q, peak)})
    df = pd.DataFrame(rows, columns=[c.name for c in QUOTA_COLUMNS])
    return BillTable(QUOTA_COLUMNS, df, tz=v.tz, names=tenant_names(cfg, scope=scope))


def watch_table(store: Store, cfg: config.Config, v: View, now: datetime | None = None, *,
                scope: Scope = EVERYTHING) -> BillTable:
    """The quotas near or over, over first, then by peak share of the quota."""
    t = quota_table(store, cfg, v, now, scope=scope)
    df = t.rows[t.rows["status"].isin(["near", "over"])].copy()
    df["_rank"] = (df["status"] != "over").astype(int)
    df = df.sort_values(["_rank", "peak_share_pct", "tenant"], ascending=[True, False, True]).drop(columns="_rank")
    return BillTable(t.columns, df.reset_index(drop=True), tz=t.tz, names=t.names)


def quota_series(store: Store, cfg: config.Config, v: View, now: datetime, q: Quota, *,
                 scope: Scope = EVERYTHING) -> HistoryTable:
    """GPUs held per complete hour against one quota (empty when the quota is not the scope's)."""
    cols = (Col("bucket", "", "billing.col.bucket", "time"), Col("gpus", "GPUs", "billing.quota.held", "gpus"),
            Col("quota_gpus", "GPUs", "billing.col.quota_gpus", "gpus"))
    if scope.tenant not in (None, q.tenant):
        return HistoryTable(cols, pd.DataFrame(columns=[c.name for c in cols]), tz=v.tz)
    hours = _hours(v, now)
    held = _held(_usage(store, v, now, q.tenant), q, hours)
    df = pd.DataFrame({"bucket": hours, "gpus": held.round(4).to_numpy(), "quota_gpus": q.gpus})
    return HistoryTable(cols, df, tz=v.tz)
