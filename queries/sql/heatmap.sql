-- params: now, stale_s, cluster
-- One cell per host x GPU index: utilisation, temperature, power and state now.
-- $cluster NULL: all clusters.
SELECT
    host, cluster, gpu_index,
    avg(util_pct)  AS util_pct,
    max(temp_c)    AS temp_c,
    max(power_w)   AS power_w,      -- MIG instances repeat the board's power
    CASE WHEN bool_or(state = 'lost') THEN 'lost'
         WHEN bool_or(state = 'unhealthy') THEN 'unhealthy'
         WHEN bool_or(state = 'xid') THEN 'xid'
         WHEN bool_or(state = 'thermal') THEN 'thermal'
         WHEN bool_and(state = 'no_data') THEN 'no_data'
         ELSE 'ok' END AS state,
    any_value(tenant) AS tenant,
    any_value(namespace) AS namespace,
    any_value(model) AS model
FROM device_state($now, $stale_s)
WHERE ($cluster IS NULL OR cluster = $cluster) AND gpu_index IS NOT NULL
GROUP BY host, cluster, gpu_index
ORDER BY cluster, host, gpu_index
