-- params: lo, hi, now, parts, step, tz, start_label
-- Partial PUE's sums per part of the meter hierarchy (a hall or a cooling loop) and bucket, over
-- the UTC hours in [$lo, $hi) that ended by $now: the kWh of the part's IT meters and of its
-- infrastructure meters over the hours in which every one of them covered all four quarters
-- (to within a second), those hours, and all hours. $parts: STRUCT(part, side, site, meter,
-- meters)[] (side it | infra; meters: how many meters the side has), one entry per meter.
-- Buckets: '1h' the hour; '1d', '1w' (Monday), '1mo' the calendar of $tz; 'all' $start_label.
WITH parts AS (SELECT p.part, p.side, p.site, p.meter, p.meters FROM (SELECT unnest(coalesce($parts, [])) AS p)),
hours AS (
    SELECT h AS hour,
           CASE $step
               WHEN '1h' THEN h
               WHEN 'all' THEN $start_label::TIMESTAMPTZ
               ELSE bucket_local(CASE $step WHEN '1d' THEN 'day' WHEN '1w' THEN 'week' ELSE 'month' END, h, $tz)
           END AS bucket
    FROM generate_series($lo::TIMESTAMPTZ, $hi::TIMESTAMPTZ, INTERVAL 1 HOUR) g(h)
    WHERE h < $hi::TIMESTAMPTZ AND h + INTERVAL 1 HOUR <= $now::TIMESTAMPTZ
),
sides AS (
    SELECT p.part, p.side, bucket_1h(q.quarter) AS hour, sum(q.kwh) AS kwh,
           count(*) FILTER (WHERE q.covered_s >= 899.0) >= 4 * any_value(p.meters) AS ok
    FROM energy_meter_15m q JOIN parts p ON p.site = q.site AND p.meter = q.meter
    WHERE q.quarter >= $lo::TIMESTAMPTZ AND q.quarter < $hi::TIMESTAMPTZ
    GROUP BY ALL
),
grid AS (SELECT n.part, h.hour, h.bucket FROM (SELECT DISTINCT part FROM parts) n, hours h),
joined AS (
    SELECT g.part, g.bucket, coalesce(i.ok, false) AND coalesce(x.ok, false) AS ok, i.kwh AS it, x.kwh AS infra
    FROM grid g
    LEFT JOIN sides i ON i.part = g.part AND i.hour = g.hour AND i.side = 'it'
    LEFT JOIN sides x ON x.part = g.part AND x.hour = g.hour AND x.side = 'infra'
)
SELECT part, bucket, coalesce(sum(it) FILTER (WHERE ok), 0.0) AS it_kwh,
       coalesce(sum(infra) FILTER (WHERE ok), 0.0) AS infra_kwh,
       count(*) FILTER (WHERE ok) AS hours, count(*) AS total
FROM joined
GROUP BY ALL
ORDER BY bucket, part
