-- params: now
-- Every scrape target with its newest attempt: time, duration, rows, result and
-- the last error in words (last_error English, last_error_msg its message keys as
-- i18n.dumps JSON; NULL for runs stored before messages were kept as keys); plus the
-- last success and failures in the last hour. Targets are each owner's own: runs join
-- them by owner and URL.
WITH recent AS (
    SELECT * FROM collector_runs
    WHERE started_at > $now - INTERVAL 1 DAY AND started_at <= $now
),
agg AS (
    SELECT owner_site, owner_instance, target,
           max(started_at) AS last_scrape,
           arg_max(duration_s, started_at) AS duration_s,
           arg_max(rows, started_at) AS rows,
           arg_max(ok, started_at) AS ok,
           arg_max(lines_skipped, started_at) AS lines_skipped,
           max(started_at) FILTER (WHERE ok) AS last_ok,
           arg_max(error, started_at) FILTER (WHERE error IS NOT NULL) AS last_error,
           arg_max_null(error_msg, started_at) FILTER (WHERE error IS NOT NULL) AS last_error_msg,
           max(started_at) FILTER (WHERE error IS NOT NULL) AS last_error_at,
           count(*) FILTER (WHERE NOT ok AND started_at > $now - INTERVAL 1 HOUR) AS failures_1h,
           count(*) FILTER (WHERE started_at > $now - INTERVAL 1 HOUR) AS attempts_1h
    FROM recent GROUP BY owner_site, owner_instance, target
)
SELECT t.source, t.kind, t.site, t.cluster, t.host, t.target,
       a.last_scrape, a.duration_s, a.rows, a.ok, a.lines_skipped, a.last_ok,
       a.last_error, a.last_error_at, coalesce(a.failures_1h, 0) AS failures_1h,
       coalesce(a.attempts_1h, 0) AS attempts_1h, a.last_error_msg, t.owner_site, t.owner_instance
FROM targets t LEFT JOIN agg a USING (owner_site, owner_instance, target)
ORDER BY a.ok NULLS FIRST, t.kind, t.cluster, t.host, t.target
