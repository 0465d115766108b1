"""Prometheus community ipmi_exporter -> facility_samples: each server's input power.

`ipmi_dcmi_power_consumption_watts` (renamed `..._current_watts` in newer releases; both
are in config/mappings/ipmi.toml) is what the server's BMC reads at its power supplies'
input: the IT equipment's own input, ISO/IEC 30134-2 PUE category 3. Each server is one
meter (scope "it", category 3, from the mapping's `defaults`), so the energy work can sum
category-3 IT power per site, and per cluster through the source's targets.

The exporter prints the reading without labels; which server it is comes from the target:
the `target` query parameter of a multi-target scrape (`/ipmi?module=dcmi&target=bmc-07`),
else the target's host (the in-band `/metrics` of the node itself). Text read through a
proxy that labels it (`instance`, as Prometheus' multi-target relabelling does) keeps the
label. The rows come out of the shared series -> rows stage (collectors/rows.py), which
applies the mapping's `defaults`; this module only names the meter the text leaves out.

`ipmi_up{collector="..."}` says which of the exporter's collectors reached the BMC. The
dcmi collector down means no power reading: the scrape fails with that reason (the Sources
page shows it) instead of storing nothing quietly; another collector down, or a BMC that
answers without a power measurement (the exporter then prints no power metric), is a note.
"""

from __future__ import annotations

import time
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa

from collectors.batch import Scrape
from collectors.exposition import parse_series
from collectors.kinds.base import Collector
from collectors.rows import FACILITY_SCHEMA, FacilityMapping, facility_rows
from collectors.targets import Fetch, ScrapeError, Target, fetch
from config import MappingFile
from i18n import msg

POWER_COLLECTOR = "dcmi"        # the exporter's collector that reads the power


def server_of(url: str) -> str | None:
    """The server a target URL reads: its `target` query parameter, else its host name."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    named = parse_qs(parts.query).get("target")
    return named[0] if named and named[0] else parts.hostname or None


class IpmiCollector(Collector):
    """One ipmi_exporter target (see module docstring)."""

    kind = "ipmi"

    def __init__(self, mapping: MappingFile, *, timeout_s: float, fetch: Fetch = fetch):
        self.mapping = FacilityMapping.from_config(mapping)
        self.meter_labels = self.mapping.labels.get("meter", ())
        self.timeout = timeout_s
        self.fetch = fetch

    @classmethod
    def for_source(cls, source, deps, *, fetch: Fetch = fetch) -> IpmiCollector:
        name = source.mapping_names[0] if source.mapping_names else "ipmi"
        return cls(deps.mappings[name], timeout_s=source.timeout_s or deps.collection.timeout_s, fetch=fetch)

    def collect(self, target: Target, ts: datetime) -> Scrape:
        return self.from_text(self.fetch(target.url, self.timeout), target, ts)

    def from_text(self, text: str, target: Target, ts: datetime, *, track: bool = True) -> Scrape:
        t0 = time.perf_counter()
        series, stats = parse_series(text)
        server = target.host or server_of(target.url)
        up: dict[str, float | None] = {}
        meter_label = self.meter_labels[0] if self.meter_labels else "meter"
        for s in series:
            if s.name == "ipmi_up":
                up[s.labels.get("collector", "")] = s.value
            elif server and not any(s.labels.get(n) for n in self.meter_labels):
                s.labels[meter_label] = server
        down = sorted(c for c, v in up.items() if v == 0)
        if POWER_COLLECTOR in down:
            raise ScrapeError(msg("msg.ipmi.dcmi_down", server=server or target.url))
        rows = facility_rows(series, stats, self.mapping, site=target.site, source=target.source, tick=ts)
        table = pa.Table.from_pylist(rows, schema=FACILITY_SCHEMA)
        scrape = Scrape.parsed(target, ts, stats, facility=table, rows=table.num_rows,
                               parse_s=time.perf_counter() - t0)
        if down:
            scrape.notes.append(msg("msg.ipmi.collectors_down", collectors=", ".join(down)))
        if not rows:
            scrape.notes.append(msg("msg.ipmi.no_power") if POWER_COLLECTOR in up else msg("msg.ipmi.no_dcmi"))
        return scrape
