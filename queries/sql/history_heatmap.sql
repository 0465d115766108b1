-- params: first_hour, end_ts, now, tz, site, cluster, model, tenant
-- Utilisation by weekday (ISO: 1 = Monday) and hour of day in $tz, from rollup_group_1h over
-- the UTC hours whose start lies in [$first_hour, $end_ts) and before $now: util_pct per cell
-- (queries/macros/measures.sql). Filters NULL: all.
SELECT isodow(timezone($tz, bucket)) AS weekday, hour(timezone($tz, bucket)) AS hour_of_day,
       util_pct(sum(util_s), sum(util_obs_s)) AS util_pct, sum(observed_s) / 3600 AS observed_gpu_hours
FROM rollup_group_1h
WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ AND bucket < $now::TIMESTAMPTZ
  AND ($site IS NULL OR site = $site) AND ($cluster IS NULL OR cluster = $cluster)
  AND ($model IS NULL OR model = $model) AND ($tenant IS NULL OR tenant = $tenant)
GROUP BY ALL
ORDER BY weekday, hour_of_day
