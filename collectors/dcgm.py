"""Exporter collectors: dcgm-exporter (and any exporter a mapping table describes)
-> canonical device rows and events.

Field and label names live in config/mappings/<name>.toml; this module fetches
the text, parses it with that table and hands the result to the shared
`BatchBuilder` and `EventTracker` (collectors/batch.py).

A collector takes what it uses (its mapping table, a builder, its timeout, the
fetch function, the event tracker); `for_source` makes one for a configured
source from the registry's shared dependencies. `DcgmCollector(cfg, ...)`, the
older form that derives those pieces from a whole Config, still works.
"""

from __future__ import annotations

import time
from datetime import datetime
from urllib.parse import urlsplit

import pyarrow as pa

from collectors.batch import EVENT_SCHEMA, PARSE_LOCK, BatchBuilder, EventTracker, Scrape
from collectors.exposition import CompiledMapping, parse_devices
from collectors.kinds.base import Collector
from collectors.targets import Fetch, Target, fetch
from config import Config, MappingFile


class ExporterCollector(Collector):
    """Scrape Prometheus-text exporters (or parse their text) into canonical batches.

    Either `ExporterCollector(cfg, mapping="amd", ...)` (pieces from the Config: its mapping
    table by name, a builder, collection.timeout_s) or, without a Config,
    `ExporterCollector(mapping=<MappingFile>, builder=..., timeout_s=...)`."""

    kind = "exporter"
    mapping_name = ""
    vendor = "other"

    def __init__(self, cfg: Config | None = None, *, fetch: Fetch = fetch,
                 mapping: str | MappingFile | None = None, host_from_label: bool = True,
                 tracker: EventTracker | None = None, builder: BatchBuilder | None = None,
                 timeout_s: float | None = None):
        if cfg is not None:
            if not isinstance(mapping, MappingFile):
                mapping = cfg.mappings[mapping or self.mapping_name]
            builder = builder or BatchBuilder(cfg, self.vendor)
            timeout_s = cfg.collection.timeout_s if timeout_s is None else timeout_s
        if not isinstance(mapping, MappingFile) or builder is None or timeout_s is None:
            raise TypeError(f"{type(self).__name__}: give a Config, or a MappingFile, a builder and timeout_s")
        self.mapping = CompiledMapping.from_config(mapping)
        self.builder = builder
        self.timeout = timeout_s
        self.fetch = fetch
        self.host_from_label = host_from_label
        self.tracker = tracker or EventTracker()

    @classmethod
    def for_source(cls, source, deps, *, fetch: Fetch = fetch) -> ExporterCollector:
        """The collector of a configured source: its first mapping table (default: the kind's),
        its own timeout (default: collection.timeout_s), the shared tracker and attribution."""
        names = source.mapping_names
        return cls(mapping=deps.mappings[names[0] if names else cls.mapping_name],
                   builder=BatchBuilder.explicit(deps.catalogue, deps.attributor, cls.vendor),
                   timeout_s=source.timeout_s or deps.collection.timeout_s, fetch=fetch,
                   host_from_label=source.host_from == "label", tracker=deps.tracker)

    def collect(self, target: Target, ts: datetime) -> Scrape:
        """Fetch and parse one target. Raises ScrapeError / NotExposition on failure."""
        text = self.fetch(target.url, self.timeout)
        with PARSE_LOCK:
            return self.from_text(text, target, ts)

    def from_text(self, text: str, target: Target, ts: datetime, *, track: bool = True) -> Scrape:
        t0 = time.perf_counter()
        batch = parse_devices(text, self.mapping, default_host=target_host(target),
                              host_from_label=self.host_from_label)
        events = None
        if track:
            batch.columns["energy_delta_j"] = self.tracker.energy_deltas(batch)
            events = self.tracker.observe(target, ts, batch)
        scrape = self.builder.build(batch, target, ts)
        if events:
            scrape.events = pa.Table.from_pylist(events, schema=EVENT_SCHEMA)
        scrape.parse_s = time.perf_counter() - t0
        return scrape


def target_host(target: Target) -> str | None:
    """The node a target describes: its configured host, else the host name in its URL.

    Used where the text names no host (the Ascend exporter never does, old
    dcgm-exporters may not): a configured source's targets are bare URLs.
    """
    if target.host:
        return target.host
    try:
        return urlsplit(target.url).hostname or None
    except ValueError:
        return None


class DcgmCollector(ExporterCollector):
    """NVIDIA dcgm-exporter `/metrics`."""

    kind = "dcgm"
    mapping_name = "dcgm"
    vendor = "nvidia"
