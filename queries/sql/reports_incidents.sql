-- params: first_hour, end_ts, now
-- The month's incidents per kind over the UTC hours whose start lies in [$first_hour, $end_ts)
-- and before $now: events, devices and hosts touched, and GPU-hours lost (docs/reports.md):
--   xid, ecc, unhealthy, thermal: the ladder's unavailable time (observed_s - available_s of
--     rollup_device_1h) in the device-hours that had an event of that kind (an hour with two
--     kinds counts under each);
--   lost: from each 'lost' event to the device's next 'back' event (or the range's end / now),
--     within the range: the GPU was off the bus.
WITH bounds AS (
    SELECT $first_hour::TIMESTAMPTZ AS lo, least($end_ts::TIMESTAMPTZ, $now::TIMESTAMPTZ) AS hi
),
ev AS (
    SELECT e.device_id, e.host, e.kind, e.ts, bucket_1h(e.ts) AS hour
    FROM device_events e, bounds b
    WHERE e.ts >= b.lo AND e.ts < b.hi AND e.kind IN ('xid', 'ecc', 'unhealthy', 'thermal', 'lost')
),
hour_kinds AS (
    SELECT DISTINCT device_id, hour, kind FROM ev WHERE kind <> 'lost' AND device_id IS NOT NULL
),
unavailable AS (
    SELECT k.kind, sum(greatest(r.observed_s - r.available_s, 0)) / 3600 AS gpu_hours
    FROM hour_kinds k JOIN rollup_device_1h r ON r.device_id = k.device_id AND r.bucket = k.hour
    GROUP BY k.kind
),
lost_spans AS (
    SELECT l.device_id, l.ts AS lost_at,
           least(coalesce((SELECT min(b2.ts) FROM device_events b2
                           WHERE b2.device_id = l.device_id AND b2.kind = 'back' AND b2.ts > l.ts),
                          b.hi), b.hi) AS back_at
    FROM ev l, bounds b
    WHERE l.kind = 'lost'
),
lost AS (
    -- a device lost twice before coming back counts its time once: from its first loss
    SELECT 'lost' AS kind, sum(epoch(back_at) - epoch(lost_at)) / 3600 AS gpu_hours
    FROM (SELECT device_id, back_at, min(lost_at) AS lost_at FROM lost_spans GROUP BY device_id, back_at)
),
counts AS (
    SELECT kind, count(*) AS events, count(DISTINCT device_id) AS devices, count(DISTINCT host) AS hosts
    FROM ev GROUP BY kind
)
SELECT c.kind, c.events, c.devices, c.hosts,
       coalesce(u.gpu_hours, l.gpu_hours, 0.0) AS gpu_hours_lost
FROM counts c LEFT JOIN unavailable u USING (kind) LEFT JOIN lost l USING (kind)
ORDER BY gpu_hours_lost DESC, events DESC, kind
