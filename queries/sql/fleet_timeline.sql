-- Fleet utilisation and power per scrape over the last $minutes minutes.
-- $now, $minutes, $cluster (NULL = all)
SELECT ts, avg(util_pct) AS mean_util_pct, sum(power_w) AS power_w,
       sum(tensor_active * d.peak_dense_tflops) / 1000.0 AS delivered_pflops,
       count(*) AS devices
FROM device_samples s JOIN devices d USING (device_id)
WHERE s.ts > $now - to_minutes(CAST($minutes AS BIGINT)) AND s.ts <= $now
  AND ($cluster IS NULL OR s.cluster = $cluster)
GROUP BY ts
ORDER BY ts
