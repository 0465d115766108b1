-- params: first_hour, end_ts, site, cluster, tenant
-- Board energy (rollup_group_1h energy_j: once per physical board, MIG instances folded) and
-- observed GPU-seconds per UTC hour, site, cluster and tenant in [$first_hour, $end_ts): what
-- the energy of a cluster or tenant is apportioned by (queries/energy.py) and what an IT
-- estimate adds its per-node overhead to. Filters NULL: all.
SELECT bucket AS hour, site, cluster, tenant, sum(energy_j) AS energy_j, sum(observed_s) AS observed_s
FROM rollup_group_1h
WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ
  AND ($site IS NULL OR site = $site) AND ($cluster IS NULL OR cluster = $cluster)
  AND ($tenant IS NULL OR tenant = $tenant)
GROUP BY ALL
ORDER BY hour, site, cluster, tenant
