"""Source kinds -> collectors: one registration line per kind.

`build_jobs(cfg, sources)` turns configured sources into the scheduler's
(collector, targets, retries) jobs, one collector per source (its own
timeout, its own event tracker), plus `Target`s for each endpoint.
"""

from __future__ import annotations

import importlib
import socket
from dataclasses import replace

from collectors.batch import EventTracker
from collectors.targets import Target
from config import Config, Source

# kind -> "module:Class"; imported on first use so a missing optional library
# (NVML on a host without NVIDIA drivers) never stops the other sources
KINDS: dict[str, str] = {
    "dcgm": "collectors.dcgm:DcgmCollector",
    "amd": "collectors.amd:AmdCollector",
    "ascend": "collectors.ascend:AscendCollector",
    "nvml": "collectors.nvml:NvmlCollector",
    "prometheus": "collectors.prometheus:PrometheusCollector",
    "facility": "collectors.facility:FacilityCollector",
}


def collector_class(kind: str):
    module, name = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def source_targets(source: Source) -> list[Target]:
    if source.kind == "nvml":
        host = source.host or socket.gethostname()
        return [Target(url=f"nvml://{host}", source=source.name, kind="nvml", site=source.site,
                       cluster=source.cluster, host=host)]
    return [Target(url=u, source=source.name, kind=source.kind, site=source.site, cluster=source.cluster)
            for u in source.targets]


def make_collector(cfg: Config, source: Source, tracker: EventTracker | None = None):
    """One collector for one configured source, with the source's own timeout."""
    if source.timeout_s is not None:
        cfg = replace(cfg, collection=cfg.collection.model_copy(update={"timeout_s": source.timeout_s}))
    cls = collector_class(source.kind)
    if source.kind == "prometheus":
        return cls(cfg, source, tracker=tracker)
    if source.kind == "nvml":
        return cls(cfg, host=source_targets(source)[0].host, tracker=tracker)
    mapping = source.mapping_names[0] if source.mapping_names else None
    if source.kind == "facility":
        return cls(cfg, mapping=mapping or "facility")
    return cls(cfg, mapping=mapping, host_from_label=source.host_from == "label", tracker=tracker)


def build_jobs(cfg: Config, tracker: EventTracker | None = None) -> tuple[list[tuple], list]:
    """(jobs, collectors) for every configured source."""
    jobs, collectors = [], []
    for source in cfg.sources:
        collector = make_collector(cfg, source, tracker)
        collectors.append((source, collector))
        jobs.append((collector, source_targets(source), source.retries))
    return jobs, collectors
