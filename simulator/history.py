"""The simulated centre's older months, generated straight into the hourly group tier.

The raw back-fill (collectors/runtime.py `Backfill`) replays `simulator.backfill_days` (30) of
exporter text through the collectors, which is what the live page and the last month need; a
year of it would take hours. The capacity forecasts need a year of daily demand (two seasonal
cycles beyond an 8-week backtest at the least, and the trend), so the months before the raw
back-fill are written **straight into `rollup_group_1h`** from the floor's schedules, stated as
such: the span is recorded in kv (`SPAN_KEY`) for the Sources page, and docs/capacity.md says
which figures it holds.

What a generated hour holds, per (site, cluster, model, tenant): the GPU-seconds each node's
schedule segment puts there (training jobs, inference pods, idle time; simulator/model.py),
with busy, useful, utilisation and tensor work from the same per-GPU levels the exporter text is
drawn from, and the noise-free board energy (the closed-form integrals). Not generated: XIDs,
lost GPUs and exporter outages (every GPU of an arrived cluster is observed and available; a
cluster's hours before its simulated arrival hold nothing), the device tiers and
the 5-minute tier (so per-device drill-downs and peaks from 5-minute buckets start where the raw
back-fill does), and no facility meter readings (the energy side's own). Attribution is by each
job's or pod's namespace (the tenants' `namespaces`), as the simulator draws them; a later
change of leases or rules does not regroup generated hours (there is no device tier under them).

The tenant tier (rollup_tenant_1h) is rebuilt for each generated week by the rollup's own build,
in the same transaction. The span ends at the hour the raw back-fill starts in, so no hour holds
both. `add_jobs` registers the generation as a job that runs once at start and resumes itself.
"""

from __future__ import annotations

import json
import math
import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pyarrow as pa

import config
from collectors.jobs import JobResult, Once
from queries import rollup
from queries.catalogue import arrow_schema
from queries.store import Store, transaction

SPAN_KEY = "simulator.generated_history"
TIER = "rollup_group_1h"
HOUR = 3600.0
BATCH_DAYS = 7
_SUMS = ("observed_s", "available_s", "allocated_s", "busy_s", "useful_s", "alloc_idle_s", "util_s",
         "util_obs_s", "tflop_s", "energy_j")


def span(cfg: config.Config, now: datetime) -> tuple[datetime, datetime]:
    """[start, end): the hours before the raw back-fill's first step, `simulated_history_days`
    back from now (the back-fill starts `backfill_days` back, on its step)."""
    step = cfg.simulator.backfill_step_s
    raw = now - timedelta(days=cfg.simulator.backfill_days)
    raw = datetime.fromtimestamp(raw.timestamp() - raw.timestamp() % step, timezone.utc)
    end = raw.replace(minute=0, second=0, microsecond=0)
    start = (now - timedelta(days=cfg.capacity.simulated_history_days)).replace(minute=0, second=0, microsecond=0)
    return min(start, end), end


def generated_span(store: Store) -> dict[str, Any] | None:
    """What was generated: {"start", "end", "done_until", "tier"} (ISO times), or None."""
    raw = store.get_kv(SPAN_KEY)
    return json.loads(raw) if raw else None


def hour_rows(floor: Any, cfg: config.Config, a: float, b: float) -> dict[tuple, list[float]]:
    """Per (hour start, site, cluster, model, tenant): the tier's sums over [a, b) (epoch seconds,
    whole hours), from every node's schedule segments."""
    from simulator.model import INFER, TRAIN, _train_pieces

    tenant_of = cfg.tenant_for_namespace()
    models = {c.id: (cfg.catalogue.lookup(c.model)) for c in cfg.clusters}
    out: dict[tuple, list[float]] = defaultdict(lambda: [0.0] * len(_SUMS))
    idx = {name: i for i, name in enumerate(_SUMS)}

    def add(hour: float, h: Any, tenant: str, **sums: float) -> None:
        spec = models.get(h.cluster)
        row = out[(hour, h.site, h.cluster, spec.id if spec else h.model, tenant)]
        for k, v in sums.items():
            row[idx[k]] += v

    for h in floor._hosts.values():
        spec = models.get(h.cluster)
        peak = spec.peak_dense_tflops if spec else 0.0
        c = floor._chunk_of(h, a)
        while floor._chunk_start(h, c) < b:
            for s in floor._chunk(h, c).segs:
                lo, hi = max(s.start, a, h.since), min(s.end, b)        # nothing before the node arrived
                if hi <= lo:
                    continue
                if s.kind == TRAIN:
                    floor._detail(h, s)
                t = lo
                while t < hi:
                    hour = math.floor(t / HOUR) * HOUR
                    e = min(hi, hour + HOUR)
                    _piece(add, floor, h, s, t, e, hour, peak, tenant_of, TRAIN, INFER, _train_pieces)
                    t = e
            c += 1
    return out


def _piece(add: Any, floor: Any, h: Any, s: Any, a: float, b: float, hour: float, peak: float,
           tenant_of: dict[str, str], TRAIN: int, INFER: int, train_pieces: Any) -> None:
    dt = b - a
    n = h.n
    energy = floor._seg_energy(h, s, a, b)
    if s.kind == TRAIN:
        init, hung, dip, steady = train_pieces(s.job, a, b)
        tenant = s.job.tenant
        useful = sum(s.ten) * steady
        add(hour, h, tenant, observed_s=n * dt, available_s=n * dt, allocated_s=n * dt,
            busy_s=n * (steady + 0.9 * dip), useful_s=useful, alloc_idle_s=n * (init + hung + 0.1 * dip),
            util_s=sum(u / 100.0 for u in s.util) * steady + n * 0.05 * dip, util_obs_s=n * dt,
            tflop_s=useful * peak, energy_j=sum(energy))
        return
    for g in range(n):
        pod = s.pods[g] if s.kind == INFER else None
        if pod is None:
            add(hour, h, "_unallocated", observed_s=dt, available_s=dt, util_obs_s=dt, energy_j=energy[g])
            continue
        tenant = tenant_of.get(pod.ns, "_unattributed")
        if pod.scale == 0.0:
            add(hour, h, tenant, observed_s=dt, available_s=dt, allocated_s=dt, alloc_idle_s=dt, util_obs_s=dt,
                energy_j=energy[g])
            continue
        eff = pod.scale * pod.curve.integral(a, b) / dt
        useful = (0.02 + 0.38 * eff) * dt
        add(hour, h, tenant, observed_s=dt, available_s=dt, allocated_s=dt, busy_s=dt, useful_s=useful,
            util_s=min(1.0, eff * 1.15) * dt, util_obs_s=dt, tflop_s=useful * peak, energy_j=energy[g])


def _table(rows: dict[tuple, list[float]], step_s: float) -> pa.Table:
    cols: dict[str, list] = {c.name: [] for c in arrow_schema(TIER)}
    for (hour, site, cluster, model, tenant), sums in sorted(rows.items(), key=lambda kv: kv[0][:1] + kv[0][1:]):
        values = dict(zip(_SUMS, sums))
        cols["bucket"].append(datetime.fromtimestamp(hour, timezone.utc))
        cols["site"].append(site)
        cols["cluster"].append(cluster)
        cols["model"].append(model)
        cols["tenant"].append(tenant)
        cols["devices"].append(int(math.ceil(values["observed_s"] / HOUR - 1e-9)))
        cols["samples"].append(int(values["observed_s"] // step_s))
        cols["useful_basis"].append("tensor" if tenant != "_unallocated" else None)
        for k in _SUMS:
            cols[k].append(float(values[k]))
    return pa.Table.from_pydict(cols, schema=arrow_schema(TIER))


def _write(store: Store, table: pa.Table, a: datetime, b: datetime) -> int:
    """Replace the generated hours [a, b) of the group tier, and the tenant tier made from it
    (queries/rollup.py builds rollup_tenant_1h from the group tiers), in one transaction."""
    with store.write_lock, store.cursor() as cur, transaction(cur):
        cur.execute(f"DELETE FROM {TIER} WHERE bucket >= $a AND bucket < $b", {"a": a, "b": b}).fetchall()
        cur.register("generated_hours", table)
        cur.execute(f"INSERT INTO {TIER} BY NAME SELECT * FROM generated_hours").fetchall()
        cur.unregister("generated_hours")
        rollup._build_tenants(cur, a, b)          # the rollup's own build of the tier, for these hours
    return table.num_rows


def add_jobs(runner: Any, store: Store, cfg: config.Config, floor: Any, stop: threading.Event,
             then: Callable[[datetime], Any] | None = None) -> None:
    """Register `history-generate` (once, at start; it resumes itself) when the simulated
    centre's history reaches further back than the raw back-fill; `then(now)` runs when it is
    done (the runtime refits the forecasts at once, so the capacity page has a year to show on
    first start instead of waiting for the forecast job's next check)."""
    if cfg.capacity.simulated_history_days <= cfg.simulator.backfill_days:
        return

    def run(now: datetime) -> JobResult:
        rows = generate(store, cfg, floor, now, stop=stop)
        if then is not None and not (stop.is_set()):
            then(now)
        done = generated_span(store)
        return JobResult(rows=rows, detail=None if done is None else f"{done['start']} to {done['done_until']}")

    runner.add("history-generate", Once(), run)


def generate(store: Store, cfg: config.Config, floor: Any, now: datetime, *,
             stop: threading.Event | None = None) -> int:
    """Write the generated months (see module docstring) a week at a time, resuming after the
    last week stored (kv SPAN_KEY); return rows written. The span is fixed at the first run."""
    done = generated_span(store)
    if done is not None:
        start, end = datetime.fromisoformat(done["start"]), datetime.fromisoformat(done["end"])
        at = datetime.fromisoformat(done["done_until"])
    else:
        start, end = span(cfg, now)
        at = start
    rows = 0
    while at < end and not (stop is not None and stop.is_set()):
        b = min(end, at + timedelta(days=BATCH_DAYS))
        table = _table(hour_rows(floor, cfg, at.timestamp(), b.timestamp()), float(cfg.simulator.backfill_step_s))
        rows += _write(store, table, at, b)
        at = b
        store.set_kv(SPAN_KEY, json.dumps({"start": start.isoformat(), "end": end.isoformat(),
                                           "done_until": at.isoformat(), "tier": TIER}))
    if done is None and at >= end:
        store.set_kv(SPAN_KEY, json.dumps({"start": start.isoformat(), "end": end.isoformat(),
                                           "done_until": end.isoformat(), "tier": TIER}))
    return rows
