-- params: first_hour, end_ts, now, site, cluster, model, tenant
-- Allocated-but-idle GPU-seconds (alloc_idle_s, docs/history.md: the reclaim list) per tenant
-- and model over the UTC hours whose start lies in [$first_hour, $end_ts) and before $now,
-- from rollup_group_1h; per model, so each can be priced at its model's GPU-hour price.
-- Filters NULL: all.
SELECT tenant, model, sum(alloc_idle_s) / 3600 AS idle_allocated_gpu_hours,
       sum(allocated_s) / 3600 AS allocated_gpu_hours
FROM rollup_group_1h
WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ AND bucket < $now::TIMESTAMPTZ
  AND tenant <> '_unallocated'
  AND ($site IS NULL OR site = $site) AND ($cluster IS NULL OR cluster = $cluster)
  AND ($model IS NULL OR model = $model) AND ($tenant IS NULL OR tenant = $tenant)
GROUP BY tenant, model
HAVING sum(alloc_idle_s) > 0
ORDER BY tenant, model
