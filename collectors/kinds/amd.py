"""Kind `amd`: AMD Device Metrics Exporter `/metrics` URLs, read with mappings/amd.toml."""

from __future__ import annotations

from collectors.kinds.base import Deps, ExporterOptions, SourceKind


class AmdOptions(ExporterOptions):
    KIND = "amd"


def build(source, deps: Deps):
    from collectors.amd import AmdCollector

    return AmdCollector.for_source(source, deps)


KIND = SourceKind(name="amd", options=AmdOptions, vendor="amd", default_mappings=("amd",), build=build,
                  parses_text=True, collector="collectors.amd:AmdCollector")
