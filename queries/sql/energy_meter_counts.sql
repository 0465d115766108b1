-- params: lo, hi
-- Readings per meter and quarter hour in facility_samples and in energy_meter_15m, where they
-- differ, from $lo to $hi: the quarters the energy job has to (re)build (new, late or changed
-- readings; the quarter still filling). A quarter whose readings are gone (never deleted
-- today) is left as built.
WITH raw AS (
    SELECT site, meter, to_timestamp(floor(epoch(ts) / 900) * 900) AS quarter, count(*) AS n
    FROM facility_samples
    WHERE ts >= $lo::TIMESTAMPTZ AND ts < $hi::TIMESTAMPTZ AND (energy_kwh IS NOT NULL OR power_w IS NOT NULL)
    GROUP BY ALL
)
SELECT raw.quarter, raw.site, raw.meter, raw.n, b.samples
FROM raw LEFT JOIN energy_meter_15m b USING (site, meter, quarter)
WHERE b.samples IS NULL OR b.samples <> raw.n
ORDER BY raw.quarter
