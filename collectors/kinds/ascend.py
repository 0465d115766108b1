"""Kind `ascend`: Huawei Ascend npu-exporter `/metrics` URLs, read with mappings/ascend.toml."""

from __future__ import annotations

from collectors.kinds.base import Deps, ExporterOptions, SourceKind


class AscendOptions(ExporterOptions):
    KIND = "ascend"


def build(source, deps: Deps):
    from collectors.ascend import AscendCollector

    return AscendCollector.for_source(source, deps)


KIND = SourceKind(name="ascend", options=AscendOptions, vendor="huawei", default_mappings=("ascend",),
                  build=build, parses_text=True, collector="collectors.ascend:AscendCollector")
