-- params: now, stale_s
-- The newest power reading of every facility meter within $stale_s before $now: the live page's
-- power and PUE (queries/energy.py live_power sums them by the meter hierarchy and the site's
-- IT category, so that a UPS-output and PDU-output meter are never added together).
SELECT site, meter, scope, pue_category, power_w, ts
FROM facility_samples
WHERE ts > $now::TIMESTAMPTZ - to_seconds($stale_s::DOUBLE) AND ts <= $now::TIMESTAMPTZ AND power_w IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY site, meter ORDER BY ts DESC) = 1
ORDER BY site, meter
