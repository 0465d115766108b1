-- params: now, stale_s
-- Newest reading of every facility meter within $stale_s, and the site's PUE from
-- power (facility / IT, labelled with the IT meter's ISO/IEC 30134-2 category).
WITH latest AS (
    SELECT * FROM facility_samples
    WHERE ts > $now - to_seconds($stale_s) AND ts <= $now
    QUALIFY row_number() OVER (PARTITION BY site, meter ORDER BY ts DESC) = 1
)
SELECT site,
       sum(power_w) FILTER (WHERE scope = 'facility') AS facility_w,
       sum(power_w) FILTER (WHERE scope = 'it')       AS it_w,
       sum(power_w) FILTER (WHERE scope = 'cooling')  AS cooling_w,
       min(pue_category) FILTER (WHERE scope = 'it')  AS pue_category,
       sum(power_w) FILTER (WHERE scope = 'facility') / nullif(sum(power_w) FILTER (WHERE scope = 'it'), 0) AS pue,
       max(ts) AS ts
FROM latest
GROUP BY site
ORDER BY site
