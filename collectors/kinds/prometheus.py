"""Kind `prometheus`: one Prometheus server's HTTP API, queried for the metric names of the
listed mapping tables (device and facility), with range queries to back-fill gaps.

The collector (collectors/prometheus.py) still takes the whole Config and the Source."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from collectors.kinds.base import Collector, Deps, Options, SourceKind, check_urls


class PrometheusOptions(Options):
    KIND = "prometheus"

    targets: Annotated[list[str], Field(validate_default=True)] = []
    host_from: Literal["label", "target"] = "label"
    mappings: list[str] | None = None

    @field_validator("targets")
    @classmethod
    def _one_url(cls, v: list[str]) -> list[str]:
        if len(v) != 1:
            raise ValueError("a prometheus source takes exactly one base URL "
                             f"(e.g. [\"http://prometheus:9090\"]), got {len(v)}")
        return check_urls(v)


def build(source, deps: Deps):
    from collectors.prometheus import PrometheusCollector

    class Prometheus(PrometheusCollector, Collector):
        """PrometheusCollector with the common lifecycle defaults (its own resume_from wins)."""

    return Prometheus(deps.config, source, tracker=deps.tracker, clock=deps.clock)


KIND = SourceKind(name="prometheus", options=PrometheusOptions, vendor="other", default_mappings=("dcgm",),
                  build=build, targets="one", collector="collectors.prometheus:PrometheusCollector",
                  mapping_tables=("device_samples", "facility_samples"))
