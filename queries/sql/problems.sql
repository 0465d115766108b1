-- params: now, stale_s, hours, cluster
-- The NOC's problems list, newest first: device events of the last $hours hours
-- (XID, thermal throttling, lost GPUs), exporters whose latest scrape failed,
-- and targets with no scrape attempt within $stale_s (collector stopped). detail_msg: the
-- failed run's message keys (i18n.dumps), so the page shows it in the reader's language.
-- $cluster NULL: all clusters.
-- Each target's newest run is looked for in the last $stale_s first and over the whole $hours
-- only for targets not scraped since; the newest successful run and the first failure since
-- are looked up only for targets whose newest run failed. A day of collector_runs at 1,250
-- targets x 15 s is 7.2 M rows, which a scan per refresh cannot afford.
-- (owner_site, owner_instance, target, started_at) is collector_runs' natural key.
WITH recent AS (
    SELECT owner_site, owner_instance, target, max(started_at) AS last_at
    FROM collector_runs
    WHERE started_at > greatest($now - to_seconds($stale_s), $now - to_hours(CAST($hours AS BIGINT)))
      AND started_at <= $now
    GROUP BY owner_site, owner_instance, target
),
older AS (
    SELECT r.owner_site, r.owner_instance, r.target, max(r.started_at) AS last_at
    FROM collector_runs r
    WHERE r.started_at > $now - to_hours(CAST($hours AS BIGINT))
      AND r.started_at <= greatest($now - to_seconds($stale_s), $now - to_hours(CAST($hours AS BIGINT)))
      AND (r.owner_site, r.owner_instance, r.target) IN (
          SELECT (t.owner_site, t.owner_instance, t.target) FROM targets t
          ANTI JOIN recent n USING (owner_site, owner_instance, target))
    GROUP BY r.owner_site, r.owner_instance, r.target
),
newest AS (
    SELECT r.owner_site, r.owner_instance, r.target, r.started_at AS last_at, r.ok AS last_was_ok,
           r.error AS last_error, r.error_msg AS last_error_msg
    FROM collector_runs r JOIN recent n
      ON r.owner_site = n.owner_site AND r.owner_instance = n.owner_instance AND r.target = n.target
     AND r.started_at = n.last_at
    WHERE r.started_at > greatest($now - to_seconds($stale_s), $now - to_hours(CAST($hours AS BIGINT)))
      AND r.started_at <= $now
    UNION ALL
    SELECT r.owner_site, r.owner_instance, r.target, r.started_at, r.ok, r.error, r.error_msg
    FROM collector_runs r JOIN older n
      ON r.owner_site = n.owner_site AND r.owner_instance = n.owner_instance AND r.target = n.target
     AND r.started_at = n.last_at
    WHERE r.started_at > $now - to_hours(CAST($hours AS BIGINT)) AND r.started_at <= $now
),
per_target AS (                         -- current targets only, as before
    SELECT n.*, t.site, t.cluster, t.host
    FROM newest n JOIN targets t USING (owner_site, owner_instance, target)
),
failing AS (
    SELECT r.owner_site, r.owner_instance, r.target, r.started_at, r.ok
    FROM collector_runs r SEMI JOIN (SELECT * FROM per_target WHERE NOT last_was_ok) p
      USING (owner_site, owner_instance, target)
    WHERE r.started_at > $now - to_hours(CAST($hours AS BIGINT)) AND r.started_at <= $now
),
last_ok AS (
    SELECT owner_site, owner_instance, target, max(started_at) FILTER (WHERE ok) AS last_ok
    FROM failing GROUP BY owner_site, owner_instance, target
),
down AS (
    SELECT
        (SELECT min(r.started_at) FROM failing r
          WHERE r.target = p.target AND r.owner_site = p.owner_site AND r.owner_instance = p.owner_instance
            AND NOT r.ok AND r.started_at > coalesce(o.last_ok, TIMESTAMPTZ '1970-01-01')) AS ts,
        'exporter_down' AS kind, p.site, p.cluster, p.host, CAST(NULL AS INTEGER) AS gpu_index,
        CAST(NULL AS VARCHAR) AS device_id, CAST(NULL AS BIGINT) AS code, p.last_error AS detail,
        p.target, TRUE AS ongoing, p.last_error_msg AS detail_msg
    FROM per_target p JOIN last_ok o USING (owner_site, owner_instance, target)
    WHERE NOT p.last_was_ok
),
stale AS (
    SELECT t.registered_at AS ts, 'stale' AS kind, t.site, t.cluster, t.host, CAST(NULL AS INTEGER),
           CAST(NULL AS VARCHAR), CAST(NULL AS BIGINT),
           CAST(p.last_at AS VARCHAR) AS detail, t.target, TRUE, CAST(NULL AS VARCHAR)
    FROM targets t LEFT JOIN per_target p USING (owner_site, owner_instance, target)
    WHERE (p.last_at IS NULL AND t.registered_at < $now - to_seconds($stale_s))
       OR p.last_at < $now - to_seconds($stale_s)
),
current AS (SELECT device_id, state FROM device_state($now, $stale_s)),
events AS (
    SELECT e.ts, e.kind, e.site, e.cluster, e.host, e.gpu_index, e.device_id, e.code, e.detail,
           CAST(NULL AS VARCHAR) AS target,
           -- only a device's newest event of a kind can still be going on
           coalesce(c.state = e.kind, FALSE)
             AND row_number() OVER (PARTITION BY e.device_id, e.kind ORDER BY e.ts DESC) = 1 AS ongoing,
           CAST(NULL AS VARCHAR) AS detail_msg
    FROM device_events e LEFT JOIN current c USING (device_id)
    WHERE e.ts > $now - to_hours(CAST($hours AS BIGINT)) AND e.ts <= $now AND e.kind <> 'back'
)
SELECT * FROM (
    SELECT * FROM events
    UNION ALL SELECT * FROM down
    UNION ALL SELECT * FROM stale
)
WHERE $cluster IS NULL OR cluster = $cluster OR cluster IS NULL
ORDER BY ongoing DESC, ts DESC
LIMIT 500
