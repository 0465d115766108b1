"""The canonical, vendor-neutral data model's column names and types.

Collectors translate every exporter into these columns; the table catalogue
(queries/catalogue.py) builds the device_samples declaration from them, and a
meta-test checks the migrated schema against the catalogue. Units live in the
names. Missing values are NULL, never 0.
"""

from __future__ import annotations

# device_samples measurement columns: name -> DuckDB type
SAMPLE_MEASURES: dict[str, str] = {
    "util_pct": "DOUBLE",          # GPU utilisation, 0..100
    "gr_active": "DOUBLE",         # graphics engine active ratio, 0..1
    "sm_active": "DOUBLE",         # SM active ratio, 0..1
    "tensor_active": "DOUBLE",     # tensor pipe active ratio, 0..1
    "dram_active": "DOUBLE",       # memory interface active ratio, 0..1
    "mem_used_mib": "DOUBLE",
    "mem_free_mib": "DOUBLE",
    "power_w": "DOUBLE",
    "energy_j": "DOUBLE",          # counter since driver load
    "temp_c": "DOUBLE",
    "mem_temp_c": "DOUBLE",
    "sm_clock_mhz": "DOUBLE",
    "mem_clock_mhz": "DOUBLE",
    "throttle_reasons": "BIGINT",  # NVML/DCGM clocks-event bitmask
    "xid_last": "BIGINT",          # last XID seen (0 = none)
    "ecc_dbe_volatile": "BIGINT",
    "ecc_sbe_volatile": "BIGINT",
    "ecc_dbe_aggregate": "BIGINT",    # lifetime double-bit ECC errors
    "ecc_sbe_aggregate": "BIGINT",
    "remapped_rows_uncorrectable": "BIGINT",   # rows remapped after uncorrectable errors
    "remapped_rows_correctable": "BIGINT",
    "row_remap_pending": "BIGINT",    # 1: a remap waits for a GPU reset
    "row_remap_failed": "BIGINT",     # 1: remapping failed; the GPU needs service
    "processes": "BIGINT",            # compute processes running on the device
    "health": "BIGINT",            # exporter's own verdict: 1 healthy, 0 unhealthy (Ascend, AMD)
    "energy_delta_j": "DOUBLE",    # energy since this device's previous sample; counter resets handled
}

# the notes the table catalogue (queries/catalogue.py) gives the measure columns
SAMPLE_MEASURE_NOTES: dict[str, str] = {
    "util_pct": "GPU utilisation, 0..100",
    "gr_active": "graphics engine active ratio, 0..1",
    "sm_active": "SM active ratio, 0..1",
    "tensor_active": "tensor pipe active ratio, 0..1",
    "dram_active": "memory interface active ratio, 0..1",
    "energy_j": "counter since driver load",
    "throttle_reasons": "NVML/DCGM clocks-event bitmask",
    "xid_last": "last XID seen (0 = none)",
    "ecc_dbe_aggregate": "lifetime double-bit ECC errors",
    "remapped_rows_uncorrectable": "rows remapped after uncorrectable errors",
    "row_remap_pending": "1: a remap waits for a GPU reset",
    "row_remap_failed": "1: remapping failed; the GPU needs service",
    "processes": "compute processes running on the device",
    "health": "exporter's own verdict: 1 healthy, 0 unhealthy (Ascend, AMD)",
    "energy_delta_j": "energy since this device's previous sample; counter resets handled",
}

# What a real device can report: a value outside [low, high] (None: unbounded) is
# an exporter's glitch or an unsupported-field sentinel (AMD prints 65535 MHz for a
# clock it cannot read; dcgm-exporter has printed GPU utilisation of 808,334,905).
# The parser stores NULL for it and reports it on the sources page.
PLAUSIBLE_RANGES: dict[str, tuple[float | None, float | None]] = {
    "util_pct": (0, 100),
    "gr_active": (0, 1.05),        # ratios: a little over 1 from sampling jitter is kept
    "sm_active": (0, 1.05),
    "tensor_active": (0, 1.05),
    "dram_active": (0, 1.05),
    "mem_used_mib": (0, 4 * 1024 ** 2),    # 4 TiB: beyond any accelerator's memory
    "mem_free_mib": (0, 4 * 1024 ** 2),
    "mem_total_mib": (0, 4 * 1024 ** 2),   # parse-only (config.PARSE_ONLY_COLUMNS)
    "power_w": (0, 10_000),
    "energy_j": (0, None),
    "temp_c": (-40, 150),          # boards shut down near 100-110 C; 255 and 65535 are "no reading"
    "mem_temp_c": (-40, 150),
    "sm_clock_mhz": (0, 20_000),
    "mem_clock_mhz": (0, 20_000),
    "throttle_reasons": (0, None),
    "xid_last": (0, None),
    "ecc_dbe_volatile": (0, None),
    "ecc_sbe_volatile": (0, None),
    "ecc_dbe_aggregate": (0, None),
    "ecc_sbe_aggregate": (0, None),
    "remapped_rows_uncorrectable": (0, None),
    "remapped_rows_correctable": (0, None),
    "row_remap_pending": (0, 1),
    "row_remap_failed": (0, 1),
    "processes": (0, None),
    "health": (0, 1),
}

# measures the collector derives rather than reads from a source
DERIVED_MEASURES: tuple[str, ...] = ("energy_delta_j",)

# device_samples attribution/identity columns (strings)
SAMPLE_LABELS: tuple[str, ...] = ("namespace", "pod", "container", "job", "job_user")

# Device attributes a mapping may fill from a string-valued field or a label.
DEVICE_ATTRIBUTES: tuple[str, ...] = ("model", "driver_version", "pci_bus_id")

# Label roles a mapping may name.
LABEL_ROLES: tuple[str, ...] = (
    "uuid", "gpu_index", "host", "model", "pci_bus_id", "driver_version",
    "mig_profile", "mig_instance", "namespace", "pod", "container", "job", "job_user",
)

# facility_samples measures and the label roles a facility mapping may name
FACILITY_MEASURES: tuple[str, ...] = ("power_w", "energy_kwh")
FACILITY_LABEL_ROLES: tuple[str, ...] = ("site", "meter", "scope", "pue_category")

# Thermal bits of the clocks-event (throttle) reason mask, as NVML defines them:
# SW thermal slowdown 0x20, HW thermal slowdown 0x40, HW slowdown 0x08.
THERMAL_THROTTLE_MASK = 0x20 | 0x40 | 0x08
