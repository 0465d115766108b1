"""The one series -> rows stage: exporter text and Prometheus query results -> device, facility and event rows.

Both sources arrive as series: a metric name, its labels and one or more (time, value)
points. `collectors.exposition.parse_series` gives one point per text line;
a Prometheus range-vector result gives every raw sample a series holds in the read
window. Everything that turns such series into canonical rows lives here, so a meter or
GPU read through Prometheus is the same row as the one read from its exporter (PUE read
either way cannot drift apart):

- `DevicePivot`: a device mapping table (CompiledMapping) -> one row of canonical
  columns per device per instant, with the device identity rule of
  `exposition.device_identity`, label-selected fields (`gpu_clock{clock_type="system"}`),
  DCGM's blank sentinels, one gpu index per device id, unmapped counting and issues;
  `DevicePivot.batch` makes an instant a `DeviceBatch` through `finish_columns`.
- `FacilityPivot`: a facility mapping table -> one row per (site, meter) per instant,
  with the scope and PUE-category checks.
- `Rows`: what one Scrape collects, device batches through the shared EventTracker
  (energy deltas, XID/thermal/ECC/lost events) and BatchBuilder, facility rows and
  events, turned into the Scrape's Arrow tables by `Rows.scrape`; `batch_scrape` does
  the same for a single batch (one exporter's text).

An instant is `(exporter, time)`: with `by_time` (Prometheus) every sample time of
every exporter behind Prometheus is its own instant, to be regrouped into scrapes by
the caller; without it (exporter text) the whole text is one instant and a row carries
the first timestamp printed for it, as `parse_devices` reads it.

`exposition.parse_devices` stays the fast path for exporter text: a hand-tuned parser
doing this stage and the parse in one pass for dcgm/AMD/Ascend scrapes of thousands of
GPUs. tests/test_rows.py feeds every device fixture through both and asserts the same
ids, identity and values, so the two cannot drift apart either. String-valued fields
(`DCGM_FI_DEV_NAME ... Tesla T4`) exist only in that fast path: a series carries numbers.

The stage works per series, not per sample: a Prometheus series' points are converted
in one comprehension and its labels are resolved to a device once per pivot.

For a history import (tens of millions of samples) the last section holds the same steps on
arrays: `parse_matrix` reads a range-vector answer into numpy arrays per series, `blank_mask`
and `screen_columns` are `is_blank` and `finish_columns` for arrays, `nullable` makes the
Arrow columns. PrometheusCollector._process_columnar uses them; tests/test_prom_import.py
checks it gives the rows the per-sample path gives.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from collectors.batch import EVENT_SCHEMA, BatchBuilder, EventTracker, Scrape
from collectors.exposition import (
    _FLOAT_MAX, _FP64_BLANK_MAX, _FP64_BLANK_MIN, _INT64_BLANK_MIN, _TS_MAX_MS, _TS_MIN_MS, CompiledMapping,
    DeviceBatch, ParseStats, Series, _canonical, _first, device_identity, finish_columns, is_blank, not_exposition,
)
from collectors.targets import Target
from config import MappingFile
from queries.catalogue import arrow_schema
from i18n import Msg, msg

FACILITY_SCHEMA = arrow_schema("facility_samples")     # declared once in queries/catalogue.py

# what a facility meter may measure (config/mappings/facility.toml)
SCOPES = ("facility", "it", "cooling")
# ISO/IEC 30134-2 PUE categories: 1 IT at UPS output, 2 at PDU output, 3 at IT equipment input
PUE_CATEGORIES = ("1", "2", "3")
_SHOWN = 40                     # characters of a bad value quoted in an issue

# one instant of a pivot: (group, sample time in ms); the group is the exporter (plus the
# device's host, for device rows); the time is None for exporter text read as one scrape
Instant = tuple[tuple, int | None]


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _usable(t: int | None, stats: ParseStats) -> int | None:
    """An exporter's timestamp a row can carry (years 1..9999), else None (the scrape's tick),
    counted as exposition.parse_devices counts it."""
    if t is not None and not _TS_MIN_MS <= t <= _TS_MAX_MS:
        stats.ts_unusable += 1
        return None
    return t


def series_text(name: str, labels: dict[str, str]) -> str:
    """A series as an issue quotes it: `name{a="1",b="2"}`."""
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _issue(stats: ParseStats, lineno: int | None, reason: Msg, name: str, labels: dict[str, str]) -> None:
    stats.add_issue(lineno or 0, reason, series_text(name, labels))


def query_points(values: Sequence, stats: ParseStats, name: str, labels: dict[str, str]) -> list[tuple[int, float]]:
    """A Prometheus result's `[[seconds, "value"], ...]` as (ms, value) points; a value that is
    not a number is reported and left out. Blank sentinels are screened by the pivots."""
    try:
        return [(round(float(t) * 1000), float(v)) for t, v in values]
    except (TypeError, ValueError):
        pass
    out = []
    for t, v in values:
        try:
            out.append((round(float(t) * 1000), float(v)))
        except (TypeError, ValueError):
            _issue(stats, None, msg("msg.parse.not_a_number", value=repr(str(v)[:_SHOWN])), name, labels)
    return out


def query_series(result: Iterable[dict]) -> Iterator[tuple[str, dict[str, str], Sequence, tuple[str, str]]]:
    """A Prometheus query result as series: (name, labels without __name__, raw values, exporter).

    The exporter is (job, instance): which scrape target of Prometheus the series came from."""
    for s in result:
        labels = dict(s.get("metric") or {})
        name = labels.pop("__name__", "")
        values = s.get("values")
        if values is None:
            values = [s["value"]] if s.get("value") else []
        yield name, labels, values, (labels.get("job", ""), labels.get("instance", ""))


def reset_counts(stats: ParseStats) -> ParseStats:
    """Stats of parse_series ready for a pivot: the pivot counts samples (mapped), unmapped
    series and blanks itself, as parse_devices does; lines, comments and issues stay."""
    stats.samples = stats.unmapped = stats.blanks = 0
    return stats


# ---------------------------------------------------------------- devices

class DevicePivot:
    """Series of one device mapping table -> instant -> device id -> [meta, {column: value}, ts_ms]."""

    def __init__(self, mapping: CompiledMapping, stats: ParseStats, *, host_from_label: bool = True,
                 by_time: bool = False):
        self.mapping = mapping
        self.stats = stats
        self.host_from_label = host_from_label
        self.by_time = by_time
        self.instants: dict[Instant, dict[str, list]] = {}
        self._idents: dict[tuple, Any] = {}                 # label set -> (group, device id, meta) | Msg
        self._index: dict[tuple, int | None] = {}           # (group, device id) -> its gpu index

    def column(self, name: str, labels: dict[str, str]) -> tuple[str, float] | None:
        """(column, scale) a series feeds, or None when the mapping does not use it."""
        target = self.mapping.numeric.get(name)
        if target is None:
            sel = self.mapping.selected.get(name)          # e.g. AMD gpu_clock{clock_type="system"}
            if sel is not None:
                target = sel[2].get(labels.get(sel[0], ""))
        return target

    def _identity(self, labels: dict[str, str], default_host: str | None, exporter: tuple):
        ck = (exporter, tuple(labels.items()))
        ident = self._idents.get(ck)
        if ident is not None:
            return ident
        roles = self.mapping.labels
        host = (_first(labels, roles.get("host", ())) or default_host) if self.host_from_label else default_host
        try:
            key, meta = device_identity(labels, roles, host)
        except ValueError:
            ident = msg("msg.parse.no_device")
        else:
            group = exporter + (host,) if self.by_time else exporter
            seen = self._index.setdefault((group, key), meta["gpu_index"])
            if seen != meta["gpu_index"]:
                # two devices under one id, e.g. AMD compute partitions sharing the card's serial number
                ident = msg("msg.parse.shared_id", device=key, gpu=seen)
            else:
                ident = (group, key, meta)
        self._idents[ck] = ident
        return ident

    def feed(self, name: str, labels: dict[str, str], points: Sequence, *, default_host: str | None = None,
             exporter: tuple = (), lineno: int | None = None, raw: bool = False) -> None:
        """One series. `points`: (ms or None, value or None) pairs, or with `raw` a Prometheus
        result's `[seconds, "value"]` pairs. `exporter` names where it came from (grouping
        the instants); `default_host` names the host when the labels do not."""
        stats = self.stats
        target = self.column(name, labels)
        if target is None:
            stats.unmapped += len(points)
            return
        ident = self._identity(labels, default_host, exporter)
        if isinstance(ident, Msg):
            _issue(stats, lineno, ident, name, labels)
            return
        group, key, meta = ident
        if raw:
            points = query_points(points, stats, name, labels)
        col, scale = target
        instants = self.instants
        by_time = self.by_time
        blanks = 0
        for t, x in points:
            t = _usable(t, stats)
            k = (group, t if by_time else None)
            inst = instants.get(k)
            if inst is None:
                inst = instants[k] = {}
            row = inst.get(key)
            if row is None:
                row = inst[key] = [meta, {}, t]
            elif row[2] is None:
                row[2] = t
            if x is None or is_blank(x):
                blanks += 1
                continue
            row[1][col] = x * scale if scale != 1.0 else x
        stats.samples += len(points)
        stats.blanks += blanks

    def batch(self, devs: dict[str, list]) -> DeviceBatch:
        """One scrape's rows (device id -> [meta, columns, ts_ms]) as a finished DeviceBatch."""
        ids = list(devs)
        rows = [devs[k] for k in ids]
        cols = {c: [r[1].get(c) for r in rows] for c in self.mapping.columns}
        finish_columns(cols, ids, self.stats)
        return DeviceBatch(ids, [r[0] for r in rows], cols, [r[2] for r in rows], self.stats)


def device_batch(series: Iterable[Series], stats: ParseStats, mapping: CompiledMapping, *,
                 default_host: str | None = None, host_from_label: bool = True) -> DeviceBatch:
    """Exporter text's series (parse_series) as one DeviceBatch: what parse_devices reads from
    the same text. Raises NotExposition when no line was a well-formed sample or comment."""
    pivot = DevicePivot(mapping, reset_counts(stats), host_from_label=host_from_label)
    for s in series:
        pivot.feed(s.name, s.labels, ((s.ts_ms, s.value),), default_host=default_host, lineno=s.lineno)
    if stats.well_formed == 0:
        raise not_exposition(stats)
    return pivot.batch(pivot.instants.get(((), None), {}))


# ---------------------------------------------------------------- facility

@dataclass(frozen=True)
class FacilityMapping:
    """A facility mapping table (table = "facility_samples") as lookup dicts."""

    fields: dict[str, tuple[str, float]]       # metric -> (column, scale)
    labels: dict[str, tuple[str, ...]]         # role -> label names, first present wins
    # role -> value for a series without such a label (IPMI power: scope "it", category "3")
    defaults: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, m: MappingFile) -> FacilityMapping:
        return cls({k: (f.column, float(f.scale)) for k, f in m.fields.items() if f.kind == "number"},
                   {r: tuple(v) for r, v in m.labels.items()}, dict(getattr(m, "defaults", None) or {}))

    def label(self, labels: dict[str, str], role: str) -> str | None:
        """A role's value: its first label present, else the mapping's default."""
        return _first(labels, self.labels.get(role, ())) or self.defaults.get(role)


class FacilityPivot:
    """Series of a facility mapping table -> instant -> (site, meter) -> facility row.

    A row's `ts` is the sample's time in ms (None: the scrape's tick) until `rows` turns it
    into a timestamp."""

    def __init__(self, mapping: FacilityMapping, stats: ParseStats, *, site: str, source: str,
                 by_time: bool = False):
        self.mapping = mapping
        self.stats = stats
        self.site = site
        self.source = source
        self.by_time = by_time
        self.instants: dict[Instant, dict[tuple[str, str], dict]] = {}

    def feed(self, name: str, labels: dict[str, str], points: Sequence, *, exporter: tuple = (),
             lineno: int | None = None, raw: bool = False) -> None:
        """One series, with `points` as in DevicePivot.feed."""
        stats = self.stats
        f = self.mapping.fields.get(name)
        if f is None:
            stats.unmapped += len(points)
            return
        label = self.mapping.label
        site = label(labels, "site") or self.site
        meter = label(labels, "meter")
        scope = label(labels, "scope")
        if meter is None or scope not in SCOPES:
            _issue(stats, lineno, msg("msg.rows.no_meter"), name, labels)
            return
        if raw:
            points = query_points(points, stats, name, labels)
        cat = label(labels, "pue_category")
        if cat is not None and cat not in PUE_CATEGORIES:
            _issue(stats, lineno, msg("msg.rows.bad_category", category=cat[:20]), name, labels)
            return
        column, scale = f
        for t, x in points:
            t = _usable(t, stats)
            inst = self.instants.setdefault((exporter, t if self.by_time else None), {})
            row = inst.get((site, meter))
            if row is None:
                row = inst[(site, meter)] = {
                    "ts": t, "site": site, "meter": meter, "scope": scope,
                    "pue_category": int(cat) if cat else None,
                    "power_w": None, "energy_kwh": None, "source": self.source}
            if x is None or is_blank(x):
                stats.blanks += 1
                x = None
            row[column] = None if x is None else x * scale
            stats.samples += 1

    @staticmethod
    def rows(meters: dict[tuple[str, str], dict], tick: datetime) -> list[dict]:
        """One instant's rows, stamped with their sample time or else `tick`."""
        return [{**r, "ts": tick if r["ts"] is None else _dt(r["ts"])} for r in meters.values()]


def facility_rows(series: Iterable[Series], stats: ParseStats, mapping: FacilityMapping, *, site: str,
                  source: str, tick: datetime) -> list[dict]:
    """Exporter text's series (parse_series) as facility rows, one per (site, meter)."""
    pivot = FacilityPivot(mapping, reset_counts(stats), site=site, source=source)
    for s in series:
        pivot.feed(s.name, s.labels, ((s.ts_ms, s.value),), lineno=s.lineno)
    return pivot.rows(pivot.instants.get(((), None), {}), tick)


# ---------------------------------------------------------------- one scrape's rows

def track(tracker: EventTracker, batch: DeviceBatch, target: Target, ts: datetime) -> list[dict]:
    """One scrape of `target` through the tracker: energy deltas into the batch, its events out."""
    batch.columns["energy_delta_j"] = tracker.energy_deltas(batch)
    return tracker.observe(target, ts, batch)


def batch_scrape(batch: DeviceBatch, builder: BatchBuilder, target: Target, ts: datetime,
                 tracker: EventTracker | None = None) -> Scrape:
    """One scrape's finished batch as a Scrape (samples, devices and, with a tracker, events):
    what an exporter collector makes of one text, whichever parse produced the batch."""
    events = track(tracker, batch, target, ts) if tracker is not None else None
    scrape = builder.build(batch, target, ts)
    if events:
        scrape.events = pa.Table.from_pylist(events, schema=EVENT_SCHEMA)
    return scrape


@dataclass
class _Devices:
    builder: BatchBuilder
    ids: list[str] = field(default_factory=list)
    meta: list[dict] = field(default_factory=list)
    columns: dict[str, list] = field(default_factory=dict)
    ts_ms: list[int | None] = field(default_factory=list)
    target: list[str] = field(default_factory=list)
    # (cluster, site) per row where a series label named them (Prometheus' cluster_label /
    # site_label), None where the scrape's target's own apply
    place: list[tuple[str, str] | None] = field(default_factory=list)


def _placed(table: pa.Table, place: list[tuple[str, str] | None], target: Target) -> pa.Table:
    """`table` (samples or devices) with each row's cluster and site from `place` where given."""
    if not any(place):
        return table
    for i, col in ((0, "cluster"), (1, "site")):
        own = target.cluster if i == 0 else target.site
        table = table.set_column(table.schema.get_field_index(col), col,
                                 pa.array([own if p is None else p[i] for p in place], pa.string()))
    return table


@dataclass
class Rows:
    """The rows of one Scrape in the making, added scrape by scrape in time order."""

    stats: ParseStats = field(default_factory=ParseStats)
    facility: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    parse_s: float = 0.0
    notes: list[Msg | str] = field(default_factory=list)       # carried onto the Scrape
    _dev: dict[str, _Devices] = field(default_factory=dict)

    def add_devices(self, table: str, builder: BatchBuilder, batch: DeviceBatch, target_url: str,
                    tracker: EventTracker | None = None, tracked: Target | None = None,
                    ts: datetime | None = None, place: tuple[str, str] | None = None) -> None:
        """One scrape's finished batch of a mapping table; with a tracker, its energy deltas and
        events first (`tracked` is the target whose presence the tracker follows, at `ts`).
        `target_url` is what the devices rows name as the device's target; `place` the
        (cluster, site) of its rows when not the Scrape's target's."""
        if tracker is not None and tracked is not None and ts is not None:
            self.events.extend(track(tracker, batch, tracked, ts))
        a = self._dev.get(table)
        if a is None:
            a = self._dev[table] = _Devices(builder, columns={c: [] for c in batch.columns})
        a.ids.extend(batch.ids)
        a.meta.extend(batch.meta)
        for c, values in batch.columns.items():
            a.columns[c].extend(values)
        a.ts_ms.extend(batch.ts_ms)
        a.target.extend([target_url] * len(batch.ids))
        a.place.extend([place] * len(batch.ids))

    def scrape(self, target: Target, ts: datetime) -> Scrape:
        """Everything added, as one Scrape at tick `ts`: a samples row per device per scrape, one
        devices row per device (the newest row's identity, first_seen from its oldest row),
        the facility rows and the events."""
        t1 = time.perf_counter()
        samples, devices = [], []
        for a in self._dev.values():
            if not a.ids:
                continue
            full = DeviceBatch(a.ids, a.meta, a.columns, a.ts_ms, ParseStats())
            placed = _placed(a.builder.build(full, target, ts).samples, a.place, target)
            samples.append(placed)
            newest: dict[str, int] = {}
            oldest: dict[str, int | None] = {}
            for i, dev in enumerate(a.ids):
                newest[dev] = i
                oldest.setdefault(dev, a.ts_ms[i])
            idx = list(newest.values())
            sub = DeviceBatch([a.ids[i] for i in idx], [a.meta[i] for i in idx],
                              {c: [v[i] for i in idx] for c, v in a.columns.items()},
                              [a.ts_ms[i] for i in idx], ParseStats())
            table = a.builder.build(sub, target, ts).devices
            if table is None:
                continue
            table = table.set_column(table.schema.get_field_index("target"), "target",
                                     pa.array([a.target[i] for i in idx], pa.string()))
            table = _placed(table, [a.place[i] for i in idx], target)
            first = [ts if o is None else _dt(o) for o in (oldest[d] for d in sub.ids)]
            table = table.set_column(table.schema.get_field_index("first_seen"), "first_seen",
                                     pa.array(first, table.schema.field("first_seen").type))
            devices.append(table)
        scrape = Scrape.parsed(target, ts, self.stats)
        scrape.notes.extend(self.notes)
        if samples:
            scrape.samples = samples[0] if len(samples) == 1 else pa.concat_tables(samples)
            scrape.devices = devices[0] if len(devices) == 1 else pa.concat_tables(devices)
        if self.facility:
            scrape.facility = pa.Table.from_pylist(self.facility, schema=FACILITY_SCHEMA)
        if self.events:
            scrape.events = pa.Table.from_pylist(self.events, schema=EVENT_SCHEMA)
        scrape.rows = (scrape.samples.num_rows if scrape.samples is not None else 0) + (
            scrape.facility.num_rows if scrape.facility is not None else 0)
        scrape.parse_s = self.parse_s + time.perf_counter() - t1
        return scrape


# ---------------------------------------------------------------- columnar: a history import's windows

_STRIP = str.maketrans("", "", '[]"')


def parse_matrix(body: bytes | str) -> list[tuple[dict[str, str], np.ndarray, np.ndarray]] | None:
    """A `/api/v1/query` answer holding a range vector ("matrix") as, per series, (its labels with
    `__name__`, sample times in ms, values), read without a Python object per sample: each
    series' `"values":[[t,"v"],...]` becomes one numpy array of the text's numbers. None when
    the body is not laid out as Prometheus writes it (the caller reads it with json instead).

    What json costs here is the point: at 88 M samples, one list and one str per sample are
    most of an import's time; a number text is parsed once, in C, as json would."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    head = text.find('"result":[')
    if not text.startswith('{"status":"success"') or head < 0 or '"resultType":"matrix"' not in text[:head]:
        return None
    decode = json.JSONDecoder().raw_decode
    out = []
    pos = head + len('"result":[')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # a short read is detected by its size below
        while not text.startswith("]", pos):
            if not text.startswith('{"metric":', pos):
                return None
            labels, end = decode(text, pos + len('{"metric":'))
            if not text.startswith(',"values":[[', end):
                return None
            start = end + len(',"values":[')
            stop = text.find("]]", start)
            if stop < 0:
                return None
            numbers = text[start:stop + 1].translate(_STRIP)
            arr = np.fromstring(numbers, sep=",")
            if arr.size != numbers.count(",") + 1 or arr.size % 2:
                return None
            arr = arr.reshape(-1, 2)
            out.append((labels, np.rint(arr[:, 0] * 1000).astype(np.int64), arr[:, 1].copy()))
            pos = stop + 2
            if not text.startswith("}", pos):
                return None
            pos += 1
            if text.startswith(",", pos):
                pos += 1
    return out


def blank_mask(values: np.ndarray) -> np.ndarray:
    """`is_blank` for an array: DCGM's blank sentinels and NaN."""
    return (((values >= _INT64_BLANK_MIN) & (values < np.inf))
            | ((values >= _FP64_BLANK_MIN) & (values <= _FP64_BLANK_MAX)) | np.isnan(values))


def screen_columns(columns: dict[str, np.ndarray], ids: Sequence[str] | Any, stats: ParseStats) -> None:
    """`exposition.finish_columns` for float arrays with NaN for "no value", in place: implausible
    values become NaN and are counted (first device and value); mem_total_mib gives
    mem_free_mib where the exporter printed none."""
    ranges = _canonical()[0]
    for col, values in columns.items():
        bounds = ranges.get(col)
        if bounds is None or not len(values):
            continue
        lo = bounds[0] if bounds[0] is not None else -_FLOAT_MAX
        hi = bounds[1] if bounds[1] is not None else _FLOAT_MAX
        bad = ~np.isnan(values) & ((values < lo) | (values > hi))
        if not bad.any():
            continue
        where = np.flatnonzero(bad)
        seen = stats.implausible.get(col)
        if seen is None:
            stats.implausible[col] = [len(where), str(ids[where[0]]), float(values[where[0]])]
        else:
            seen[0] += len(where)
        values[where] = np.nan
    total = columns.pop("mem_total_mib", None)
    if total is None:
        return
    used = columns.get("mem_used_mib")
    if used is None:
        return
    free = columns.setdefault("mem_free_mib", np.full(len(total), np.nan))
    fill = np.isnan(free) & ~np.isnan(total) & ~np.isnan(used) & (total >= used)
    free[fill] = total[fill] - used[fill]


def nullable(values: np.ndarray, typ: pa.DataType) -> pa.Array:
    """A float array with NaN for "no value" as an Arrow column (BIGINT columns truncated, as
    `BatchBuilder.build` does with int())."""
    mask = np.isnan(values)
    if pa.types.is_integer(typ):
        return pa.array(np.where(mask, 0, values).astype(np.int64), typ, mask=mask)
    return pa.array(values, typ, mask=mask)
