"""The history tiers (docs/history.md): building them from raw samples, attributing, retention.

`build(store, cfg, now)` is the `rollup` job: it takes the hours the store marked dirty
(`rollup_dirty`, one row per UTC hour a write touched), oldest first, a chunk of hours at a
time (CHUNK_SAMPLES), and rebuilds them: the per-device tiers from raw samples, then the group tiers
from the device tiers with attribution. Every chunk deletes and inserts its buckets in one
transaction, so re-running changes nothing, a late sample updates its bucket and after
downtime one run catches up every hour.

Why the steps are where they are:
- Device time is local: a sample stands until its device's next sample when that comes within
  twice its source's interval, else for one interval (the newest sample and the last one
  before a gap alike, docs/history.md), and for nothing while it is younger than one
  interval. So a run of hours reads raw up to twice the longest interval past its end, and a
  write can change only the hour of its samples and the hour up to that reach before them
  (the store marks both). An hour holding a sample whose next one may still come (younger
  than twice its interval) stays dirty, so the rollup never freezes a half-counted hour.
- A chunk's hours are taken out of rollup_dirty before it is built (Store.take_dirty, under
  the store's write lock), so a write that lands while the chunk is built marks its hour
  again; the taken hours are kept in kv until the chunk commits, so a failed build or a
  stopped process returns them (a rebuild changes nothing). Writes insert an hour once and
  never update it: the store knows which hours it marked and skips those.
- Attribution is a view: the device tiers keep the labels; the group tiers are attributed when
  built (leases by device, then host, at the bucket's start; then the rules and namespaces on
  the distinct label tuples, in Python with collectors.attribution). A changed attribution
  config (its fingerprint in kv) rebuilds the group tiers of every hour the device tiers hold.
  rollup_tenant_1h (per tenant per hour, with the hour's peak of GPUs held at once) is made
  from the two group tiers in the same transaction, so it always matches them.
  rollup_device_tenant_1h (the hourly device tier per device and tenant, for the pages' device
  lists) is attributed in the same pass as rollup_group_1h, so no page view attributes; its own
  fingerprint key fills it alone on a store whose device tiers predate it (migration 013).
- In the device tiers, `busy_s`, `useful_s` and `alloc_idle_s` count the device's available
  time whether a label held it or not: a lease may hold an unlabelled device, and only
  attribution knows. The group tiers count them only while a tenant, label or lease held it.

`retention(store, cfg, now)` is the `retention` job; `rollup_status(store)` the figures for
/healthz and the Sources page; `add_jobs(runner, store, cfg)` registers both jobs.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb
import pyarrow as pa

from collectors.attribution import Attributor
from collectors.jobs import Calendar, Every, JobResult
from config import Config
from queries.store import Store, transaction

# Hours rebuilt per transaction: as many as hold about CHUNK_SAMPLES raw samples (by the
# devices known and the collection interval), 1 to MAX_CHUNK_HOURS. Large chunks cost memory
# and time (the window over a chunk's samples is sorted at once): at 1,024 GPUs every 15 s
# (245,760 samples an hour), 24 h rebuilt an hour at a time took 14.8 s and added 190 MiB to
# the process's peak, two hours at a time 18.0 s and 233 MiB, 24 hours at a time 17.9 s and
# 1,030 MiB. Small chunks cost a fixed 0.1-0.2 s each, which sparse history (back-filled
# every 15 minutes) would pay hundreds of times over.
CHUNK_SAMPLES = 300_000
MAX_CHUNK_HOURS = 24
HOUR = timedelta(hours=1)
FINGERPRINT_KEY = "rollup.attribution"
DEVICE_TIERS = ("rollup_device_5m", "rollup_device_1h")
GROUP_TIERS = ("rollup_group_5m", "rollup_group_1h")
TIERS = ("rollup_device_5m", "rollup_device_1h", "rollup_group_5m", "rollup_group_1h")
# Per device and tenant per hour, attributed with the group tiers (the reclaim list's devices, a
# tenant's drill-down): not in TIERS, whose four the status and benchmarks report.
DEVICE_TENANT_TIER = "rollup_device_tenant_1h"
DEVICE_TENANT_KEY = "rollup.device_tenant"
# Per tenant per hour with the hour's peak (migration 019), built from the group tiers with
# them: the per-tenant answers without a site, cluster or model filter read it. Its key in kv
# says it has been filled over the group tier's span (a store whose group tiers predate it).
TENANT_TIER = "rollup_tenant_1h"
CLUSTER_TIER = "rollup_cluster_1h"      # per site, cluster and model per hour: built and filled with it
TENANT_KEY = "rollup.tenant_1h"
TENANT_FILLED = "filled+clusters"         # both tiers (a store filled before rollup_cluster_1h: again)
UNATTRIBUTED = "_unattributed"     # a label held the device but no lease or rule names a tenant
UNALLOCATED = "_unallocated"       # nobody held it

_SUMS = ("samples", "observed_s", "available_s", "allocated_s", "busy_s", "useful_s", "alloc_idle_s",
         "util_s", "util_obs_s", "tflop_s", "energy_j")
_LABELS = ("namespace", "pod", "job", "job_user")


def source_intervals(cfg: Config) -> dict[str, float]:
    """Each configured source's collection interval (its own `interval_s` where its kind has
    one, else `collection.interval_s`); samples of other sources use the collection's."""
    out = {}
    for src in cfg.sources:
        own = getattr(src.options, "interval_s", None) if src.kind_spec else None
        out[src.name] = float(own) if own else cfg.collection.interval_s
    return out


def longest_interval(cfg: Config) -> float:
    return max([cfg.collection.interval_s, *source_intervals(cfg).values()])


def reach_s(cfg: Config) -> float:
    """How far after a sample its successor still counts (twice the longest interval, the
    simulated back-fill's step included): the store marks the hour that far before a write."""
    step = float(cfg.simulator.backfill_step_s) if cfg.simulated else 0.0
    return 2 * max(longest_interval(cfg), step)


def backfill_span(store: Store, cfg: Config) -> tuple[datetime | None, float]:
    """Until when the simulated floor's samples are its back-filled history, and that history's
    step: those samples stand `simulator.backfill_step_s` apart, not one collection interval
    (the back-fill replays the floor every step; collectors/runtime.py). (None, 0) on a real floor."""
    if not cfg.simulated:
        return None, 0.0
    from collectors.runtime import BACKFILL_KEY

    done = store.get_kv(BACKFILL_KEY)
    return (datetime.fromisoformat(done) if done else None), float(cfg.simulator.backfill_step_s)


# ---- the device tiers ------------------------------------------------------------

# One run of consecutive hours [$a, $b): raw samples with their device time, then 5-minute
# rows per device and label tuple. $reach: twice the longest interval, in seconds.
_DEVICE_5M = """
WITH dev AS (
    SELECT device_id, mig_weight(mig_profile) AS w, peak_dense_tflops,
           mig_parent IS NULL OR device_id = min(device_id) OVER (PARTITION BY mig_parent) AS board
    FROM devices
),
raw AS (
    SELECT s.ts, s.device_id, s.namespace, s.pod, s.job, s.job_user, s.util_pct, s.sm_active,
           s.tensor_active, s.power_w, s.energy_j, s.energy_delta_j, s.health, s.xid_last,
           coalesce(CASE WHEN s.ts <= $backfill_until AND starts_with(s.source, $backfill_source)
                         THEN $backfill_step END, iv.interval_s, $default_interval) AS iv,
           lead(s.ts) OVER (PARTITION BY s.device_id ORDER BY s.ts) AS next_ts
    FROM device_samples s LEFT JOIN rollup_intervals iv ON iv.source = s.source
    WHERE s.ts >= $a AND s.ts < $b + to_seconds($reach)
),
timed AS (
    SELECT r.*, coalesce(d.w, 1.0) AS w, d.peak_dense_tflops AS peak, coalesce(d.board, true) AS board,
           coalesce(epoch(r.next_ts) - epoch(r.ts) <= 2 * r.iv, false) AS followed,
           CASE WHEN followed THEN epoch(r.next_ts) - epoch(r.ts)
                WHEN epoch($now) - epoch(r.ts) >= r.iv THEN r.iv
                ELSE 0 END AS dt,
           NOT followed AND epoch($now) - epoch(r.ts) < 2 * r.iv AS pending
    FROM raw r LEFT JOIN dev d USING (device_id)
    WHERE r.ts >= $a AND r.ts < $b
),
weighed AS (
    SELECT *, dt * w AS gs, sample_available(health, xid_last) AS ok,
           labels_held(namespace, pod, job, job_user) AS held
    FROM timed
)
SELECT bucket_5m(ts) AS bucket, device_id, namespace, pod, job, job_user,
       count(*) AS samples,
       sum(gs) AS observed_s,
       sum(CASE WHEN ok THEN gs ELSE 0 END) AS available_s,
       sum(CASE WHEN ok AND held THEN gs ELSE 0 END) AS allocated_s,
       sum(CASE WHEN ok AND util_pct > 0 THEN gs ELSE 0 END) AS busy_s,
       sum(CASE WHEN ok THEN gs * coalesce(tensor_active, sm_active, 0) ELSE 0 END) AS useful_s,
       CASE WHEN count(tensor_active) > 0 THEN 'tensor' WHEN count(sm_active) > 0 THEN 'sm' END AS useful_basis,
       sum(CASE WHEN ok AND util_pct = 0 THEN gs ELSE 0 END) AS alloc_idle_s,
       sum(CASE WHEN util_pct IS NOT NULL THEN gs * util_pct / 100 ELSE 0 END) AS util_s,
       sum(CASE WHEN util_pct IS NOT NULL THEN gs ELSE 0 END) AS util_obs_s,
       sum(coalesce(dt * tensor_active * peak, 0)) AS tflop_s,
       sum(CASE WHEN NOT board THEN 0
                WHEN energy_j IS NOT NULL THEN greatest(coalesce(energy_delta_j, 0), 0)
                ELSE coalesce(dt * power_w, 0) END) AS energy_j,
       bool_or(pending) AS pending
FROM weighed
GROUP BY ALL
"""

_DEVICE_1H = """
SELECT bucket_1h(bucket) AS bucket, device_id, namespace, pod, job, job_user,
       {sums},
       CASE WHEN bool_or(useful_basis = 'tensor') THEN 'tensor'
            WHEN bool_or(useful_basis = 'sm') THEN 'sm' END AS useful_basis
FROM rollup_device_5m
WHERE bucket >= $a AND bucket < $b
GROUP BY ALL
"""


def _runs(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive hours as [start, end) runs."""
    out: list[tuple[datetime, datetime]] = []
    for h in sorted(hours):
        if out and out[-1][1] == h:
            out[-1] = (out[-1][0], h + HOUR)
        else:
            out.append((h, h + HOUR))
    return out


def _intervals_table(cfg: Config) -> pa.Table:
    iv = source_intervals(cfg)
    return pa.table({"source": pa.array(list(iv), pa.string()),
                     "interval_s": pa.array(list(iv.values()), pa.float64())})


def _build_devices(cur: duckdb.DuckDBPyConnection, cfg: Config, a: datetime, b: datetime,
                   now: datetime, backfill: tuple[datetime | None, float] = (None, 0.0)) -> tuple[int, set[datetime]]:
    """Rebuild the device tiers for [a, b); return rows written and the hours with a newest
    sample not counted yet."""
    from collectors.runtime import SIMULATOR_SOURCE

    params = {"a": a, "b": b, "now": now, "reach": reach_s(cfg),
              "default_interval": cfg.collection.interval_s, "backfill_until": backfill[0],
              "backfill_step": backfill[1], "backfill_source": SIMULATOR_SOURCE}
    for t in DEVICE_TIERS:
        cur.execute(f"DELETE FROM {t} WHERE bucket >= $a AND bucket < $b", {"a": a, "b": b}).fetchall()
    cur.execute(f"CREATE OR REPLACE TEMP TABLE rollup_new_5m AS {_DEVICE_5M}", params).fetchall()
    pending = {r[0] for r in cur.execute(
        "SELECT DISTINCT bucket_1h(bucket) FROM rollup_new_5m WHERE pending").fetchall()}
    cur.execute("INSERT INTO rollup_device_5m BY NAME SELECT * EXCLUDE (pending) FROM rollup_new_5m").fetchall()
    n5 = cur.execute("SELECT count(*) FROM rollup_new_5m").fetchall()[0][0]
    cur.execute("DROP TABLE rollup_new_5m").fetchall()
    sums = ", ".join(f"sum({c}) AS {c}" for c in _SUMS)
    n1 = cur.execute(f"INSERT INTO rollup_device_1h BY NAME {_DEVICE_1H.format(sums=sums)}",
                     {"a": a, "b": b}).fetchall()[0][0]
    return n5 + n1, pending


# ---- the group tiers -------------------------------------------------------------

# One device tier's rows of [$a, $b) with their tenant: a lease on the device, else on its host, at
# the bucket's start (first in config order), else what the rules give the label tuple
# (rollup_labels), else unattributed when a label held it, else unallocated.
_ATTRIBUTED = """
WITH d AS (
    SELECT r.*, dv.site, dv.cluster, dv.host, coalesce(dv.catalogue_model, dv.model) AS model
    FROM {device} r LEFT JOIN devices dv USING (device_id)
    WHERE r.bucket >= $a AND r.bucket < $b
),
keys AS (SELECT DISTINCT bucket, device_id, host FROM d),
leased AS (
    SELECT k.bucket, k.device_id,
           coalesce(arg_min(ld.tenant, ld.ord), arg_min(lh.tenant, lh.ord)) AS tenant
    FROM keys k
    LEFT JOIN rollup_leases ld ON ld.kind = 'device' AND ld.key = k.device_id
         AND ld.start_ts <= k.bucket AND (ld.end_ts IS NULL OR k.bucket < ld.end_ts)
    LEFT JOIN rollup_leases lh ON lh.kind = 'host' AND lh.key = k.host
         AND lh.start_ts <= k.bucket AND (lh.end_ts IS NULL OR k.bucket < lh.end_ts)
    GROUP BY k.bucket, k.device_id
),
attributed AS (
    SELECT d.*,
           coalesce(l.tenant, lb.tenant,
                    CASE WHEN labels_held(d.namespace, d.pod, d.job, d.job_user) THEN '{unattributed}'
                         ELSE '{unallocated}' END) AS tenant
    FROM d
    LEFT JOIN leased l ON l.bucket = d.bucket AND l.device_id = d.device_id
    LEFT JOIN rollup_labels lb ON lb.namespace IS NOT DISTINCT FROM d.namespace
         AND lb.pod IS NOT DISTINCT FROM d.pod AND lb.job IS NOT DISTINCT FROM d.job
         AND lb.job_user IS NOT DISTINCT FROM d.job_user
)
"""

_GROUP = _ATTRIBUTED + """,
held AS (SELECT *, tenant <> '{unallocated}' AS alloc FROM attributed)
SELECT bucket, site, cluster, model, tenant,
       count(DISTINCT device_id) AS devices,
       sum(samples) AS samples, sum(observed_s) AS observed_s, sum(available_s) AS available_s,
       sum(CASE WHEN alloc THEN available_s ELSE 0 END) AS allocated_s,
       sum(CASE WHEN alloc THEN busy_s ELSE 0 END) AS busy_s,
       sum(CASE WHEN alloc THEN useful_s ELSE 0 END) AS useful_s,
       basis_of(count(DISTINCT useful_basis), any_value(useful_basis)) AS useful_basis,
       sum(CASE WHEN alloc THEN alloc_idle_s ELSE 0 END) AS alloc_idle_s,
       sum(util_s) AS util_s, sum(util_obs_s) AS util_obs_s, sum(tflop_s) AS tflop_s,
       sum(energy_j) AS energy_j
FROM held
GROUP BY ALL
"""

# The tenant tier: the hourly group tier's sums per tenant, and the hour's peak of GPUs held at
# once: the largest 5-minute sum(allocated_s) / 300, or the hourly mean when that is larger (it
# cannot be, with the 5-minute rows present) or the 5-minute tier holds none (retired).
_TENANTS = """
WITH hourly AS (
    SELECT bucket, tenant, sum(devices) AS devices, {sums},
           basis_of(count(DISTINCT useful_basis), any_value(useful_basis)) AS useful_basis
    FROM rollup_group_1h WHERE bucket >= $a AND bucket < $b
    GROUP BY bucket, tenant
),
five AS (
    SELECT bucket_1h(bucket) AS bucket, tenant, max(gpus) AS peak FROM (
        SELECT bucket, tenant, sum(allocated_s) / 300.0 AS gpus FROM rollup_group_5m
        WHERE bucket >= $a AND bucket < $b GROUP BY bucket, tenant
    ) GROUP BY ALL
)
SELECT h.*, greatest(coalesce(f.peak, 0), h.allocated_s / 3600.0) AS peak_gpus
FROM hourly h LEFT JOIN five f USING (bucket, tenant)
"""

# The cluster tier: the hourly group tier's sums per site, cluster and model (over its tenants).
_CLUSTERS = """
SELECT bucket, site, cluster, model, {sums},
       basis_of(count(DISTINCT useful_basis), any_value(useful_basis)) AS useful_basis
FROM rollup_group_1h WHERE bucket >= $a AND bucket < $b
GROUP BY bucket, site, cluster, model
"""

# The device-tenant tier: the hourly device tier's sums as it counts them (busy, useful and
# idle time whether held or not: the tenant column says whether it was), per device and tenant.
_DEVICE_TENANT = _ATTRIBUTED + """
SELECT bucket, device_id, tenant, {sums}
FROM attributed
GROUP BY bucket, device_id, tenant
"""


def leases_table(cfg: Config) -> pa.Table:
    """The config's leases as rows (kind 'device' | 'host', key, tenant, ord: config order,
    start_ts, end_ts: NULL open) for the range join the group tiers attribute with."""
    rows: list[dict[str, Any]] = []
    for i, lease in enumerate(cfg.leases):
        for kind, keys in (("device", lease.devices), ("host", lease.hosts)):
            for k in keys:
                rows.append({"kind": kind, "key": k, "tenant": lease.tenant, "ord": i,
                             "start_ts": lease.start, "end_ts": lease.end})
    schema = pa.schema([("kind", pa.string()), ("key", pa.string()), ("tenant", pa.string()),
                        ("ord", pa.int64()), ("start_ts", pa.timestamp("us", tz="UTC")),
                        ("end_ts", pa.timestamp("us", tz="UTC"))])
    return pa.Table.from_pylist(rows, schema=schema)


def labels_table(cur: duckdb.DuckDBPyConnection, cfg: Config, device: str, a: datetime,
                  b: datetime) -> pa.Table:
    """The tenant the rules and namespaces give each distinct label tuple of the device tier
    `device` in [a, b) (NULL: none; leases are joined separately)."""
    tuples = cur.execute(f"""SELECT DISTINCT namespace, pod, job, job_user FROM {device}
                             WHERE bucket >= $a AND bucket < $b""", {"a": a, "b": b}).fetchall()
    labels = _LabelRules(cfg)
    rows = [dict(zip(_LABELS, t), tenant=labels(*t)) for t in tuples]
    return pa.Table.from_pylist(rows, schema=pa.schema([(c, pa.string()) for c in (*_LABELS, "tenant")]))


class _LabelRules:
    """Rules, then tenants' namespaces, on a label tuple (collectors.attribution's order)."""

    def __init__(self, cfg: Config):
        self._attributor = Attributor(cfg)

    def __call__(self, namespace: str | None, pod: str | None, job: str | None,
                 job_user: str | None) -> str | None:
        return self._attributor._labels(namespace, pod, job, job_user)


def _build_groups(cur: duckdb.DuckDBPyConnection, cfg: Config, a: datetime, b: datetime) -> int:
    """Rebuild both group tiers and the device-tenant tier for [a, b) from the device tiers."""
    n = 0
    cur.register("rollup_leases", leases_table(cfg))
    for device, group in zip(DEVICE_TIERS, GROUP_TIERS):
        cur.register("rollup_labels", labels_table(cur, cfg, device, a, b))
        cur.execute(f"DELETE FROM {group} WHERE bucket >= $a AND bucket < $b", {"a": a, "b": b}).fetchall()
        sql = _GROUP.format(device=device, unattributed=UNATTRIBUTED, unallocated=UNALLOCATED)
        n += cur.execute(f"INSERT INTO {group} BY NAME {sql}", {"a": a, "b": b}).fetchall()[0][0]
        if device == "rollup_device_1h":
            n += _insert_device_tenants(cur, a, b)
        cur.unregister("rollup_labels")
    cur.unregister("rollup_leases")
    return n + _build_tenants(cur, a, b)


def _build_tenants(cur: duckdb.DuckDBPyConnection, a: datetime, b: datetime) -> int:
    """Rebuild the tenant and cluster tiers for [a, b) (whole hours) from the group tiers."""
    sums = ", ".join(f"sum({c}) AS {c}" for c in _SUMS)
    n = 0
    for table, sql in ((TENANT_TIER, _TENANTS), (CLUSTER_TIER, _CLUSTERS)):
        cur.execute(f"DELETE FROM {table} WHERE bucket >= $a AND bucket < $b", {"a": a, "b": b}).fetchall()
        n += int(cur.execute(f"INSERT INTO {table} BY NAME {sql.format(sums=sums)}",
                             {"a": a, "b": b}).fetchall()[0][0])
    return n


def _insert_device_tenants(cur: duckdb.DuckDBPyConnection, a: datetime, b: datetime) -> int:
    """Rebuild the device-tenant tier for [a, b) (rollup_leases and rollup_labels registered)."""
    cur.execute(f"DELETE FROM {DEVICE_TENANT_TIER} WHERE bucket >= $a AND bucket < $b", {"a": a, "b": b}).fetchall()
    sql = _DEVICE_TENANT.format(device="rollup_device_1h", unattributed=UNATTRIBUTED, unallocated=UNALLOCATED,
                                sums=", ".join(f"sum({c}) AS {c}" for c in _SUMS))
    return int(cur.execute(f"INSERT INTO {DEVICE_TENANT_TIER} BY NAME {sql}", {"a": a, "b": b}).fetchall()[0][0])


def _build_device_tenants(cur: duckdb.DuckDBPyConnection, cfg: Config, a: datetime, b: datetime) -> int:
    """Rebuild the device-tenant tier alone for [a, b) from the hourly device tier."""
    cur.register("rollup_leases", leases_table(cfg))
    cur.register("rollup_labels", labels_table(cur, cfg, "rollup_device_1h", a, b))
    try:
        return _insert_device_tenants(cur, a, b)
    finally:
        cur.unregister("rollup_labels")
        cur.unregister("rollup_leases")


def attribution_fingerprint(cfg: Config) -> str:
    """What the group tiers' attribution depends on: leases, rules, tenants' namespaces."""
    doc = {"leases": [lease.model_dump(mode="json") for lease in cfg.leases],
           "rules": [r.model_dump(mode="json") for r in cfg.attribution],
           "namespaces": sorted(cfg.tenant_for_namespace().items())}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# ---- the jobs --------------------------------------------------------------------

_LOCKS: dict[int, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _store_lock(store: Store) -> threading.Lock:
    """One rollup or retention pass at a time per store (the runner may run both at once)."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(id(store), threading.Lock())


@contextmanager
def _cursor(store: Store, cfg: Config | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A cursor in UTC with the sources' intervals registered. The jobs take one per chunk, not
    one for a whole catch-up: Store.reopen waits for the cursors in use."""
    with store.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'").fetchall()
        if cfg is not None:
            cur.register("rollup_intervals", _intervals_table(cfg))
        yield cur


def chunk_hours_for(store: Store, cfg: Config) -> int:
    """Hours a transaction rebuilds: about CHUNK_SAMPLES samples' worth (see CHUNK_SAMPLES)."""
    with _cursor(store) as cur:
        devices = cur.execute("SELECT count(*) FROM devices").fetchall()[0][0]
    per_hour = max(1, devices) * 3600.0 / min([cfg.collection.interval_s, *source_intervals(cfg).values()])
    return int(max(1, min(MAX_CHUNK_HOURS, CHUNK_SAMPLES // per_hour)))


def build(store: Store, cfg: Config, now: datetime | None = None, *, chunk_hours: int | None = None) -> JobResult:
    """The rollup job: regroup everything after an attribution change, then rebuild every
    dirty hour, oldest first, `chunk_hours` at a time (default: `chunk_hours_for`)."""
    now = now or datetime.now(timezone.utc)
    chunk_hours = chunk_hours or chunk_hours_for(store, cfg)
    rows = 0
    hours_built = 0
    regrouped = False
    with _store_lock(store):
        fingerprint = attribution_fingerprint(cfg)
        if store.get_kv(FINGERPRINT_KEY) != fingerprint:
            rows += regroup(store, cfg)
            store.set_kv(FINGERPRINT_KEY, fingerprint)
            store.set_kv(DEVICE_TENANT_KEY, fingerprint)
            regrouped = True
        elif store.get_kv(DEVICE_TENANT_KEY) != fingerprint:
            rows += attribute_devices(store, cfg)      # a store from before the tier (migration 013)
            store.set_kv(DEVICE_TENANT_KEY, fingerprint)
        if regrouped:
            store.set_kv(TENANT_KEY, TENANT_FILLED)     # regroup rebuilt it with the group tiers
        elif store.get_kv(TENANT_KEY) != TENANT_FILLED:
            rows += fill_tenants(store)                # a store from before the tier (migration 019)
        backfill = backfill_span(store, cfg)
        store.return_dirty()                   # a build that stopped half-way: its hours again
        after: datetime | None = None
        while True:
            taken = store.take_dirty(chunk_hours, after)
            if not taken:
                break
            after = taken[-1]
            pending: set[datetime] = set()
            try:
                with _cursor(store, cfg) as cur, transaction(cur):
                    for a, b in _runs(taken):
                        n, p = _build_devices(cur, cfg, a, b, now, backfill)
                        rows += n + _build_groups(cur, cfg, a, b)
                        pending |= p
            except BaseException:
                store.return_dirty()
                raise
            store.done_dirty(sorted(pending))
            hours_built += len(taken)
    detail = f"{hours_built} h rebuilt" + (", regrouped after an attribution change" if regrouped else "")
    return JobResult(rows=rows, detail=detail)


def regroup(store: Store, cfg: Config, *, chunk: timedelta = timedelta(days=1)) -> int:
    """Rebuild the group tiers and the device-tenant tier of every hour the device tiers hold
    (attribution changed), a day of buckets a transaction."""
    return _over_device_span(store, chunk, lambda cur, a, b: _build_groups(cur, cfg, a, b))


def attribute_devices(store: Store, cfg: Config, *, chunk: timedelta = timedelta(days=1)) -> int:
    """Rebuild the device-tenant tier alone (not the group tiers) of every hour the hourly
    device tier holds, a day of buckets a transaction: how a store that has the device tiers
    but not this one (migration 013) gets it."""
    return _over_device_span(store, chunk, lambda cur, a, b: _build_device_tenants(cur, cfg, a, b))


def fill_tenants(store: Store, *, chunk: timedelta = timedelta(days=7)) -> int:
    """Rebuild the tenant tier alone over the hourly group tier's span, a week of buckets a
    transaction, and mark it filled (TENANT_KEY: the reads use it from then on): how a store
    whose group tiers predate the tier (migration 019) gets it."""
    with _cursor(store) as cur:
        span = cur.execute("SELECT min(bucket), max(bucket) FROM rollup_group_1h").fetchall()[0]
    rows = 0
    if span[0] is None:
        store.set_kv(TENANT_KEY, TENANT_FILLED)
        return 0
    a, end = span[0], span[1] + HOUR
    while a < end:
        b = min(a + chunk, end)
        with _cursor(store) as cur, transaction(cur):
            rows += _build_tenants(cur, a, b)
        a = b
    store.set_kv(TENANT_KEY, TENANT_FILLED)
    return rows


def _over_device_span(store: Store, chunk: timedelta,
                      step: Callable[[duckdb.DuckDBPyConnection, datetime, datetime], int]) -> int:
    """`step(cur, a, b)` over the hourly device tier's span, `chunk` at a time, each in a transaction."""
    with _cursor(store) as cur:
        span = cur.execute("SELECT min(bucket), max(bucket) FROM rollup_device_1h").fetchall()[0]
    if span[0] is None:
        return 0
    rows = 0
    a, end = span[0], span[1] + HOUR
    while a < end:
        b = min(a + chunk, end)
        with _cursor(store) as cur, transaction(cur):
            rows += step(cur, a, b)
        a = b
    return rows


def retention(store: Store, cfg: Config, now: datetime | None = None) -> JobResult:
    """Delete raw samples past `retention.raw_days` and 5-minute rows past
    `retention.five_minute_days`; never a dirty hour, nor the raw samples its rebuild reads."""
    now = now or datetime.now(timezone.utc)
    reach = timedelta(seconds=reach_s(cfg))
    with _store_lock(store), _cursor(store) as cur:
        oldest = cur.execute("SELECT min(hour) FROM rollup_dirty").fetchall()[0][0]
        raw_cut = now - timedelta(days=cfg.retention.raw_days)
        five_cut = now - timedelta(days=cfg.retention.five_minute_days)
        if oldest is not None:
            raw_cut = min(raw_cut, oldest - reach)
            five_cut = min(five_cut, oldest)
        rows = 0
        with store.write_lock, transaction(cur):
            rows += cur.execute("DELETE FROM device_samples WHERE ts < $cut", {"cut": raw_cut}).fetchall()[0][0]
        with transaction(cur):
            for t in ("rollup_device_5m", "rollup_group_5m"):
                rows += cur.execute(f"DELETE FROM {t} WHERE bucket < $cut", {"cut": five_cut}).fetchall()[0][0]
    return JobResult(rows=rows, detail=f"raw before {raw_cut.isoformat()}, 5 min before {five_cut.isoformat()}")


def rollup_status(store: Store, now: datetime | None = None, *, tiers: bool = True) -> dict[str, Any]:
    """For /healthz `rollups` and the Sources page: `state` ("current" when no hour older than
    the previous one waits, else "catching_up"), `dirty_hours`, `oldest_dirty`, `behind_s`
    (how far the oldest dirty hour lies before the previous hour: 0 when current; the current
    and the previous hour are rebuilt every interval) and per tier its `span` (first and
    last bucket), `rows` and approximate `bytes` (the storage blocks its rows occupy in the
    file; None until DuckDB has written them there at a checkpoint, and for an in-memory store).
    The tier figures read every tier and its storage info (about 0.3 s at 1,024 GPUs x 90 days);
    `tiers=False` leaves them out (`tiers` is then {}) for callers that refresh them less often."""
    now = now or datetime.now(timezone.utc)
    with _cursor(store) as cur:
        n, oldest = cur.execute("SELECT count(*), min(hour) FROM rollup_dirty").fetchall()[0]
        tier_figures = {}
        for t in TIERS if tiers else ():
            rows, lo, hi = cur.execute(f"SELECT count(*), min(bucket), max(bucket) FROM {t}").fetchall()[0]
            tier_figures[t] = {"span": [lo, hi], "rows": rows, "bytes": _storage_bytes(cur, t)}
    previous_hour = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0) - HOUR
    behind = 0.0 if oldest is None else max(0.0, (previous_hour - oldest).total_seconds())
    return {"state": "current" if behind == 0 else "catching_up", "dirty_hours": n, "oldest_dirty": oldest,
            "behind_s": behind, "tiers": tier_figures}


def table_bytes(store: Store, table: str) -> int | None:
    """Approximate bytes the table `table` occupies in the database file (see _storage_bytes)."""
    with _cursor(store) as cur:
        return _storage_bytes(cur, table)


def _storage_bytes(cur: duckdb.DuckDBPyConnection, table: str) -> int | None:
    """Bytes of the storage blocks holding the table (pragma_storage_info; compressed, on disk;
    a small table may share a block with others, so it is an upper bound)."""
    blocks = cur.execute(f"""SELECT count(DISTINCT b) FROM (
        SELECT block_id AS b FROM pragma_storage_info('{table}') WHERE block_id >= 0
        UNION ALL SELECT unnest(additional_block_ids) FROM pragma_storage_info('{table}'))""").fetchall()[0][0]
    if not blocks:
        return None
    block = cur.execute("SELECT block_size FROM pragma_database_size() LIMIT 1").fetchall()[0][0]
    return int(blocks) * int(block)


def add_jobs(runner: Any, store: Store, cfg: Config) -> None:
    """Register `rollup` (every collection interval) and `retention` (daily, 03:30 in the first
    site's time zone) on a collectors.jobs.JobRunner; widen the store's dirty marking to
    `reach_s` (a sample ends its device's previous one, maybe in the hour before)."""
    store.dirty_lookback_s = reach_s(cfg)
    runner.add("rollup", Every(cfg.collection.interval_s, at_start=True), lambda now: build(store, cfg, now))
    runner.add("retention", Calendar("daily", 3, 30, tz=cfg.sites[0].timezone),
               lambda now: retention(store, cfg, now))
