-- params: first_hour, end_ts, now, tenant
-- GPUs a tenant held per UTC hour (allocated GPU-seconds / 3600, from rollup_group_1h) per
-- cluster and model over the hours whose start lies in [$first_hour, $end_ts) and before $now:
-- usage against quota (queries/billing.py quota_table). $tenant NULL: every tenant's.
SELECT bucket, tenant, cluster, model, sum(allocated_s) / 3600.0 AS gpus
FROM rollup_group_1h
WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ AND bucket < $now::TIMESTAMPTZ
  AND tenant NOT IN ('_unattributed', '_unallocated')
  AND ($tenant IS NULL OR tenant = $tenant)
GROUP BY ALL
ORDER BY bucket, tenant, cluster, model
