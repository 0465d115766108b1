-- params: cluster
-- Hosts and their devices, for the drill-down pickers.
-- $cluster NULL: all clusters.
SELECT host, cluster, site, device_id, gpu_index, model, mig_profile, last_seen
FROM devices
WHERE $cluster IS NULL OR cluster = $cluster
ORDER BY cluster, host, gpu_index, device_id
