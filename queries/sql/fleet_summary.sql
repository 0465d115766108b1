-- params: now, stale_s, cluster, owned
-- Live fleet figures: the utilisation ladder now, fleet power, delivered vs
-- installed PFLOPS. GPUs count physical boards (MIG instances fold into their parent).
-- Owned is the larger of the inventory in config ($owned) and the boards ever seen;
-- boards owned but never reported count as no data.
-- $cluster NULL: all clusters.
-- A board counts in a figure when any of its rows (itself, or its MIG instances) does:
-- one GROUP BY board with a flag per figure, then counts of the flags (eight
-- count(DISTINCT ...) FILTER aggregates cost a hash table each, 0.1 s at 10,000 GPUs).
WITH s AS (
    SELECT * FROM device_state($now, $stale_s)
    WHERE $cluster IS NULL OR cluster = $cluster
),
boards AS (
    SELECT physical_id,
           bool_or(state_healthy(state))                                        AS healthy,
           bool_or(state_healthy(state) AND allocated)                          AS allocated,
           bool_or(state_healthy(state) AND util_pct > 0)                       AS busy,
           bool_or(state_healthy(state) AND allocated AND coalesce(util_pct, 0) = 0) AS allocated_idle,
           bool_or(state_faulted(state))                                        AS faulted,
           bool_or(state = 'thermal')                                           AS throttled,
           bool_or(state = 'no_data')                                           AS no_data,
           -- MIG instances repeat their GPU's board power: count each board once
           max(power_w) FILTER (WHERE state <> 'no_data')                       AS power_w
    FROM s
    GROUP BY physical_id
),
per_board AS (
    SELECT count(*)                               AS seen,
           count(*) FILTER (WHERE healthy)        AS healthy,
           count(*) FILTER (WHERE allocated)      AS allocated,
           count(*) FILTER (WHERE busy)           AS busy,
           count(*) FILTER (WHERE allocated_idle) AS allocated_idle,
           count(*) FILTER (WHERE faulted)        AS faulted,
           count(*) FILTER (WHERE throttled)      AS throttled,
           count(*) FILTER (WHERE no_data)        AS no_data,
           coalesce(sum(power_w), 0)              AS power_w
    FROM boards
),
per_row AS (
    SELECT coalesce(sum(tensor_active * peak_dense_tflops) FILTER (WHERE state <> 'no_data'), 0) / 1000.0
                                                              AS delivered_pflops,
           coalesce(sum(peak_dense_tflops), 0) / 1000.0       AS installed_pflops,
           avg(util_pct) FILTER (WHERE state <> 'no_data')    AS mean_util_pct,
           max(ts)                                            AS newest_sample
    FROM s
)
SELECT
    greatest(coalesce($owned, 0), b.seen)                          AS owned,
    b.healthy, b.allocated, b.busy, b.allocated_idle, b.faulted, b.throttled,
    b.no_data + greatest(coalesce($owned, 0) - b.seen, 0)          AS no_data,
    b.power_w,
    r.delivered_pflops, r.installed_pflops, r.mean_util_pct, r.newest_sample
FROM per_board b, per_row r
