-- params: now, minutes, host, device_id
-- One host's (or one device's) samples over the last $minutes minutes, for the drill-down.
-- $device_id NULL: every device of the host.
SELECT s.ts, s.device_id, d.gpu_index, d.mig_profile, s.util_pct, s.sm_active, s.tensor_active,
       s.mem_used_mib, s.power_w, s.temp_c, s.sm_clock_mhz, s.xid_last, s.throttle_reasons,
       s.tenant, s.namespace, s.pod
FROM device_samples s JOIN devices d USING (device_id)
WHERE s.ts > $now - to_minutes(CAST($minutes AS BIGINT)) AND s.ts <= $now
  AND s.host = $host
  AND ($device_id IS NULL OR s.device_id = $device_id)
ORDER BY d.gpu_index, s.device_id, s.ts
