-- params: bill_from, bill_to, bill_tz, tenant
-- Allocated GPU-seconds (the held time of docs/history.md, the tenant-usage page's "allocated")
-- per tenant, cluster, model and site-local day over the UTC hours in [$bill_from, $bill_to), from
-- rollup_group_1h: what usage contracts bill by the GPU-hour (queries/billing.py). Local days,
-- not hours, because contracts and price changes start at local midnight. $tenant NULL: all
-- configured and unconfigured tenants (never _unattributed or _unallocated, which no one pays).
SELECT tenant, cluster, model, CAST(timezone($bill_tz, bucket) AS DATE) AS day,
       sum(allocated_s) AS allocated_s
FROM rollup_group_1h
WHERE bucket >= $bill_from::TIMESTAMPTZ AND bucket < $bill_to::TIMESTAMPTZ
  AND tenant NOT IN ('_unattributed', '_unallocated')
  AND ($tenant IS NULL OR tenant = $tenant)
GROUP BY ALL
HAVING sum(allocated_s) > 0
ORDER BY tenant, day, cluster, model
