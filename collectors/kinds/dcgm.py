"""Kind `dcgm`: NVIDIA dcgm-exporter `/metrics` URLs, read with mappings/dcgm.toml."""

from __future__ import annotations

from collectors.kinds.base import Deps, ExporterOptions, SourceKind


class DcgmOptions(ExporterOptions):
    KIND = "dcgm"


def build(source, deps: Deps):
    from collectors.dcgm import DcgmCollector

    return DcgmCollector.for_source(source, deps)


KIND = SourceKind(name="dcgm", options=DcgmOptions, vendor="nvidia", default_mappings=("dcgm",), build=build,
                  parses_text=True, collector="collectors.dcgm:DcgmCollector")
