-- params: first_hour, end_ts, now, leases, labels, tenant, site, cluster, model
-- Per device and tenant over the UTC hours whose start lies in [$first_hour, $end_ts) and
-- before $now, from rollup_device_1h: the reclaim list's devices and a tenant's drill-down.
-- Attribution is the group tiers' (queries/rollup.py, docs/history.md "Attribution is a
-- view"), at each hourly bucket's start: a lease on the device, else one on its host, first
-- in config order ($leases: STRUCT(kind 'device'|'host', key, tenant, ord, start_ts, end_ts)[],
-- end NULL: open), else the tenant the config's rules give the labels ($labels: STRUCT(namespace,
-- pod, job, job_user, tenant)[]), else _unattributed when a label held it, else _unallocated.
-- Held time counts all its available time, and busy, useful and idle time only while held
-- (the device tiers count them whether held or not). $tenant NULL: every tenant but
-- _unallocated. Filters NULL: all.
WITH leases AS (
    SELECT unnest(CAST($leases AS STRUCT(kind VARCHAR, key VARCHAR, tenant VARCHAR, ord BIGINT,
                                         start_ts TIMESTAMPTZ, end_ts TIMESTAMPTZ)[]), recursive := true)
),
labels AS (
    SELECT unnest(CAST($labels AS STRUCT(namespace VARCHAR, pod VARCHAR, job VARCHAR, job_user VARCHAR,
                                         tenant VARCHAR)[]), recursive := true)
),
d AS (
    SELECT r.*, dv.host, dv.cluster, dv.site, coalesce(dv.catalogue_model, dv.model) AS model, dv.gpu_index
    FROM rollup_device_1h r LEFT JOIN devices dv USING (device_id)
    WHERE r.bucket >= $first_hour::TIMESTAMPTZ AND r.bucket < $end_ts::TIMESTAMPTZ
      AND r.bucket < $now::TIMESTAMPTZ
      AND ($site IS NULL OR dv.site = $site) AND ($cluster IS NULL OR dv.cluster = $cluster)
      AND ($model IS NULL OR coalesce(dv.catalogue_model, dv.model) = $model)
),
keys AS (SELECT DISTINCT bucket, device_id, host FROM d),
leased AS (
    SELECT k.bucket, k.device_id,
           coalesce(arg_min(ld.tenant, ld.ord), arg_min(lh.tenant, lh.ord)) AS tenant
    FROM keys k
    LEFT JOIN leases ld ON ld.kind = 'device' AND ld.key = k.device_id
         AND ld.start_ts <= k.bucket AND (ld.end_ts IS NULL OR k.bucket < ld.end_ts)
    LEFT JOIN leases lh ON lh.kind = 'host' AND lh.key = k.host
         AND lh.start_ts <= k.bucket AND (lh.end_ts IS NULL OR k.bucket < lh.end_ts)
    GROUP BY k.bucket, k.device_id
),
held AS (
    SELECT d.*,
           coalesce(l.tenant, lb.tenant,
                    CASE WHEN labels_held(d.namespace, d.pod, d.job, d.job_user) THEN '_unattributed'
                         ELSE '_unallocated' END) AS tenant
    FROM d
    LEFT JOIN leased l ON l.bucket = d.bucket AND l.device_id = d.device_id
    LEFT JOIN labels lb ON lb.namespace IS NOT DISTINCT FROM d.namespace
         AND lb.pod IS NOT DISTINCT FROM d.pod AND lb.job IS NOT DISTINCT FROM d.job
         AND lb.job_user IS NOT DISTINCT FROM d.job_user
)
SELECT device_id, tenant, any_value(host) AS host, any_value(cluster) AS cluster, any_value(site) AS site,
       any_value(model) AS model, any_value(gpu_index) AS gpu_index,
       sum(available_s) / 3600 AS allocated_gpu_hours, sum(busy_s) / 3600 AS busy_gpu_hours,
       sum(useful_s) / 3600 AS useful_gpu_hours, sum(alloc_idle_s) / 3600 AS idle_allocated_gpu_hours,
       util_pct(sum(util_s), sum(util_obs_s)) AS util_pct, sum(energy_j) / 3.6e6 AS energy_kwh
FROM held
WHERE ($tenant IS NULL AND tenant <> '_unallocated') OR tenant = $tenant
GROUP BY device_id, tenant
ORDER BY idle_allocated_gpu_hours DESC, device_id
