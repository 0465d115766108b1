"""Exporter collectors: dcgm-exporter (and any exporter a mapping table describes)
-> canonical device rows and events.

Field and label names live in config/mappings/<name>.toml; this module fetches
the text, parses it with that table and hands the result to the shared
`BatchBuilder` and `EventTracker` (collectors/batch.py).
"""

from __future__ import annotations

import time
from datetime import datetime
from urllib.parse import urlsplit

import pyarrow as pa

from collectors.batch import EVENT_SCHEMA, PARSE_LOCK, BatchBuilder, EventTracker, Scrape
from collectors.exposition import CompiledMapping, parse_devices
from collectors.targets import Fetch, Target, fetch
from config import Config


class ExporterCollector:
    """Scrape Prometheus-text exporters (or parse their text) into canonical batches."""

    kind = "exporter"
    mapping_name = ""
    vendor = "other"

    def __init__(self, cfg: Config, *, fetch: Fetch = fetch, mapping: str | None = None,
                 host_from_label: bool = True, tracker: EventTracker | None = None):
        self.mapping = CompiledMapping.from_config(cfg.mappings[mapping or self.mapping_name])
        self.builder = BatchBuilder(cfg, self.vendor)
        self.timeout = cfg.collection.timeout_s
        self.fetch = fetch
        self.host_from_label = host_from_label
        self.tracker = tracker or EventTracker()

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
