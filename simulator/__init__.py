"""The embedded simulated centre: exporter (dcgm, AMD, Ascend) and facility-meter text over HTTP.

`Floor` models the configured clusters deterministically (any instant, any
order); `SimulatorServer` serves it on 127.0.0.1 like a floor of real exporters;
`render_dcgm` and `synthetic_gpus` serve benchmarks of very large scrapes.
"""

from simulator.exporter import render_amd, render_ascend, render_dcgm, render_facility
from simulator.model import ExporterDown, Floor, GpuState, HostInfo, synthetic_gpus
from simulator.server import SimulatorServer, Target

__all__ = ["ExporterDown", "Floor", "GpuState", "HostInfo", "SimulatorServer", "Target", "render_amd",
           "render_ascend", "render_dcgm", "render_facility", "synthetic_gpus"]
