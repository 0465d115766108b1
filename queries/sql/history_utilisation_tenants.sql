-- params: first_hour, end_ts, now, start_label, step, tz, by, tenant
-- history_utilisation.sql over rollup_tenant_1h, for a view with no site, cluster or model filter
-- and `by` fleet or tenant (the tier sums every site, cluster and model per tenant, so it holds
-- the same sums in about half the rows): the same columns, the same buckets. $tenant NULL: all.
SELECT epoch_us(CASE $step
           WHEN '1h' THEN bucket
           WHEN 'all' THEN $start_label::TIMESTAMPTZ
           ELSE bucket_local(CASE $step WHEN '1d' THEN 'day' WHEN '1w' THEN 'week' ELSE 'month' END, bucket, $tz)
       END) AS bucket_us,
       CASE $by WHEN 'tenant' THEN tenant END AS key,
       sum(observed_s) AS observed_s, sum(available_s) AS available_s, sum(allocated_s) AS allocated_s,
       sum(busy_s) AS busy_s, sum(useful_s) AS useful_s,
       basis_of(CASE WHEN min(useful_basis) <> max(useful_basis) THEN 2 ELSE 1 END, min(useful_basis)) AS useful_basis,
       sum(alloc_idle_s) AS alloc_idle_s, sum(util_s) AS util_s, sum(util_obs_s) AS util_obs_s,
       sum(tflop_s) AS tflop_s, sum(energy_j) AS energy_j
FROM rollup_tenant_1h
WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ AND bucket < $now::TIMESTAMPTZ
  AND ($tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR)
GROUP BY ALL
