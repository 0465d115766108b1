-- params: none
-- Clusters with data, for the cluster filter.
SELECT cluster, site, count(*) AS devices
FROM devices
GROUP BY cluster, site
ORDER BY cluster
