-- params: first_hour, end_ts, now, tenant, site, cluster, model
-- Per device and tenant over the UTC hours whose start lies in [$first_hour, $end_ts) and before
-- $now, from rollup_device_tenant_1h (attributed when the group tiers were built, docs/history.md
-- "Attribution is a view"): the sums the reclaim list's devices and a tenant's drill-down are
-- made of, with the device's host, cluster, site, model and GPU index. $tenant NULL: every tenant
-- but _unallocated (nobody held it); else that tenant's rows alone. Filters NULL: all; they apply
-- in the join after the sums (a semi-join before them cost more than it saved: 0.054 s against
-- 0.039 s over 90 days at 1,024 GPUs with no filter).
WITH dev AS (
    SELECT device_id, host, cluster, site, coalesce(catalogue_model, model) AS model, gpu_index
    FROM devices
    WHERE ($site IS NULL OR site = $site) AND ($cluster IS NULL OR cluster = $cluster)
      AND ($model IS NULL OR coalesce(catalogue_model, model) = $model)
),
sums AS (
    SELECT device_id, tenant, sum(available_s) AS available_s, sum(busy_s) AS busy_s,
           sum(useful_s) AS useful_s, sum(alloc_idle_s) AS alloc_idle_s, sum(util_s) AS util_s,
           sum(util_obs_s) AS util_obs_s, sum(energy_j) AS energy_j
    FROM rollup_device_tenant_1h
    WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ AND bucket < $now::TIMESTAMPTZ
      AND (CASE WHEN $tenant::VARCHAR IS NULL THEN tenant <> '_unallocated' ELSE tenant = $tenant::VARCHAR END)
    GROUP BY device_id, tenant
)
SELECT s.*, dev.host, dev.cluster, dev.site, dev.model, dev.gpu_index
FROM sums s JOIN dev USING (device_id)
ORDER BY device_id, tenant
