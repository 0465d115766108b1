"""Facility meter collector: DCIM/SNMP-style exposition -> facility_samples.

Metric and label names come from config/mappings/facility.toml. A meter row
carries its scope (facility / it / cooling) and, for IT meters, the PUE
measurement category, so PUE can be labelled with where IT energy was measured.
"""

from __future__ import annotations

import time
from datetime import datetime

import pyarrow as pa

from collectors.batch import TS, Scrape
from collectors.exposition import parse_series
from collectors.targets import Fetch, Target, fetch
from config import Config

FACILITY_SCHEMA = pa.schema([
    ("ts", TS), ("site", pa.string()), ("meter", pa.string()), ("scope", pa.string()),
    ("pue_category", pa.int32()), ("power_w", pa.float64()), ("energy_kwh", pa.float64()),
    ("source", pa.string()),
])


class FacilityCollector:
    kind = "facility"

    def __init__(self, cfg: Config, *, fetch: Fetch = fetch, mapping: str = "facility"):
        m = cfg.mappings[mapping]
        self.fields = {k: (f.column, float(f.scale)) for k, f in m.fields.items()}
        self.labels = {r: tuple(v) for r, v in m.labels.items()}
        self.timeout = cfg.collection.timeout_s
        self.fetch = fetch

    def _label(self, labels: dict[str, str], role: str) -> str | None:
        for name in self.labels.get(role, ()):
            if labels.get(name):
                return labels[name]
        return None

    def collect(self, target: Target, ts: datetime) -> Scrape:
        return self.from_text(self.fetch(target.url, self.timeout), target, ts)

    def from_text(self, text: str, target: Target, ts: datetime, *, track: bool = True) -> Scrape:
        t0 = time.perf_counter()
        series, stats = parse_series(text)
        rows: dict[tuple[str, str], dict] = {}
        for s in series:
            f = self.fields.get(s.name)
            if f is None:
                continue
            site = self._label(s.labels, "site") or target.site
            meter = self._label(s.labels, "meter")
            scope = self._label(s.labels, "scope")
            if meter is None or scope not in ("facility", "it", "cooling"):
                stats.add_issue(s.lineno, "meter sample without a meter name or a scope of facility/it/cooling",
                                f"{s.name}{s.labels}")
                continue
            cat = self._label(s.labels, "pue_category")
            row = rows.setdefault((site, meter), {
                "ts": ts if s.ts_ms is None else datetime.fromtimestamp(s.ts_ms / 1000, ts.tzinfo),
                "site": site, "meter": meter, "scope": scope,
                "pue_category": int(cat) if cat and cat.isdigit() else None,
                "power_w": None, "energy_kwh": None, "source": target.source})
            column, scale = f
            row[column] = None if s.value is None else s.value * scale
        table = pa.Table.from_pylist(list(rows.values()), schema=FACILITY_SCHEMA)
        return Scrape.parsed(target, ts, stats, facility=table, rows=table.num_rows,
                             parse_s=time.perf_counter() - t0)
