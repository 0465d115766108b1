"""AMD Device Metrics Exporter (ROCm/device-metrics-exporter) `/metrics` -> canonical rows.

Everything vendor-specific is data in config/mappings/amd.toml (metric names,
units, labels); this class only names the table and the vendor. The exporter
prints one gauge per metric with its labels sorted by name, values in Go's
shortest float form (large counters such as gpu_energy_consumed in e-notation),
and no sample timestamps.
"""

from __future__ import annotations

from collectors.dcgm import ExporterCollector


class AmdCollector(ExporterCollector):
    """AMD Instinct GPUs through the Device Metrics Exporter."""

    kind = "amd"
    mapping_name = "amd"
    vendor = "amd"
