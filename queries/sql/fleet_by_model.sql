-- params: now, stale_s, cluster
-- The fleet now, one row per vendor and accelerator model: a mixed floor (NVIDIA,
-- AMD, Ascend) at a glance. Boards, not MIG instances, are counted; `model` is the
-- name the source reports, `catalogue_model` the catalogue entry it matched (NULL:
-- unknown to accelerators.toml, so it adds no PFLOPS).
-- $cluster NULL: all clusters.
WITH s AS (
    SELECT * FROM device_state($now, $stale_s)
    WHERE $cluster IS NULL OR cluster = $cluster
),
boards AS (
    SELECT physical_id,
           any_value(vendor)            AS vendor,
           any_value(model)             AS model,
           any_value(catalogue_model)   AS catalogue_model,
           any_value(cluster)           AS cluster,
           bool_or(state_healthy(state))                       AS healthy,
           bool_or(state_faulted(state))                       AS faulted,
           bool_and(state = 'no_data')                         AS no_data,
           bool_or(state_healthy(state) AND util_pct > 0)      AS busy,
           avg(util_pct) FILTER (WHERE state <> 'no_data')     AS util_pct,
           max(power_w) FILTER (WHERE state <> 'no_data')      AS power_w,
           sum(tensor_active * peak_dense_tflops) FILTER (WHERE state <> 'no_data') AS delivered_tflops,
           sum(peak_dense_tflops)       AS installed_tflops
    FROM s
    GROUP BY physical_id
)
SELECT
    coalesce(vendor, 'other')                          AS vendor,
    coalesce(model, catalogue_model, '?')              AS model,
    any_value(catalogue_model)                         AS catalogue_model,
    string_agg(DISTINCT cluster, ', ' ORDER BY cluster) AS clusters,
    count(*)                                           AS boards,
    count(*) FILTER (WHERE healthy)                            AS healthy,
    count(*) FILTER (WHERE busy)                               AS busy,
    count(*) FILTER (WHERE faulted)                            AS faulted,
    count(*) FILTER (WHERE no_data)                            AS no_data,
    avg(util_pct)                                      AS mean_util_pct,
    coalesce(sum(power_w), 0) / 1000.0                 AS power_kw,
    coalesce(sum(delivered_tflops), 0) / 1000.0        AS delivered_pflops,
    coalesce(sum(installed_tflops), 0) / 1000.0        AS installed_pflops
FROM boards
GROUP BY 1, 2
ORDER BY boards DESC, vendor, model
