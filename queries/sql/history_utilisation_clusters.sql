-- params: first_hour, end_ts, now, start_label, step, tz, by, site, cluster, model
-- history_utilisation.sql over rollup_cluster_1h, for a view with no tenant filter and `by`
-- fleet, site, cluster or model (the tier sums each site, cluster and model's tenants, so it
-- holds the same sums in a row per cluster-hour): the same columns, the same buckets.
-- Filters NULL: all.
SELECT epoch_us(CASE $step
           WHEN '1h' THEN bucket
           WHEN 'all' THEN $start_label::TIMESTAMPTZ
           ELSE bucket_local(CASE $step WHEN '1d' THEN 'day' WHEN '1w' THEN 'week' ELSE 'month' END, bucket, $tz)
       END) AS bucket_us,
       CASE $by WHEN 'site' THEN site WHEN 'cluster' THEN cluster WHEN 'model' THEN model END AS key,
       sum(observed_s) AS observed_s, sum(available_s) AS available_s, sum(allocated_s) AS allocated_s,
       sum(busy_s) AS busy_s, sum(useful_s) AS useful_s,
       basis_of(CASE WHEN min(useful_basis) <> max(useful_basis) THEN 2 ELSE 1 END, min(useful_basis)) AS useful_basis,
       sum(alloc_idle_s) AS alloc_idle_s, sum(util_s) AS util_s, sum(util_obs_s) AS util_obs_s,
       sum(tflop_s) AS tflop_s, sum(energy_j) AS energy_j
FROM rollup_cluster_1h
WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ AND bucket < $now::TIMESTAMPTZ
  AND ($site IS NULL OR site = $site) AND ($cluster IS NULL OR cluster = $cluster)
  AND ($model IS NULL OR model = $model)
GROUP BY ALL
