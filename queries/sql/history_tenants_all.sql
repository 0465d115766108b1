-- params: first_hour, end_ts, now, tenant
-- history_tenants.sql without a site, cluster or model filter, from rollup_tenant_1h (one row a
-- tenant-hour, its peak already taken over the hour's 5-minute buckets): per tenant (and
-- _unattributed; never _unallocated) over the UTC hours whose start lies in [$first_hour,
-- $end_ts) and before $now, the same columns but useful_basis (which the table does not show;
-- its count(DISTINCT) was half of this statement's time). $tenant set (a tenant's scope): that
-- tenant alone.
SELECT tenant, sum(allocated_s) / 3600 AS allocated_gpu_hours, sum(busy_s) / 3600 AS busy_gpu_hours,
       sum(useful_s) / 3600 AS useful_gpu_hours, util_pct(sum(util_s), sum(util_obs_s)) AS util_pct,
       max(peak_gpus) AS peak_gpus,
       sum(energy_j) / 3.6e6 AS energy_kwh, sum(alloc_idle_s) / 3600 AS idle_allocated_gpu_hours
FROM rollup_tenant_1h
WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ AND bucket < $now::TIMESTAMPTZ
  AND tenant <> '_unallocated' AND ($tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR)
GROUP BY tenant
ORDER BY tenant
