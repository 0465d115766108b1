-- params: first_hour, end_ts, now, leases, unheld, site, cluster, model
-- Per device and label tuple (and the lease that held it, if any) over the UTC hours whose
-- start lies in [$first_hour, $end_ts) and before $now, from rollup_device_1h: the sums the
-- reclaim list's devices and a tenant's drill-down are made of. queries/history.py attributes
-- each label tuple once with the config's rules (collectors/attribution.py), as the rollup's
-- group tiers do (docs/history.md "Attribution is a view").
-- Leases are applied here, at each hourly bucket's start: a lease on the device, else one on
-- its host, first in config order ($leases: STRUCT(kind 'device'|'host', key, tenant, ord,
-- start_ts, end_ts)[], end NULL: open). Only the rows of devices a lease names are looked at
-- hour by hour; every other row is summed per device and label tuple straight away (a few
-- thousand rows out of millions). Rows no label and no lease held are left out unless
-- $unheld (they are nobody's: _unallocated). Filters NULL: all.
-- (Each tier read is written out where it is used: a CTE read twice is materialised.)
WITH leases AS (
    SELECT unnest(CAST($leases AS STRUCT(kind VARCHAR, key VARCHAR, tenant VARCHAR, ord BIGINT,
                                         start_ts TIMESTAMPTZ, end_ts TIMESTAMPTZ)[]), recursive := true)
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
      AND ($unheld OR labels_held(namespace, pod, job, job_user))
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
    FROM leased
    WHERE $unheld OR lease_tenant IS NOT NULL OR labels_held(namespace, pod, job, job_user)
    GROUP BY device_id, namespace, pod, job, job_user, lease_tenant
)
SELECT s.*, dev.host, dev.cluster, dev.site, dev.model, dev.gpu_index,
       labels_held(s.namespace, s.pod, s.job, s.job_user) AS labelled
FROM sums s JOIN dev USING (device_id)
