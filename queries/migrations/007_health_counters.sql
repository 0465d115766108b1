-- 007: the health counters NVML and dcgm-exporter both report: memory clock,
-- single- and double-bit ECC (volatile and lifetime), row remapping (counts,
-- pending reset, failure) and the number of compute processes on the device.
ALTER TABLE device_samples ADD COLUMN mem_clock_mhz DOUBLE;
ALTER TABLE device_samples ADD COLUMN ecc_sbe_volatile BIGINT;
ALTER TABLE device_samples ADD COLUMN ecc_dbe_aggregate BIGINT;
ALTER TABLE device_samples ADD COLUMN ecc_sbe_aggregate BIGINT;
ALTER TABLE device_samples ADD COLUMN remapped_rows_uncorrectable BIGINT;
ALTER TABLE device_samples ADD COLUMN remapped_rows_correctable BIGINT;
ALTER TABLE device_samples ADD COLUMN row_remap_pending BIGINT;
ALTER TABLE device_samples ADD COLUMN row_remap_failed BIGINT;
ALTER TABLE device_samples ADD COLUMN processes BIGINT;
