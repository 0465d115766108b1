-- params: first_hour, end_ts, now, site, cluster, model, tenant
-- Per tenant (and _unattributed; never _unallocated, which is nobody's time) over the UTC
-- hours whose start lies in [$first_hour, $end_ts) and before $now, from the group tiers: the
-- held time's sums (docs/history.md: a tenant's rows hold exactly the time its devices were
-- held by it, so its util_pct is the mean utilisation while held), and the peak
-- concurrent GPUs: the largest allocated_s / 300 of a 5-minute bucket, or, where the 5-minute
-- tier has been retired, the largest hourly mean (allocated_s / 3600), which can only be lower.
-- Filters NULL: all; $tenant set (a tenant's scope): that tenant's rows alone.
WITH g AS (
    SELECT * FROM rollup_group_1h
    WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ AND bucket < $now::TIMESTAMPTZ
      AND tenant <> '_unallocated'
      AND ($site IS NULL OR site = $site) AND ($cluster IS NULL OR cluster = $cluster)
      AND ($model IS NULL OR model = $model) AND ($tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR)
),
sums AS (
    SELECT tenant, sum(observed_s) AS observed_s, sum(allocated_s) AS allocated_s, sum(busy_s) AS busy_s,
           sum(useful_s) AS useful_s,
           basis_of(count(DISTINCT useful_basis), any_value(useful_basis)) AS useful_basis,
           sum(alloc_idle_s) AS alloc_idle_s, sum(util_s) AS util_s, sum(util_obs_s) AS util_obs_s,
           sum(tflop_s) AS tflop_s, sum(energy_j) AS energy_j
    FROM g GROUP BY tenant
),
hourly AS (
    SELECT tenant, max(gpus) AS peak FROM (
        SELECT tenant, bucket, sum(allocated_s) / 3600.0 AS gpus FROM g GROUP BY tenant, bucket
    ) GROUP BY tenant
),
five AS (
    SELECT tenant, max(gpus) AS peak FROM (
        SELECT tenant, bucket, sum(allocated_s) / 300.0 AS gpus FROM rollup_group_5m
        WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ AND bucket < $now::TIMESTAMPTZ
          AND tenant <> '_unallocated'
          AND ($site IS NULL OR site = $site) AND ($cluster IS NULL OR cluster = $cluster)
          AND ($model IS NULL OR model = $model) AND ($tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR)
        GROUP BY tenant, bucket
    ) GROUP BY tenant
)
SELECT s.tenant, s.allocated_s / 3600 AS allocated_gpu_hours, s.busy_s / 3600 AS busy_gpu_hours,
       s.useful_s / 3600 AS useful_gpu_hours, s.useful_basis, util_pct(s.util_s, s.util_obs_s) AS util_pct,
       greatest(coalesce(f.peak, 0), coalesce(h.peak, 0)) AS peak_gpus, s.energy_j / 3.6e6 AS energy_kwh,
       s.alloc_idle_s / 3600 AS idle_allocated_gpu_hours
FROM sums s LEFT JOIN hourly h USING (tenant) LEFT JOIN five f USING (tenant)
ORDER BY tenant
