"""Huawei Ascend NPU Exporter (MindCluster npu-exporter) `/metrics` -> canonical rows.

Everything vendor-specific is data in config/mappings/ascend.toml. Two things
differ from dcgm-exporter and are handled by the shared parser: every sample
carries a millisecond timestamp (when the exporter last read the chip, which
becomes the row's time), and no label names the host, so the host is the
scrape target's (see ExporterCollector.from_text).
"""

from __future__ import annotations

from collectors.dcgm import ExporterCollector


class AscendCollector(ExporterCollector):
    """Ascend NPUs (910B and kin) through the npu-exporter."""

    kind = "ascend"
    mapping_name = "ascend"
    vendor = "huawei"
