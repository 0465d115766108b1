-- params: lo, hi, site, subs
-- Meter readings off the bill (facility_readings) whose period overlaps [$lo, $hi), each beside
-- what the meters measured over the same period (energy_meter_15m): the same meter's kWh and
-- covered seconds, and the site's total of the same scope (and IT category), sub-meters left
-- out ($subs: STRUCT(site, meter)[]). $site NULL: every site.
WITH subs AS (SELECT s.site, s.meter FROM (SELECT unnest(coalesce($subs, [])) AS s)),
r AS (
    SELECT * FROM facility_readings
    WHERE period_end > $lo::TIMESTAMPTZ AND period_start < $hi::TIMESTAMPTZ AND ($site IS NULL OR site = $site)
),
same AS (
    SELECT r.site, r.meter, r.period_start, r.period_end, sum(q.kwh) AS meter_kwh, sum(q.covered_s) AS covered_s
    FROM r JOIN energy_meter_15m q ON q.site = r.site AND q.meter = r.meter
        AND q.quarter >= r.period_start AND q.quarter < r.period_end
    GROUP BY ALL
),
total AS (
    SELECT r.site, r.meter, r.period_start, r.period_end, sum(q.kwh) AS site_kwh
    FROM r JOIN energy_meter_15m q ON q.site = r.site AND q.scope = r.scope
        AND (r.scope <> 'it' OR q.pue_category IS NOT DISTINCT FROM r.pue_category)
        AND q.quarter >= r.period_start AND q.quarter < r.period_end
    WHERE NOT EXISTS (SELECT 1 FROM subs WHERE subs.site = q.site AND subs.meter = q.meter)
    GROUP BY ALL
)
SELECT r.site, r.meter, r.scope, r.pue_category, r.period_start, r.period_end, r.energy_kwh AS read_kwh,
       s.meter_kwh, s.covered_s, t.site_kwh, r.source_file
FROM r
LEFT JOIN same s USING (site, meter, period_start, period_end)
LEFT JOIN total t USING (site, meter, period_start, period_end)
ORDER BY r.site, r.meter, r.period_start
