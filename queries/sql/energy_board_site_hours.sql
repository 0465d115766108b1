-- params: first_hour, end_ts, site
-- Board energy (J, MIG folded) and observed GPU-seconds per UTC hour, site and cluster in
-- [$first_hour, $end_ts) from rollup_group_1h: what cluster and tenant energy is apportioned by
-- and what an IT estimate builds on. $site NULL: every site.
SELECT bucket AS hour, site, cluster, sum(energy_j) AS energy_j, sum(observed_s) AS observed_s
FROM rollup_group_1h
WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ AND ($site IS NULL OR site = $site)
GROUP BY ALL
ORDER BY hour, site, cluster
