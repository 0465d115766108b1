-- params: now, minutes, cluster
-- Fleet utilisation and power per scrape over the last $minutes minutes.
-- $cluster NULL: all clusters.
-- Power counts each board once (MIG instances repeat their GPU's board power).
WITH per_board AS (
    SELECT s.ts, coalesce(d.mig_parent, s.device_id) AS board,
           avg(s.util_pct) AS util_pct, max(s.power_w) AS power_w,
           sum(s.tensor_active * d.peak_dense_tflops) AS tflops
    FROM device_samples s JOIN devices d USING (device_id)
    WHERE s.ts > $now - to_minutes(CAST($minutes AS BIGINT)) AND s.ts <= $now
      AND ($cluster IS NULL OR s.cluster = $cluster)
    GROUP BY ALL
)
SELECT ts, avg(util_pct) AS mean_util_pct, sum(power_w) AS power_w,
       sum(tflops) / 1000.0 AS delivered_pflops, count(*) AS boards
FROM per_board
GROUP BY ts
ORDER BY ts
