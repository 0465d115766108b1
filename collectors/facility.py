"""Facility meter collector: DCIM/SNMP-style exposition -> facility_samples.

Metric and label names come from config/mappings/facility.toml. A meter row
carries its scope (facility / it / cooling) and, for IT meters, the PUE
measurement category, so PUE can be labelled with where IT energy was measured.
The rows come out of the series -> rows stage (collectors/rows.py), the same
one the Prometheus collector feeds, so a meter read either way is the same row.
"""

from __future__ import annotations

import time
from datetime import datetime

import pyarrow as pa

from collectors.batch import Scrape
from collectors.exposition import parse_series
from collectors.kinds.base import Collector
from collectors.rows import FACILITY_SCHEMA, FacilityMapping, facility_rows
from collectors.targets import Fetch, Target, fetch
from config import Config

__all__ = ["FACILITY_SCHEMA", "FacilityCollector"]


class FacilityCollector(Collector):
    kind = "facility"

    def __init__(self, cfg: Config, *, fetch: Fetch = fetch, mapping: str = "facility"):
        self.mapping = FacilityMapping.from_config(cfg.mappings[mapping])
        self.timeout = cfg.collection.timeout_s
        self.fetch = fetch

    def collect(self, target: Target, ts: datetime) -> Scrape:
        return self.from_text(self.fetch(target.url, self.timeout), target, ts)

    def from_text(self, text: str, target: Target, ts: datetime, *, track: bool = True) -> Scrape:
        t0 = time.perf_counter()
        series, stats = parse_series(text)
        rows = facility_rows(series, stats, self.mapping, site=target.site, source=target.source, tick=ts)
        table = pa.Table.from_pylist(rows, schema=FACILITY_SCHEMA)
        return Scrape.parsed(target, ts, stats, facility=table, rows=table.num_rows,
                             parse_s=time.perf_counter() - t0)
