-- params: now, stale_s, cluster, owned
-- Live fleet figures: the utilisation ladder now, fleet power, delivered vs
-- installed PFLOPS. GPUs count physical boards (MIG instances fold into their parent).
-- Owned is the larger of the inventory in config ($owned) and the boards ever seen;
-- boards owned but never reported count as no data.
-- $cluster NULL: all clusters.
WITH s AS (
    SELECT * FROM device_state($now, $stale_s)
    WHERE $cluster IS NULL OR cluster = $cluster
)
SELECT
    greatest(coalesce($owned, 0), count(DISTINCT physical_id))                          AS owned,
    count(DISTINCT physical_id) FILTER (WHERE state_healthy(state))                     AS healthy,
    count(DISTINCT physical_id) FILTER (WHERE state_healthy(state) AND allocated)       AS allocated,
    count(DISTINCT physical_id) FILTER (WHERE state_healthy(state) AND util_pct > 0)    AS busy,
    count(DISTINCT physical_id) FILTER (WHERE state_healthy(state) AND allocated
                                          AND coalesce(util_pct, 0) = 0)                AS allocated_idle,
    count(DISTINCT physical_id) FILTER (WHERE state_faulted(state))                     AS faulted,
    count(DISTINCT physical_id) FILTER (WHERE state = 'thermal')                        AS throttled,
    count(DISTINCT physical_id) FILTER (WHERE state = 'no_data')
      + greatest(coalesce($owned, 0) - count(DISTINCT physical_id), 0)                  AS no_data,
    -- MIG instances repeat their GPU's board power: count each board once
    coalesce((SELECT sum(p) FROM (SELECT max(power_w) AS p FROM s WHERE state <> 'no_data'
                                  GROUP BY physical_id)), 0)                            AS power_w,
    coalesce(sum(tensor_active * peak_dense_tflops) FILTER (WHERE state <> 'no_data'), 0) / 1000.0 AS delivered_pflops,
    coalesce(sum(peak_dense_tflops), 0) / 1000.0                                        AS installed_pflops,
    avg(util_pct) FILTER (WHERE state <> 'no_data')                                     AS mean_util_pct,
    max(ts)                                                                             AS newest_sample
FROM s
