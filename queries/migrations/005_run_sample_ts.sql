-- 005: collector_runs records which cycle's samples an attempt was for
-- (sample_ts), separately from when the attempt started (a retry starts later
-- but stores samples stamped with its cycle's tick). "Lost" compares a device's
-- last sample with its endpoint's newest successful cycle on that basis.
ALTER TABLE collector_runs ADD COLUMN sample_ts TIMESTAMPTZ;

-- device_state learns 'unhealthy' (the exporter's own health verdict, e.g.
-- Ascend npu_chip_info_health_status) and exposes energy and health.
--
-- The macro this migration defined now lives in queries/macros/device_state.sql,
-- re-created by the writer on every open; this note keeps the history.
