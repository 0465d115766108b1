-- Exporters that judge health themselves (Ascend npu_chip_info_health_status,
-- AMD) get a column; energy counters are also stored as per-sample deltas with
-- counter resets handled (driver reload, exporter restart), so energy sums
-- never go negative.
ALTER TABLE device_samples ADD COLUMN health BIGINT;
ALTER TABLE device_samples ADD COLUMN energy_delta_j DOUBLE;
