-- params: none
-- The newest stored sample of each source (device and facility rows), so a
-- restarted collector can ask its source for everything after it.
SELECT source, max(ts) AS newest
FROM (SELECT source, ts FROM device_samples UNION ALL SELECT source, ts FROM facility_samples)
GROUP BY source
