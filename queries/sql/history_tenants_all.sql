-- params: first_hour, end_ts, now, tenant
-- history_tenants.sql without a site, cluster or model filter, from rollup_tenant_1h (one row a
-- tenant-hour, its peak already taken over the hour's 5-minute buckets): per tenant (and
-- _unattributed; never _unallocated) over the UTC hours whose start lies in [$first_hour,
-- $end_ts) and before $now, the GPU-second sums and the peak; queries/history.py makes them
-- GPU-hours, kWh and util_pct (queries/measures.py), as history_tenants.sql does in SQL: this
-- read answers /api/v1/tenants, and DuckDB took longer over the expressions than over the sums.
-- $tenant set (a tenant's scope): that tenant alone.
SELECT tenant, sum(allocated_s) AS allocated_s, sum(busy_s) AS busy_s, sum(useful_s) AS useful_s,
       sum(util_s) AS util_s, sum(util_obs_s) AS util_obs_s, max(peak_gpus) AS peak_gpus,
       sum(energy_j) AS energy_j, sum(alloc_idle_s) AS alloc_idle_s
FROM rollup_tenant_1h
WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ AND bucket < $now::TIMESTAMPTZ
  AND tenant <> '_unallocated' AND ($tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR)
GROUP BY tenant
