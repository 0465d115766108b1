-- params: lo, hi, site
-- The meters' quarter-hour energy (energy_meter_15m) in [$lo, $hi), for one site or all ($site NULL).
SELECT quarter, site, meter, scope, pue_category, kwh, covered_s, samples, register_s, resets
FROM energy_meter_15m
WHERE quarter >= $lo::TIMESTAMPTZ AND quarter < $hi::TIMESTAMPTZ AND ($site IS NULL OR site = $site)
ORDER BY site, meter, quarter
