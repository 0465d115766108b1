-- params: before
-- Readings in facility_samples before $before (a quarter-hour boundary) and the readings the
-- energy tier counted in the quarters before it: when they differ, readings arrived (a history
-- back-fill or import) that the energy job's recent check does not look at.
SELECT (SELECT count(*) FROM facility_samples
        WHERE ts < $before::TIMESTAMPTZ AND (energy_kwh IS NOT NULL OR power_w IS NOT NULL)) AS raw,
       (SELECT coalesce(sum(samples), 0) FROM energy_meter_15m WHERE quarter < $before::TIMESTAMPTZ) AS built
