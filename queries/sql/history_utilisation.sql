-- params: first_hour, end_ts, now, start_label, step, tz, by, site, cluster, model, tenant, owned
-- The utilisation ladder's sums per output bucket and `by` key, from rollup_group_1h
-- (docs/history.md): the UTC hours whose start lies in [$first_hour, $end_ts) and before $now.
-- Buckets: '1h' the hour itself; '1d', '1w' (Monday), '1mo' the calendar of $tz, grouping
-- hourly rows on date_trunc(unit, bucket AT TIME ZONE tz); 'all' one bucket labelled
-- $start_label. Every bucket and every key of $owned gets a row, data or not (no data is a
-- band of its own, never a missing row); keys found in the data but not in $owned are added
-- with no inventory. $owned: the inventory per key (STRUCT(key, gpus, tflops)[]; key NULL for
-- the fleet; gpus NULL where owned is not defined, e.g. per tenant). span_s is the seconds the
-- bucket covers (the current hour up to $now), so owned_s = gpus x span_s. The measures are
-- queries/macros/measures.sql's; no data is owned less observed (never below 0: devices the
-- inventory does not list).
-- $by: fleet | site | cluster | model | tenant; filters NULL: all.
WITH hours AS (
    SELECT h AS hour,
           least(3600.0, epoch($now::TIMESTAMPTZ) - epoch(h)) AS span_s,
           CASE $step
               WHEN '1h' THEN h
               WHEN 'all' THEN $start_label::TIMESTAMPTZ
               ELSE bucket_local(CASE $step WHEN '1d' THEN 'day' WHEN '1w' THEN 'week' ELSE 'month' END, h, $tz)
           END AS bucket
    FROM generate_series($first_hour::TIMESTAMPTZ, $end_ts::TIMESTAMPTZ, INTERVAL 1 HOUR) g(h)
    WHERE h < $end_ts::TIMESTAMPTZ AND h < $now::TIMESTAMPTZ
),
spans AS (
    SELECT bucket, sum(span_s) AS span_s FROM hours GROUP BY bucket
),
data AS (
    SELECT hours.bucket,
           CASE $by WHEN 'site' THEN g.site WHEN 'cluster' THEN g.cluster WHEN 'model' THEN g.model
                    WHEN 'tenant' THEN g.tenant END AS key,
           sum(g.samples) AS samples, sum(g.observed_s) AS observed_s, sum(g.available_s) AS available_s,
           sum(g.allocated_s) AS allocated_s, sum(g.busy_s) AS busy_s, sum(g.useful_s) AS useful_s,
           basis_of(count(DISTINCT g.useful_basis), any_value(g.useful_basis)) AS useful_basis,
           sum(g.alloc_idle_s) AS alloc_idle_s, sum(g.util_s) AS util_s, sum(g.util_obs_s) AS util_obs_s,
           sum(g.tflop_s) AS tflop_s, sum(g.energy_j) AS energy_j
    FROM rollup_group_1h g JOIN hours ON g.bucket = hours.hour
    WHERE ($site IS NULL OR g.site = $site) AND ($cluster IS NULL OR g.cluster = $cluster)
      AND ($model IS NULL OR g.model = $model) AND ($tenant IS NULL OR g.tenant = $tenant)
    GROUP BY ALL
),
inventory AS (
    SELECT unnest(CAST($owned AS STRUCT(key VARCHAR, gpus DOUBLE, tflops DOUBLE)[]), recursive := true)
),
keys AS (
    SELECT key, gpus, tflops FROM inventory
    UNION ALL
    SELECT DISTINCT key, CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE) FROM data
    WHERE NOT EXISTS (SELECT 1 FROM inventory i WHERE i.key IS NOT DISTINCT FROM data.key)
),
x AS (
    SELECT s.bucket, k.key, s.span_s, k.gpus * s.span_s AS owned_s, k.tflops AS installed_tflops,
           coalesce(d.observed_s, 0) AS observed_s, coalesce(d.available_s, 0) AS available_s,
           coalesce(d.allocated_s, 0) AS allocated_s, coalesce(d.busy_s, 0) AS busy_s,
           coalesce(d.useful_s, 0) AS useful_s, d.useful_basis, coalesce(d.alloc_idle_s, 0) AS alloc_idle_s,
           coalesce(d.util_s, 0) AS util_s, coalesce(d.util_obs_s, 0) AS util_obs_s,
           coalesce(d.tflop_s, 0) AS tflop_s, coalesce(d.energy_j, 0) AS energy_j
    FROM spans s CROSS JOIN keys k
    LEFT JOIN data d ON d.bucket = s.bucket AND d.key IS NOT DISTINCT FROM k.key
)
SELECT bucket, key, span_s,
       util_pct(util_s, util_obs_s) AS util_pct,
       observed_s / 3600 AS observed_gpu_hours, owned_s / 3600 AS owned_gpu_hours,
       available_s / 3600 AS available_gpu_hours, allocated_s / 3600 AS allocated_gpu_hours,
       busy_s / 3600 AS busy_gpu_hours, useful_s / 3600 AS useful_gpu_hours,
       CASE WHEN owned_s IS NOT NULL THEN greatest(owned_s - observed_s, 0) / 3600 END AS no_data_gpu_hours,
       useful_basis, alloc_idle_s / 3600 AS idle_allocated_gpu_hours,
       delivered_pflops(tflop_s, span_s) AS delivered_pflops, installed_tflops / 1000 AS installed_pflops,
       energy_j / 3.6e6 AS energy_kwh
FROM x
ORDER BY bucket, key NULLS FIRST
