"""Canonical batches: the Arrow schemas, one scrape's result, the event tracker and
the builder that turns a parsed `DeviceBatch` into rows for the store.

Every device collector (dcgm-exporter, AMD and Ascend exporters, NVML,
Prometheus) produces a `DeviceBatch` -- ids, identity/attribution labels and
canonical columns -- and hands it to `BatchBuilder.build`, so model lookup,
MIG shares, tenant attribution and the table layout live in one place.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from collectors.attribution import Attributor
from collectors.exposition import DeviceBatch, LineIssue, ParseStats
from collectors.targets import Target
from config import Catalogue, Config
from config.canonical import SAMPLE_LABELS, SAMPLE_MEASURES, THERMAL_THROTTLE_MASK
from i18n import Msg
from queries.catalogue import arrow_schema

TS = pa.timestamp("us", tz="UTC")

# Scrapes fetch concurrently (I/O releases the GIL) but parse one at a time: parsing
# is pure Python, the GIL runs one thread anyway, and 64 threads fighting over it
# cost 4-5x the CPU of taking turns (benchmarks/bench_collect.py, 1,000 targets).
PARSE_LOCK = threading.Lock()
_MIG_SLICES = re.compile(r"^(\d+)g\.")
# A full GPU has 7 compute slices on A100/H100-class MIG.
MIG_SLICES_PER_GPU = 7

# the stored tables' layouts, declared once in queries/catalogue.py
SAMPLE_SCHEMA = arrow_schema("device_samples")
DEVICE_SCHEMA = arrow_schema("devices")
EVENT_SCHEMA = arrow_schema("device_events")


@dataclass
class Scrape:
    """What one scrape of one target produced, ready for Store.write_scrape."""

    target: Target
    ts: datetime
    samples: pa.Table | None = None
    devices: pa.Table | None = None
    events: pa.Table | None = None
    facility: pa.Table | None = None
    rows: int = 0
    lines_skipped: int = 0
    issues: list[LineIssue] = field(default_factory=list)
    parse_s: float = 0.0
    # non-fatal problems, shown on the sources page: messages as keys (i18n.Msg) or plain text
    notes: list[Msg | str] = field(default_factory=list)

    @classmethod
    def parsed(cls, target: Target, ts: datetime, stats: ParseStats, **fields) -> Scrape:
        """A scrape carrying what its parse counted: skipped lines, their issues, and the
        note naming implausible values stored as NULL."""
        scrape = cls(target=target, ts=ts, lines_skipped=stats.malformed, issues=stats.issues, **fields)
        note = stats.implausible_msg()
        if note is not None:
            scrape.notes.append(note)
        return scrape

    def oldest_sample_ts(self, within_s: float) -> datetime | None:
        """The earliest time a device row of this scrape carries: the tick, unless the exporter
        stamps its samples itself (Huawei's npu-exporter: each chip at its cache read time).
        Its collector_runs row records this, so every device the scrape carried has a sample at
        or after its run's time, and one it left out (lost) falls behind. Only stamps within
        `within_s` of the newest count: a chip whose reading froze minutes ago must not hold
        the time back and hide every other chip that leaves (it reads lost itself: its
        exporter answers without news of it)."""
        if self.samples is None or not self.samples.num_rows:
            return None
        ts = self.samples["ts"]
        newest = pc.max(ts).as_py()
        recent = pc.filter(ts, pc.greater_equal(ts, pa.scalar(newest - timedelta(seconds=within_s), ts.type)))
        return pc.min(recent).as_py()


def _num(v):
    """A value from a DataFrame row: NaN/NA/None -> None."""
    if v is None:
        return None
    try:
        return None if v != v else float(v)
    except TypeError:
        return None


# ECC state a device reports; a rise in any of them is an "ecc" problem
ECC_COLUMNS = ("ecc_dbe_volatile", "row_remap_pending", "row_remap_failed")
# XIDs that already say "uncorrectable ECC error" (48 DBE, 63/64 row remap, 94/95
# contained/uncontained): a DBE count rising in the same scrape is the same incident
ECC_XIDS = frozenset({48, 63, 64, 94, 95})


def _ecc_events(before: tuple | None, now: tuple) -> list[dict]:
    """New double-bit ECC errors, a row remap waiting for a reset, a failed remap.

    Nothing is reported for the first reading of a device whose history is unknown
    unless it already shows a pending or failed remap (those need action whatever
    their age); a volatile count that went down was reset with the GPU."""
    (dbe0, pend0, fail0), (dbe, pend, fail) = before or (None, None, None), now
    out = []
    if dbe is not None and dbe > (dbe0 or 0) and before is not None:
        out.append({"kind": "ecc", "code": int(dbe), "detail": "dbe"})
    if pend and not pend0:
        out.append({"kind": "ecc", "code": None, "detail": "remap_pending"})
    if fail and not fail0:
        out.append({"kind": "ecc", "code": None, "detail": "remap_failed"})
    return out


class EventTracker:
    """Remembers each device's last XID and throttle state and each target's devices.

    State is per collector instance; `prime` seeds it from the store on start so a
    restart does not report the same XID twice.
    """

    def __init__(self) -> None:
        self.xid: dict[str, int] = {}
        self.thermal: dict[str, bool] = {}
        self.present: dict[str, dict[str, dict]] = {}   # target -> device_id -> identity
        self.lost: set[str] = set()
        self.energy: dict[str, float] = {}               # device -> last energy counter (J)
        self.unhealthy: dict[str, bool] = {}
        self.ecc: dict[str, tuple] = {}                  # device -> (DBE volatile, remap pending, remap failed)
        self._lock = threading.Lock()

    def prime(self, rows: list[dict]) -> None:
        """rows: device_id, xid_last, throttle_reasons from each device's newest sample."""
        for r in rows:
            self.xid[r["device_id"]] = int(_num(r.get("xid_last")) or 0)
            self.thermal[r["device_id"]] = bool(int(_num(r.get("throttle_reasons")) or 0) & THERMAL_THROTTLE_MASK)
            energy = _num(r.get("energy_j"))
            if energy is not None:
                self.energy[r["device_id"]] = energy
            health = _num(r.get("health"))
            if health is not None:
                self.unhealthy[r["device_id"]] = health == 0
            self.ecc[r["device_id"]] = tuple(_num(r.get(c)) for c in ECC_COLUMNS)

    def energy_deltas(self, batch: DeviceBatch) -> list[float | None]:
        """Energy since each device's previous sample, from its counter.

        A counter that went down was reset (driver reload, exporter restart): the
        energy since the reset is the new reading itself, as Prometheus' increase()
        assumes. A device's first sample has no delta (NULL): its interval is unknown.
        """
        energy = batch.columns.get("energy_j")
        if energy is None:
            return [None] * len(batch)
        out: list[float | None] = []
        with self._lock:
            last = self.energy
            for dev, e in zip(batch.ids, energy):
                if e is None:
                    out.append(None)
                    continue
                prev = last.get(dev)
                out.append(None if prev is None else (e - prev if e >= prev else e))
                last[dev] = e
        return out

    def observe(self, target: Target, ts: datetime, batch: DeviceBatch, *,
                ecc_xid_devices: frozenset[str] | set[str] = frozenset()) -> list[dict]:
        """Events of one scrape of `target`. `ecc_xid_devices`: devices (or MIG parents) an ECC
        XID of this scrape was reported for outside xid_last (NVML's event thread); like an
        ECC XID in xid_last, it makes a double-bit ECC rise of the same scrape one incident."""
        events: list[dict] = []
        xids = batch.columns.get("xid_last", [None] * len(batch))
        thr = batch.columns.get("throttle_reasons", [None] * len(batch))
        temps = batch.columns.get("temp_c", [None] * len(batch))
        health = batch.columns.get("health", [None] * len(batch))
        ecc_cols = [batch.columns.get(c, [None] * len(batch)) for c in ECC_COLUMNS]
        now_present: dict[str, dict] = {}
        with self._lock:
            for i, dev in enumerate(batch.ids):
                m: dict[str, Any] = batch.meta[i]
                ident = {"device_id": dev, "host": m["host"], "gpu_index": m["gpu_index"]}
                now_present[dev] = ident
                xv = xids[i]
                x = int(xv) if xv is not None else None
                new_xid = None
                if x is not None:
                    if x != 0 and self.xid.get(dev, 0) != x:
                        events.append({**ident, "kind": "xid", "code": x, "detail": None})
                        new_xid = x
                    self.xid[dev] = x
                t = thr[i]
                if t is not None:
                    hot = bool(int(t) & THERMAL_THROTTLE_MASK)
                    if hot and not self.thermal.get(dev, False):
                        temp = temps[i]
                        events.append({**ident, "kind": "thermal", "code": int(t),
                                       "detail": None if temp is None else f"{temp:.0f}"})
                    self.thermal[dev] = hot
                h = health[i]
                if h is not None:
                    bad = h == 0
                    if bad and not self.unhealthy.get(dev, False):
                        events.append({**ident, "kind": "unhealthy", "code": int(h), "detail": None})
                    self.unhealthy[dev] = bad
                ecc = tuple(col[i] for col in ecc_cols)
                if ecc != (None, None, None):
                    dbe_reported = (new_xid in ECC_XIDS or dev in ecc_xid_devices
                                    or m.get("mig_parent") in ecc_xid_devices)
                    events.extend({**ident, **e} for e in _ecc_events(self.ecc.get(dev), ecc)
                                  if not (e["detail"] == "dbe" and dbe_reported))
                    self.ecc[dev] = ecc
                if dev in self.lost:
                    self.lost.discard(dev)
                    events.append({**ident, "kind": "back", "code": None, "detail": None})
            previous = self.present.get(target.url)
            if previous is not None:
                for dev, ident in previous.items():
                    if dev not in now_present and dev not in self.lost:
                        self.lost.add(dev)
                        events.append({**ident, "kind": "lost", "code": None, "detail": None})
                        now_present[dev] = ident
                    elif dev in self.lost and dev not in now_present:
                        now_present[dev] = ident   # keep watching for its return
            self.present[target.url] = now_present
        for e in events:
            e.update(ts=ts, site=target.site, cluster=target.cluster, source=target.source)
        return events


class BatchBuilder:
    """DeviceBatch -> Scrape with samples and devices tables (see module docstring).

    `BatchBuilder(cfg, vendor)` takes the catalogue and attribution from a Config;
    `BatchBuilder.explicit(catalogue, attributor, vendor)` takes them as they are (the
    registry shares one attributor, and its label cache, among a runtime's collectors)."""

    def __init__(self, cfg: Config | None, vendor: str, *, catalogue: Catalogue | None = None,
                 attributor: Attributor | None = None):
        if cfg is not None:
            catalogue = catalogue or cfg.catalogue
            attributor = attributor or Attributor(cfg)
        if catalogue is None or attributor is None:
            raise TypeError("BatchBuilder: give a Config, or a catalogue and an attributor")
        self.catalogue = catalogue
        self.attributor = attributor
        self.vendor = vendor
        self._peak_cache: dict[tuple[str | None, str | None], tuple[str | None, str, float | None]] = {}

    @classmethod
    def explicit(cls, catalogue: Catalogue, attributor: Attributor, vendor: str) -> BatchBuilder:
        return cls(None, vendor, catalogue=catalogue, attributor=attributor)

    def _model_info(self, model: str | None, mig_profile: str | None):
        key = (model, mig_profile)
        hit = self._peak_cache.get(key)
        if hit is None:
            cat = self.catalogue.lookup(model)
            peak = cat.peak_dense_tflops if cat else None
            if peak is not None and mig_profile:
                m = _MIG_SLICES.match(mig_profile)
                peak = peak * int(m.group(1)) / MIG_SLICES_PER_GPU if m else None
            hit = (cat.id if cat else None, cat.vendor if cat else self.vendor, peak)
            self._peak_cache[key] = hit
        return hit

    def build(self, batch: DeviceBatch, target: Target, ts: datetime) -> Scrape:
        n = len(batch)
        scrape = Scrape.parsed(target, ts, batch.stats, rows=n)
        if n == 0:
            return scrape
        meta: list[dict[str, Any]] = batch.meta
        row_ts = [ts if t is None else datetime.fromtimestamp(t / 1000, ts.tzinfo) for t in batch.ts_ms]
        cols: dict[str, pa.Array] = {
            "ts": pa.array(row_ts, TS),
            "device_id": pa.array(batch.ids, pa.string()),
            "site": pa.array([target.site] * n, pa.string()),
            "cluster": pa.array([target.cluster] * n, pa.string()),
            "host": pa.array([m["host"] for m in meta], pa.string()),
        }
        for c, typ in SAMPLE_MEASURES.items():
            values = batch.columns.get(c)
            if values is None:
                cols[c] = pa.nulls(n, pa.int64() if typ == "BIGINT" else pa.float64())
            elif typ == "BIGINT":
                cols[c] = pa.array([None if v is None else int(v) for v in values], pa.int64())
            else:
                cols[c] = pa.array(values, pa.float64())
        tenant = self.attributor.tenant
        cols["tenant"] = pa.array([tenant(dev, m["host"], t, m["namespace"], m["pod"], m["job"], m["job_user"])
                                   for dev, m, t in zip(batch.ids, meta, row_ts)], pa.string())
        for c in SAMPLE_LABELS:
            cols[c] = pa.array([m[c] for m in meta], pa.string())
        cols["source"] = pa.array([target.source] * n, pa.string())
        scrape.samples = pa.Table.from_pydict(cols, schema=SAMPLE_SCHEMA)

        used = batch.columns.get("mem_used_mib")
        free = batch.columns.get("mem_free_mib")
        dev_rows = []
        for i, m in enumerate(meta):
            cat_id, vendor, peak = self._model_info(m["model"], m["mig_profile"])
            used_i, free_i = (used[i], free[i]) if used and free else (None, None)
            total = used_i + free_i if used_i is not None and free_i is not None else None
            dev_rows.append({
                "device_id": batch.ids[i], "vendor": vendor, "model": m["model"],
                "catalogue_model": cat_id, "peak_dense_tflops": peak, "host": m["host"],
                "cluster": target.cluster, "site": target.site, "gpu_index": m["gpu_index"],
                "uuid": m["uuid"], "pci_bus_id": m["pci_bus_id"], "mig_parent": m["mig_parent"],
                "mig_profile": m["mig_profile"], "mem_total_mib": total,
                "driver_version": m["driver_version"], "source": target.source, "target": target.url,
                # the later of the sample's time and its scrape's tick: an exporter stamping its cache
                # time answers the cycle at `ts` with older samples, and is not "lost" (migration 008)
                "first_seen": row_ts[i], "last_seen": max(row_ts[i], ts),
            })
        scrape.devices = pa.Table.from_pylist(dev_rows, schema=DEVICE_SCHEMA)
        return scrape
