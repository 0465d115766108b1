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
-- (Each tier read is written out where it is used: a CTE read twice is materialised.)
-- Speed: only the rows of devices a lease names (by device or host) are attributed hour by
-- hour; every other row is summed per device and label tuple first (a few thousand rows out
-- of millions), then attributed.
WITH leases AS (
    SELECT unnest(CAST($leases AS STRUCT(kind VARCHAR, key VARCHAR, tenant VARCHAR, ord BIGINT,
                                         start_ts TIMESTAMPTZ, end_ts TIMESTAMPTZ)[]), recursive := true)
),
labels AS (
    SELECT unnest(CAST($labels AS STRUCT(namespace VARCHAR, pod VARCHAR, job VARCHAR, job_user VARCHAR,
                                         tenant VARCHAR)[]), recursive := true)
),
dev AS (
    SELECT device_id, host, cluster, site, coalesce(catalogue_model, model) AS model, gpu_index,
           device_id IN (SELECT key FROM leases WHERE kind = 'device')
               OR host IN (SELECT key FROM leases WHERE kind = 'host') AS maybe_leased
    FROM devices
    WHERE ($site IS NULL OR site = $site) AND ($cluster IS NULL OR cluster = $cluster)
      AND ($model IS NULL OR coalesce(catalogue_model, model) = $model)
),
unleased AS (
    -- grouped on a hash of the label tuple (cheaper than four text columns over millions of rows)
    SELECT device_id, any_value(namespace) AS namespace, any_value(pod) AS pod, any_value(job) AS job,
           any_value(job_user) AS job_user, CAST(NULL AS VARCHAR) AS lease_tenant,
           sum(available_s) AS available_s, sum(busy_s) AS busy_s, sum(useful_s) AS useful_s,
           sum(alloc_idle_s) AS alloc_idle_s, sum(util_s) AS util_s, sum(util_obs_s) AS util_obs_s,
           sum(energy_j) AS energy_j
    FROM rollup_device_1h
    WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ AND bucket < $now::TIMESTAMPTZ
      AND device_id IN (SELECT device_id FROM dev WHERE NOT maybe_leased)
      -- unleased and unlabelled is _unallocated, which only a $tenant = '_unallocated' asks for
      AND ($tenant = '_unallocated' OR labels_held(namespace, pod, job, job_user))
    GROUP BY device_id, hash(namespace, pod, job, job_user)
),
leased AS (
    SELECT r.*,
           coalesce((SELECT arg_min(l.tenant, l.ord) FROM leases l
                     WHERE l.kind = 'device' AND l.key = r.device_id
                       AND l.start_ts <= r.bucket AND (l.end_ts IS NULL OR r.bucket < l.end_ts)),
                    (SELECT arg_min(l.tenant, l.ord) FROM leases l
                     WHERE l.kind = 'host' AND l.key = dev.host
                       AND l.start_ts <= r.bucket AND (l.end_ts IS NULL OR r.bucket < l.end_ts))) AS lease_tenant
    FROM rollup_device_1h r JOIN dev USING (device_id)
    WHERE dev.maybe_leased AND r.bucket >= $first_hour::TIMESTAMPTZ AND r.bucket < $end_ts::TIMESTAMPTZ
      AND r.bucket < $now::TIMESTAMPTZ
),
sums AS (
    SELECT * FROM unleased
    UNION ALL
    SELECT device_id, namespace, pod, job, job_user, lease_tenant,
           sum(available_s), sum(busy_s), sum(useful_s), sum(alloc_idle_s), sum(util_s), sum(util_obs_s),
           sum(energy_j)
    FROM leased GROUP BY device_id, namespace, pod, job, job_user, lease_tenant
),
held AS (
    SELECT s.*,
           coalesce(s.lease_tenant, lb.tenant,
                    CASE WHEN labels_held(s.namespace, s.pod, s.job, s.job_user) THEN '_unattributed'
                         ELSE '_unallocated' END) AS tenant
    FROM sums s
    LEFT JOIN labels lb ON lb.namespace IS NOT DISTINCT FROM s.namespace
         AND lb.pod IS NOT DISTINCT FROM s.pod AND lb.job IS NOT DISTINCT FROM s.job
         AND lb.job_user IS NOT DISTINCT FROM s.job_user
)
SELECT h.device_id, h.tenant, any_value(dev.host) AS host, any_value(dev.cluster) AS cluster,
       any_value(dev.site) AS site, any_value(dev.model) AS model, any_value(dev.gpu_index) AS gpu_index,
       sum(h.available_s) / 3600 AS allocated_gpu_hours, sum(h.busy_s) / 3600 AS busy_gpu_hours,
       sum(h.useful_s) / 3600 AS useful_gpu_hours, sum(h.alloc_idle_s) / 3600 AS idle_allocated_gpu_hours,
       util_pct(sum(h.util_s), sum(h.util_obs_s)) AS util_pct, sum(h.energy_j) / 3.6e6 AS energy_kwh
FROM held h JOIN dev USING (device_id)
WHERE ($tenant IS NULL AND h.tenant <> '_unallocated') OR h.tenant = $tenant
GROUP BY h.device_id, h.tenant
ORDER BY idle_allocated_gpu_hours DESC, h.device_id
