-- params: cap_start, cap_end, tz
-- Allocated GPUs per site-local day from the hourly group tier, for the forecasts: per day and
-- key (the fleet, each cluster, each model, each tenant and _unattributed; never _unallocated,
-- which is nobody's time) the allocated GPU-hours (the day's mean allocated GPUs is this over
-- the day's hours) and the peak concurrent GPUs: the largest hourly mean (allocated_s / 3600)
-- of the day. Hourly, not 5-minute, peaks: the 5-minute tier is kept 90 days, a forecast reads
-- a year or more, and one series must mean one thing over its whole span.
-- Hours in [$cap_start, $cap_end). day_hours: the day's hours the tier holds any row for (the
-- mean divides by these, so an hour nothing reported is no data, not zero).
WITH g AS (
    SELECT bucket, bucket_local('day', bucket, $tz) AS day, cluster, model, tenant, allocated_s
    FROM rollup_group_1h
    WHERE bucket >= $cap_start::TIMESTAMPTZ AND bucket < $cap_end::TIMESTAMPTZ AND tenant <> '_unallocated'
),
seen AS (
    SELECT bucket_local('day', bucket, $tz) AS day, count(DISTINCT bucket) AS day_hours
    FROM rollup_group_1h
    WHERE bucket >= $cap_start::TIMESTAMPTZ AND bucket < $cap_end::TIMESTAMPTZ
    GROUP BY 1
),
hourly AS (
    SELECT day, bucket, cluster, model, tenant,
           grouping(cluster) AS gc, grouping(model) AS gm, grouping(tenant) AS gt,
           sum(allocated_s) / 3600.0 AS gpus
    FROM g
    GROUP BY GROUPING SETS ((day, bucket), (day, bucket, cluster), (day, bucket, model), (day, bucket, tenant))
)
SELECT h.day,
       CASE WHEN gc = 0 THEN 'cluster' WHEN gm = 0 THEN 'model' WHEN gt = 0 THEN 'tenant' ELSE 'fleet' END AS by_key,
       CASE WHEN gc = 0 THEN cluster WHEN gm = 0 THEN model WHEN gt = 0 THEN tenant END AS key,
       sum(gpus) AS gpu_hours, max(gpus) AS peak_gpus, any_value(s.day_hours) AS day_hours
FROM hourly h JOIN seen s USING (day)
GROUP BY h.day, by_key, key
ORDER BY by_key, key, h.day
