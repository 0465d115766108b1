-- params: first_hour, end_ts, now
-- Facility meters' gaps over the UTC hours whose start lies in [$first_hour, $end_ts) and before
-- $now: each run of consecutive hours in which a meter (any meter facility_samples has held
-- before the range's end) stored no sample, with its first hour, the hour after its last, and its
-- length; an hour a hand-typed reading (facility_readings) of that meter covers is not a gap.
WITH bounds AS (
    SELECT $first_hour::TIMESTAMPTZ AS lo, least($end_ts::TIMESTAMPTZ, $now::TIMESTAMPTZ) AS hi
),
hours AS (
    SELECT unnest(generate_series(b.lo, b.hi - INTERVAL 1 HOUR, INTERVAL 1 HOUR)) AS hour
    FROM bounds b WHERE b.hi > b.lo
),
meters AS (
    SELECT site, meter, any_value(scope) AS scope
    FROM facility_samples, bounds b
    WHERE ts < b.hi
    GROUP BY site, meter
),
seen AS (
    SELECT DISTINCT site, meter, bucket_1h(ts) AS hour
    FROM facility_samples, bounds b
    WHERE ts >= b.lo AND ts < b.hi
),
covered AS (
    SELECT DISTINCT r.site, r.meter, h.hour
    FROM facility_readings r JOIN hours h ON h.hour >= r.period_start AND h.hour < r.period_end
),
missing AS (
    SELECT m.site, m.meter, m.scope, h.hour
    FROM meters m CROSS JOIN hours h
    ANTI JOIN seen s ON s.site = m.site AND s.meter = m.meter AND s.hour = h.hour
    ANTI JOIN covered c ON c.site = m.site AND c.meter = m.meter AND c.hour = h.hour
),
runs AS (
    SELECT *, epoch(hour) / 3600 - row_number() OVER (PARTITION BY site, meter ORDER BY hour) AS grp
    FROM missing
)
SELECT site, meter, any_value(scope) AS scope, min(hour) AS gap_start, max(hour) + INTERVAL 1 HOUR AS gap_end,
       count(*) AS hours
FROM runs
GROUP BY site, meter, grp
ORDER BY site, meter, gap_start
