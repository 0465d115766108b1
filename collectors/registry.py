"""Configured sources -> collectors, through the kinds declared in collectors/kinds/.

`kinds()` is the registry (one module per kind, one line each in
collectors/kinds/__init__.py). `deps(cfg, ...)` makes the dependencies every
kind's constructor shares (clock, event tracker, catalogue, attribution, mapping
tables, collection defaults); `build(cfg, deps)` gives one `Built` per source: the
source, its collector, its targets and its retries.

`build_jobs`, `make_collector`, `collector_class` and `source_targets` keep the
older call forms working for their callers.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Any, Callable

from collectors.attribution import Attributor
from collectors.batch import EventTracker
from collectors.kinds import kinds
from collectors.kinds.base import Collector, Deps, SourceKind
from collectors.targets import Target
from config import Config, Source

__all__ = ["Built", "Deps", "SourceKind", "build", "build_jobs", "collector_class", "deps", "kinds",
           "make_collector", "source_targets"]


@dataclass(frozen=True)
class Built:
    """One configured source, ready for the scheduler."""

    source: Source
    collector: Collector
    targets: list[Target]
    retries: int

    @property
    def job(self) -> tuple[Collector, list[Target], int]:
        """The scheduler's (collector, targets, retries)."""
        return self.collector, self.targets, self.retries


def deps(cfg: Config, *, tracker: EventTracker | None = None, clock: Callable[[], float] = time.time) -> Deps:
    """The shared dependencies of one runtime's collectors (one tracker: the runtime primes it
    from the store, so a restart does not report the same XID twice)."""
    return Deps(clock=clock, tracker=tracker or EventTracker(), catalogue=cfg.catalogue,
                attributor=Attributor(cfg), mappings=cfg.mappings, collection=cfg.collection, config=cfg)


def source_targets(source: Source) -> list[Target]:
    kind = source.kind_spec
    if kind.make_targets is not None:
        return kind.make_targets(source)
    return [Target(url=u, source=source.name, kind=source.kind, site=source.site, cluster=source.cluster)
            for u in source.targets]


def build_one(source: Source, shared: Deps) -> Built:
    collector = source.kind_spec.build(source, shared)
    return Built(source=source, collector=collector, targets=source_targets(source), retries=source.retries)


def build(cfg: Config, shared: Deps) -> list[Built]:
    """One collector per configured source, each with its own timeout and options."""
    return [build_one(source, shared) for source in cfg.sources]


def collector_class(kind: str) -> Any:
    """The collector class of a kind, for callers that construct it themselves."""
    module, name = kinds()[kind].collector.split(":")
    return getattr(importlib.import_module(module), name)


def make_collector(cfg: Config, source: Source, tracker: EventTracker | None = None) -> Collector:
    """One collector for one configured source, with the source's own timeout."""
    return build_one(source, deps(cfg, tracker=tracker)).collector


def build_jobs(cfg: Config, tracker: EventTracker | None = None) -> tuple[list[tuple], list]:
    """(jobs, [(source, collector)]) for every configured source: the older form of `build`."""
    built = build(cfg, deps(cfg, tracker=tracker))
    return [b.job for b in built], [(b.source, b.collector) for b in built]
