-- params: lo, hi, max_gap_s, rollovers
-- Each facility meter's energy per quarter hour in [$lo, $hi) from facility_samples (the energy
-- job writes it to energy_meter_15m). Between two consecutive readings of a meter no further
-- apart than $max_gap_s: the register's delta where both readings carry one (a drop is a reset,
-- counted from zero, or a rollover where $rollovers gives the meter's register_max_kwh and the
-- register stood in its upper half), else the mean of the two powers times the time between
-- (trapezoid). That interval's energy is split over the quarters it overlaps by time; readings
-- further apart leave the time between them uncovered (a gap, never interpolated).
-- $rollovers: STRUCT(site, meter, max_kwh)[] (NULL: none configured).
WITH readings AS (
    SELECT site, meter, scope, pue_category, ts, energy_kwh, power_w
    FROM facility_samples
    WHERE ts >= $lo::TIMESTAMPTZ - to_seconds($max_gap_s::DOUBLE)
      AND ts < $hi::TIMESTAMPTZ + to_seconds($max_gap_s::DOUBLE)
      AND (energy_kwh IS NOT NULL OR power_w IS NOT NULL)
),
roll AS (
    SELECT r.site, r.meter, r.max_kwh FROM (SELECT unnest(coalesce($rollovers, [])) AS r)
),
pairs AS (
    SELECT site, meter, scope, pue_category, ts AS t0,
           lead(ts) OVER w AS t1, energy_kwh AS e0, lead(energy_kwh) OVER w AS e1,
           power_w AS p0, lead(power_w) OVER w AS p1
    FROM readings
    WINDOW w AS (PARTITION BY site, meter ORDER BY ts)
),
intervals AS (
    SELECT p.site, p.meter, p.scope, p.pue_category, p.t0, p.t1,
           epoch(p.t1) - epoch(p.t0) AS dt,
           CASE WHEN p.e0 IS NOT NULL AND p.e1 IS NOT NULL THEN
                    CASE WHEN p.e1 >= p.e0 THEN p.e1 - p.e0
                         WHEN roll.max_kwh IS NOT NULL AND p.e0 >= roll.max_kwh / 2 THEN p.e1 + roll.max_kwh - p.e0
                         ELSE p.e1 END
                WHEN p.p0 IS NOT NULL AND p.p1 IS NOT NULL THEN (p.p0 + p.p1) / 2 * (epoch(p.t1) - epoch(p.t0)) / 3.6e6
           END AS kwh,
           p.e0 IS NOT NULL AND p.e1 IS NOT NULL AS by_register,
           p.e0 IS NOT NULL AND p.e1 IS NOT NULL AND p.e1 < p.e0 AS reset
    FROM pairs p LEFT JOIN roll ON roll.site = p.site AND roll.meter = p.meter
    WHERE p.t1 IS NOT NULL AND epoch(p.t1) - epoch(p.t0) <= $max_gap_s::DOUBLE AND p.t1 > p.t0
),
pieces AS (
    SELECT i.*, q, greatest(0.0, least(epoch(i.t1), (q + 1) * 900.0) - greatest(epoch(i.t0), q * 900.0)) AS overlap
    FROM intervals i, unnest(range(CAST(floor(epoch(i.t0) / 900) AS BIGINT),
                                   CAST(floor(epoch(i.t1) / 900) AS BIGINT) + 1)) AS u(q)
    WHERE i.kwh IS NOT NULL
),
covered AS (
    SELECT site, meter, to_timestamp(q * 900.0) AS quarter,
           sum(kwh * overlap / dt) AS kwh, sum(overlap) AS covered_s,
           sum(overlap) FILTER (WHERE by_register) AS register_s,
           count(*) FILTER (WHERE reset AND epoch(t1) > q * 900.0 AND epoch(t1) <= (q + 1) * 900.0) AS resets
    FROM pieces
    WHERE overlap > 0
    GROUP BY ALL
),
counted AS (
    SELECT site, meter, to_timestamp(floor(epoch(ts) / 900) * 900) AS quarter, count(*) AS samples,
           arg_max(scope, ts) AS scope, arg_max(pue_category, ts) AS pue_category
    FROM readings
    GROUP BY ALL
)
SELECT c.quarter, c.site, c.meter, c.scope, c.pue_category,
       coalesce(v.kwh, 0.0) AS kwh, coalesce(v.covered_s, 0.0) AS covered_s, c.samples,
       coalesce(v.register_s, 0.0) AS register_s, CAST(coalesce(v.resets, 0) AS INTEGER) AS resets
FROM counted c LEFT JOIN covered v USING (site, meter, quarter)
WHERE c.quarter >= $lo::TIMESTAMPTZ AND c.quarter < $hi::TIMESTAMPTZ
UNION ALL
-- quarters a reading-less stretch between two close readings crosses (a 15-minute reading interval)
SELECT v.quarter, v.site, v.meter, m.scope, m.pue_category, v.kwh, v.covered_s, 0, coalesce(v.register_s, 0.0),
       CAST(v.resets AS INTEGER)
FROM covered v
JOIN (SELECT site, meter, arg_max(scope, ts) AS scope, arg_max(pue_category, ts) AS pue_category
      FROM readings GROUP BY ALL) m USING (site, meter)
WHERE v.quarter >= $lo::TIMESTAMPTZ AND v.quarter < $hi::TIMESTAMPTZ
  AND NOT EXISTS (SELECT 1 FROM counted c WHERE c.site = v.site AND c.meter = v.meter AND c.quarter = v.quarter)
ORDER BY site, meter, quarter
