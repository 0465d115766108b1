-- params: now, stale_s, hours, cluster
-- The NOC's problems list, newest first: device events of the last $hours hours
-- (XID, thermal throttling, lost GPUs), exporters whose latest scrape failed,
-- and targets with no scrape attempt within $stale_s (collector stopped). detail_msg: the
-- failed run's message keys (i18n.dumps), so the page shows it in the reader's language.
-- $cluster NULL: all clusters.
WITH runs AS (
    SELECT r.*, t.site, t.cluster, t.host
    FROM collector_runs r JOIN targets t USING (owner_site, owner_instance, target)   -- current targets only
    WHERE r.started_at > $now - to_hours(CAST($hours AS BIGINT)) AND r.started_at <= $now
),
per_target AS (
    SELECT owner_site, owner_instance, target, any_value(site) AS site, any_value(cluster) AS cluster, any_value(host) AS host,
           max(started_at) AS last_at,
           arg_max(ok, started_at) AS last_was_ok,
           arg_max(error, started_at) AS last_error,
           arg_max(error_msg, started_at) AS last_error_msg,
           max(started_at) FILTER (WHERE ok) AS last_ok
    FROM runs GROUP BY owner_site, owner_instance, target
),
down AS (
    SELECT
        (SELECT min(r.started_at) FROM runs r
          WHERE r.target = p.target AND r.owner_site = p.owner_site AND r.owner_instance = p.owner_instance
            AND NOT r.ok AND r.started_at > coalesce(p.last_ok, TIMESTAMPTZ '1970-01-01')) AS ts,
        'exporter_down' AS kind, p.site, p.cluster, p.host, CAST(NULL AS INTEGER) AS gpu_index,
        CAST(NULL AS VARCHAR) AS device_id, CAST(NULL AS BIGINT) AS code, p.last_error AS detail,
        p.target, TRUE AS ongoing, p.last_error_msg AS detail_msg
    FROM per_target p WHERE NOT p.last_was_ok
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
