"""The measures of docs/history.md, defined once for Python (no Streamlit): pages, the API, CSV
downloads and reports call these; SQL calls the macros of queries/macros/measures.sql, which
state the same definitions (tests/test_measures.py holds both to the same hand-computed numbers).

What lives here and why:
- Owned and installed capacity come from the config's inventory (`clusters[].nodes x
  gpus_per_node`, every accelerator whether it reported or not), never from the database: a
  GPU that never reported is still owned, and its time is no data.
- The ladder (owned -> observed -> available -> allocated -> busy -> useful, and no data =
  owned - observed) from a tier's GPU-second sums, as GPU-hours and as shares of owned.
  `util_pct` is the time-weighted mean over the observed time with a utilisation, never a
  mean of means.
- Calendars: hourly buckets are UTC hours; days, weeks (Monday) and months are the site's
  local calendar, and a local bucket's length is what the calendar says (a DST day is 23 or
  25 hours), so owned GPU-hours of a local day are exact.
- The tiers' tenant keys: a tenant id, `_unattributed` (a label held the device, no lease or
  rule names a tenant) or `_unallocated` (nobody held it), each with its own words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

import i18n
from config import Cluster, Config

UNATTRIBUTED = "_unattributed"
UNALLOCATED = "_unallocated"
MIG_SLICES_PER_GPU = 7
_MIG_SLICES = re.compile(r"^(\d+)g\.")
STEPS = ("1h", "1d", "1w", "1mo")
_LOCAL_UNIT = {"1d": "day", "1w": "week", "1mo": "month"}
BY_KEYS = ("fleet", "site", "cluster", "model")
LADDER = ("owned", "observed", "available", "allocated", "busy", "useful")
UTC = timezone.utc


# ---- device time and weights -----------------------------------------------------

def device_seconds(ts: float, next_ts: float | None, interval_s: float, now: float) -> float:
    """The time a sample at `ts` (epoch seconds) stands for: until its device's next sample
    when that comes within twice the interval, else one interval (the newest sample, or the
    last before a gap), and nothing while the sample is younger than one interval."""
    if next_ts is not None and next_ts - ts <= 2 * interval_s:
        return next_ts - ts
    return interval_s if now - ts >= interval_s else 0.0


def mig_weight(mig_profile: str | None) -> float:
    """A MIG instance's share of its board (slices / 7); a whole GPU, or a profile that does not
    name its slices, weighs 1 (as the SQL macro mig_weight)."""
    m = _MIG_SLICES.match(mig_profile) if mig_profile else None
    return int(m.group(1)) / MIG_SLICES_PER_GPU if m else 1.0


def sample_available(health: int | None, xid_last: int | None) -> bool:
    """Reported and healthy: the exporter's own verdict is not 0 and no XID is standing."""
    return (health is None or health != 0) and (xid_last is None or xid_last == 0)


# ---- inventory: owned and installed ------------------------------------------------

def cluster_model(cfg: Config, cluster: Cluster) -> str:
    """The catalogue model id of a cluster's accelerators (else the name the config gives)."""
    m = cfg.catalogue.lookup(cluster.model)
    return m.id if m else cluster.model


def cluster_key(cfg: Config, cluster: Cluster, by: str) -> str | None:
    """A cluster's key for a `by` grouping: fleet (None), site, cluster or model."""
    if by == "fleet":
        return None
    if by == "site":
        return cluster.site
    if by == "cluster":
        return cluster.id
    if by == "model":
        return cluster_model(cfg, cluster)
    raise ValueError(f"owned capacity is grouped by one of {BY_KEYS}, not {by!r}")


def _clusters(cfg: Config, site: str | None = None, cluster: str | None = None,
              model: str | None = None) -> list[Cluster]:
    return [c for c in cfg.clusters
            if (site is None or c.site == site) and (cluster is None or c.id == cluster)
            and (model is None or cluster_model(cfg, c) == model)]


def owned_gpus(cfg: Config, by: str = "fleet", *, site: str | None = None, cluster: str | None = None,
               model: str | None = None) -> dict[str | None, int]:
    """Accelerators in the inventory per `by` key (fleet: the one key None), after the filters."""
    out: dict[str | None, int] = {}
    for c in _clusters(cfg, site, cluster, model):
        k = cluster_key(cfg, c, by)
        out[k] = out.get(k, 0) + c.nodes * c.gpus_per_node
    return out


def owned_gpu_seconds(cfg: Config, start: datetime, end: datetime, by: str = "fleet",
                      **filters: str | None) -> dict[str | None, float]:
    """Owned GPU-seconds over [start, end) per `by` key."""
    span = max(0.0, (end - start).total_seconds())
    return {k: n * span for k, n in owned_gpus(cfg, by, **filters).items()}


def installed_tflops(cfg: Config, by: str = "fleet", **filters: str | None) -> dict[str | None, float | None]:
    """Installed peak dense TFLOPS per `by` key (None where no model of the key is in the
    catalogue); installed PFLOPS is this / 1000."""
    out: dict[str | None, float | None] = {}
    for c in _clusters(cfg, **filters):
        k = cluster_key(cfg, c, by)
        m = cfg.catalogue.lookup(c.model)
        add = m.peak_dense_tflops * c.nodes * c.gpus_per_node if m else None
        have = out.get(k)
        out[k] = add if k not in out else (None if have is None or add is None else have + add)
    return out


# ---- the ladder --------------------------------------------------------------------

def util_pct(util_s: float | None, util_obs_s: float | None) -> float | None:
    """Time-weighted mean utilisation (percent); None where nothing was observed."""
    return 100.0 * util_s / util_obs_s if util_s is not None and util_obs_s else None


def share_pct(part_s: float | None, owned_s: float | None) -> float | None:
    """`part_s` as a share of owned (percent); None when nothing is owned or no part is known."""
    return 100.0 * part_s / owned_s if part_s is not None and owned_s else None


def delivered_pflops(tflop_s: float, bucket_s: float) -> float:
    """Mean delivered PFLOPS over a bucket of `bucket_s` seconds from its tflop_s sum."""
    return tflop_s / 1000.0 / bucket_s


def gpu_hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600.0


# The same measures over a table's columns at once (numpy arrays of GPU-seconds; NaN where a
# value is missing), for tables built outside SQL (queries/history.py utilisation): each states
# its scalar twin's arithmetic in the same order, so the two give the same floats.

def util_pct_array(util_s: np.ndarray, util_obs_s: np.ndarray) -> np.ndarray:
    """`util_pct` of each pair; NaN where nothing was observed."""
    observed = util_obs_s > 0
    out = np.full(np.shape(util_s), np.nan)
    np.divide(100.0 * util_s, util_obs_s, out=out, where=observed)
    return out


def delivered_pflops_array(tflop_s: np.ndarray, bucket_s: np.ndarray) -> np.ndarray:
    """`delivered_pflops` of each pair."""
    return tflop_s / 1000.0 / bucket_s


def no_data_s_array(owned_s: np.ndarray, observed_s: np.ndarray) -> np.ndarray:
    """No data: owned less observed, never below 0 (devices the inventory does not list); NaN
    where owned is not defined (per tenant, under a tenant filter)."""
    return np.maximum(owned_s - observed_s, 0.0)


def combine_basis(bases: Iterable[str | None]) -> str | None:
    """useful_basis over several rows: the one basis, 'mixed', or None when none counted."""
    seen = {b for b in bases if b is not None}
    return "mixed" if len(seen) > 1 else next(iter(seen), None)


@dataclass(frozen=True)
class Ladder:
    """One group's ladder over a range, in GPU-seconds (weighted); owned None per tenant."""

    owned_s: float | None
    observed_s: float
    available_s: float
    allocated_s: float
    busy_s: float
    useful_s: float
    util_s: float = 0.0
    util_obs_s: float = 0.0
    alloc_idle_s: float = 0.0
    useful_basis: str | None = None

    @classmethod
    def from_sums(cls, sums: Mapping[str, Any], owned_s: float | None) -> "Ladder":
        """From a row of a tier's sums (missing sums are 0)."""
        def f(k: str) -> float:
            v = sums.get(k)
            return 0.0 if v is None else float(v)
        return cls(owned_s, f("observed_s"), f("available_s"), f("allocated_s"), f("busy_s"), f("useful_s"),
                   f("util_s"), f("util_obs_s"), f("alloc_idle_s"), sums.get("useful_basis"))

    @property
    def no_data_s(self) -> float | None:
        """Owned time no device reported for (never negative: a device outside the inventory
        reports time the inventory does not own)."""
        return None if self.owned_s is None else max(0.0, self.owned_s - self.observed_s)

    @property
    def util_pct(self) -> float | None:
        return util_pct(self.util_s, self.util_obs_s)

    def seconds(self) -> dict[str, float | None]:
        return {"owned": self.owned_s, "observed": self.observed_s, "available": self.available_s,
                "allocated": self.allocated_s, "busy": self.busy_s, "useful": self.useful_s,
                "no_data": self.no_data_s}

    def hours(self) -> dict[str, float | None]:
        """Each step (and no data) in GPU-hours."""
        return {k: gpu_hours(v) for k, v in self.seconds().items()}

    def shares(self) -> dict[str, float | None]:
        """Each step (and no data) as a share of owned, in percent."""
        return {k: share_pct(v, self.owned_s) for k, v in self.seconds().items()}

    def losses(self) -> dict[str, float | None]:
        """GPU-hours lost between consecutive steps (the waterfall's bars): owned->observed is
        no data, observed->available unhealthy, available->allocated unallocated,
        allocated->busy idle, busy->useful not useful."""
        s = self.hours()
        out: dict[str, float | None] = {}
        for a, b in zip(LADDER, LADDER[1:]):
            ha, hb = s[a], s[b]
            out[f"{a}->{b}"] = None if ha is None or hb is None else ha - hb
        return out


# ---- money -------------------------------------------------------------------------

def idle_cost_cny(cfg: Config, alloc_idle_s: float, model: str | None) -> float | None:
    """What allocated-but-idle time cost at the model's `[[prices]]` price; None unpriced."""
    price = cfg.price_per_gpu_hour().get(model) if model is not None else None
    return None if price is None else alloc_idle_s / 3600.0 * price


# ---- calendars ---------------------------------------------------------------------

def site_timezone(cfg: Config, site: str | None = None) -> str:
    """The site's time zone (`sites[].timezone`); the first site's when none is named."""
    for s in cfg.sites:
        if site is None or s.id == site:
            return s.timezone
    raise KeyError(f"no site {site!r}; the config has {[s.id for s in cfg.sites]}")


def bucket_start(ts: datetime, step: str, tz: str = "UTC") -> datetime:
    """The start (UTC) of the bucket holding `ts`: a UTC hour for 1h, the local day, week
    (Monday) or month in `tz` for 1d/1w/1mo (as the SQL macros bucket_1h and bucket_local)."""
    ts = ts.astimezone(UTC)
    if step == "1h":
        return ts.replace(minute=0, second=0, microsecond=0)
    zone = ZoneInfo(tz)
    d = ts.astimezone(zone).date()
    if step == "1w":
        d -= timedelta(days=d.weekday())
    elif step == "1mo":
        d = d.replace(day=1)
    elif step != "1d":
        raise ValueError(f"a bucket step is one of {STEPS}, not {step!r}")
    return _local_midnight(d, zone)


def _local_midnight(d: date, zone: ZoneInfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC)


def next_bucket(start: datetime, step: str, tz: str = "UTC") -> datetime:
    """The start of the bucket after the one starting at `start`."""
    if step == "1h":
        return start + timedelta(hours=1)
    zone = ZoneInfo(tz)
    d = start.astimezone(zone).date()
    if step == "1d":
        d += timedelta(days=1)
    elif step == "1w":
        d += timedelta(days=7)
    elif step == "1mo":
        d = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    else:
        raise ValueError(f"a bucket step is one of {STEPS}, not {step!r}")
    return _local_midnight(d, zone)


def buckets(start: datetime, end: datetime, step: str, tz: str = "UTC") -> list[tuple[datetime, datetime]]:
    """The buckets covering [start, end) as (bucket start, end) pairs clipped to the range: a
    bucket's owned time is its clipped length times the GPUs owned."""
    out = []
    b = bucket_start(start, step, tz)
    while b < end:
        n = next_bucket(b, step, tz)
        out.append((max(b, start), min(n, end)))
        b = n
    return out


def bucket_label(ts: datetime, tz: str = "UTC") -> str:
    """A bucket's label: its start in ISO 8601 with the zone's offset."""
    return ts.astimezone(ZoneInfo(tz)).isoformat()


# ---- words -------------------------------------------------------------------------

def tenant_label(cfg: Config, tenant: str, lang: str = i18n.DEFAULT) -> str:
    """A group tier's tenant key in words: the tenant's name, or Unattributed / Unallocated."""
    if tenant == UNATTRIBUTED:
        return i18n.t("measures.tenant.unattributed", lang)
    if tenant == UNALLOCATED:
        return i18n.t("measures.tenant.unallocated", lang)
    for t in cfg.tenants:
        if t.id == tenant:
            return t.name
    return tenant
