-- params: first_hour, end_ts, now, start_label, step, tz, by, site, cluster, model, tenant
-- The utilisation ladder's sums per output bucket and `by` key, from rollup_group_1h
-- (docs/history.md): the UTC hours whose start lies in [$first_hour, $end_ts) and before $now.
-- Buckets: '1h' the hour itself; '1d', '1w' (Monday), '1mo' the calendar of $tz
-- (bucket_local on the hour's start); 'all' one bucket labelled $start_label. `bucket_us` is
-- the bucket's start in epoch microseconds. Only buckets and keys with rows come back: the
-- caller (queries/history.py utilisation) lays them on every bucket of the range and every
-- key of the inventory, with the bucket's span and the owned GPUs, and derives the measures
-- (queries/measures.py's array forms of queries/macros/measures.sql). One lean statement: the
-- grid, spans and measures in SQL cost DuckDB more to plan (about 10 ms) than to run.
-- useful_basis: one basis, or 'mixed' where min and max differ (as count(DISTINCT) > 1, at a
-- fraction of its cost). $by: fleet | site | cluster | model | tenant; filters NULL: all.
SELECT epoch_us(CASE $step
           WHEN '1h' THEN bucket
           WHEN 'all' THEN $start_label::TIMESTAMPTZ
           ELSE bucket_local(CASE $step WHEN '1d' THEN 'day' WHEN '1w' THEN 'week' ELSE 'month' END, bucket, $tz)
       END) AS bucket_us,
       CASE $by WHEN 'site' THEN site WHEN 'cluster' THEN cluster WHEN 'model' THEN model
                WHEN 'tenant' THEN tenant END AS key,
       sum(observed_s) AS observed_s, sum(available_s) AS available_s, sum(allocated_s) AS allocated_s,
       sum(busy_s) AS busy_s, sum(useful_s) AS useful_s,
       basis_of(CASE WHEN min(useful_basis) <> max(useful_basis) THEN 2 ELSE 1 END, min(useful_basis)) AS useful_basis,
       sum(alloc_idle_s) AS alloc_idle_s, sum(util_s) AS util_s, sum(util_obs_s) AS util_obs_s,
       sum(tflop_s) AS tflop_s, sum(energy_j) AS energy_j
FROM rollup_group_1h
WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ AND bucket < $now::TIMESTAMPTZ
  AND ($site IS NULL OR site = $site) AND ($cluster IS NULL OR cluster = $cluster)
  AND ($model IS NULL OR model = $model) AND ($tenant IS NULL OR tenant = $tenant)
GROUP BY ALL
