-- params: first_hour, end_ts, now, n_hosts
-- The $n_hosts hosts that lost the most GPU time over the UTC hours whose start lies in
-- [$first_hour, $end_ts) and before $now: unavailable GPU-hours (observed_s - available_s of
-- rollup_device_1h, the ladder's loss), no-data GPU-hours of the devices the host has shown
-- (each device's hours in the range less its observed time; a device first seen in the range
-- counts from then), and the host's events by kind.
WITH bounds AS (
    SELECT $first_hour::TIMESTAMPTZ AS lo, least($end_ts::TIMESTAMPTZ, $now::TIMESTAMPTZ) AS hi
),
dev AS (
    SELECT d.device_id, d.host, d.cluster, greatest(d.first_seen, b.lo) AS seen_from, b.hi
    FROM devices d, bounds b
    WHERE d.host IS NOT NULL AND d.mig_parent IS NULL AND d.first_seen < b.hi
      AND coalesce(d.last_seen, b.hi) >= b.lo
),
sums AS (
    SELECT r.device_id, sum(r.observed_s) AS observed_s, sum(greatest(r.observed_s - r.available_s, 0)) AS unavail_s
    FROM rollup_device_1h r, bounds b
    WHERE r.bucket >= b.lo AND r.bucket < $end_ts::TIMESTAMPTZ AND r.bucket < $now::TIMESTAMPTZ
    GROUP BY r.device_id
),
per_host AS (
    SELECT dev.host, any_value(dev.cluster) AS cluster, count(*) AS gpus,
           sum(coalesce(s.unavail_s, 0)) / 3600 AS unavailable_gpu_hours,
           sum(greatest(epoch(dev.hi) - epoch(dev.seen_from) - coalesce(s.observed_s, 0), 0)) / 3600
               AS no_data_gpu_hours
    FROM dev LEFT JOIN sums s USING (device_id)
    GROUP BY dev.host
),
events AS (
    SELECT e.host,
           count(*) FILTER (WHERE e.kind = 'xid') AS xid_events,
           count(*) FILTER (WHERE e.kind = 'ecc') AS ecc_events,
           count(*) FILTER (WHERE e.kind = 'lost') AS lost_events,
           count(*) FILTER (WHERE e.kind = 'unhealthy') AS unhealthy_events,
           count(*) FILTER (WHERE e.kind = 'thermal') AS thermal_events
    FROM device_events e, bounds b
    WHERE e.ts >= b.lo AND e.ts < b.hi AND e.host IS NOT NULL
    GROUP BY e.host
)
SELECT p.host, p.cluster, p.gpus, p.unavailable_gpu_hours, p.no_data_gpu_hours,
       coalesce(e.xid_events, 0) AS xid_events, coalesce(e.ecc_events, 0) AS ecc_events,
       coalesce(e.lost_events, 0) AS lost_events, coalesce(e.unhealthy_events, 0) AS unhealthy_events,
       coalesce(e.thermal_events, 0) AS thermal_events
FROM per_host p LEFT JOIN events e USING (host)
WHERE p.unavailable_gpu_hours > 0 OR p.no_data_gpu_hours > 0 OR e.host IS NOT NULL
ORDER BY p.unavailable_gpu_hours + p.no_data_gpu_hours DESC,
         coalesce(e.xid_events, 0) + coalesce(e.ecc_events, 0) + coalesce(e.lost_events, 0) DESC, p.host
LIMIT $n_hosts
