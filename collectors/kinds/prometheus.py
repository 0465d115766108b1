"""Kind `prometheus`: one Prometheus server's HTTP API, queried for the metric names of the
listed mapping tables (device and facility), with range queries to back-fill gaps and, on
first start, an import of `history_days` of history (collectors/prometheus.py,
`HistoryImport`; docs/prometheus-import.md).

A central Prometheus covers many clusters and sites: `cluster_label` and `site_label` name
the series labels that carry them; the source's own `cluster` and `site` are the default for
a series without them.

The collector (collectors/prometheus.py) still takes the whole Config and the Source."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from collectors.kinds.base import Collector, Deps, Options, SourceKind, check_urls

MAX_HISTORY_DAYS = 3660          # ten years: more than any Prometheus retention worth importing
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")      # Prometheus' label name syntax


class PrometheusOptions(Options):
    KIND = "prometheus"

    targets: Annotated[list[str], Field(validate_default=True)] = []
    host_from: Literal["label", "target"] = "label"
    mappings: list[str] | None = None
    # days of history imported on first start (0: none); Prometheus keeps 15 days by default
    history_days: int = 30
    # series labels naming a row's cluster / site (None: the source's own for every row)
    cluster_label: str | None = None
    site_label: str | None = None

    @field_validator("targets")
    @classmethod
    def _one_url(cls, v: list[str]) -> list[str]:
        if len(v) != 1:
            raise ValueError("a prometheus source takes exactly one base URL "
                             f"(e.g. [\"http://prometheus:9090\"]), got {len(v)}")
        return check_urls(v)

    @field_validator("history_days")
    @classmethod
    def _days(cls, v: int) -> int:
        if not 0 <= v <= MAX_HISTORY_DAYS:
            raise ValueError(f"must be 0 (no import) to {MAX_HISTORY_DAYS} days, got {v}")
        return v

    @field_validator("cluster_label", "site_label")
    @classmethod
    def _label(cls, v: str | None) -> str | None:
        if v is not None and not _LABEL_NAME.match(v):
            raise ValueError(f"{v!r} is not a Prometheus label name (letters, digits and _, "
                             "not starting with a digit), e.g. \"cluster\"")
        if v is not None and v.startswith("__"):
            raise ValueError(f"{v!r}: labels starting with __ are Prometheus' own and never reach a query result")
        return v


def build(source, deps: Deps):
    from collectors.prometheus import PrometheusCollector

    class Prometheus(PrometheusCollector, Collector):
        """PrometheusCollector with the common lifecycle defaults (its own resume_from wins)."""

    return Prometheus(deps.config, source, tracker=deps.tracker, clock=deps.clock)


KIND = SourceKind(name="prometheus", options=PrometheusOptions, vendor="other", default_mappings=("dcgm",),
                  build=build, targets="one", collector="collectors.prometheus:PrometheusCollector",
                  mapping_tables=("device_samples", "facility_samples"))
