"""Kind `nvml`: the local NVIDIA GPUs through NVML; no targets, one `nvml://<host>` target.

pynvml is imported by the collector on first use, never here."""

from __future__ import annotations

import socket

from pydantic import field_validator

from collectors.kinds.base import Deps, Options, SourceKind


class NvmlOptions(Options):
    KIND = "nvml"

    targets: list[str] = []
    host: str | None = None         # host name to report (default: this machine's)

    @field_validator("targets")
    @classmethod
    def _no_targets(cls, v: list[str]) -> list[str]:
        if v:
            raise ValueError("an nvml source reads the local GPUs and takes no targets")
        return v


def host_of(source) -> str:
    return source.options.host or socket.gethostname()


def targets(source):
    from collectors.targets import Target

    host = host_of(source)
    return [Target(url=f"nvml://{host}", source=source.name, kind="nvml", site=source.site,
                   cluster=source.cluster, host=host)]


def build(source, deps: Deps):
    from collectors.nvml import NvmlCollector

    return NvmlCollector.for_source(source, deps, host=host_of(source))


KIND = SourceKind(name="nvml", options=NvmlOptions, vendor="nvidia", default_mappings=(), build=build,
                  targets="none", collector="collectors.nvml:NvmlCollector", make_targets=targets)
