-- params: now
-- Each owner's jobs: the newest run of every job up to $now (newest = TRUE), plus every
-- other failed run in the 24 hours before $now (newest = FALSE), newest first per job.
-- Each row also carries its job's last success, runs and failures in those 24 hours.
WITH recent AS (
    SELECT * FROM job_runs WHERE started_at <= $now
),
per_job AS (
    SELECT owner_site, owner_instance, job,
           max(started_at) AS last_run,
           max(started_at) FILTER (WHERE ok) AS last_ok,
           count(*) FILTER (WHERE started_at > $now - INTERVAL 1 DAY) AS runs_24h,
           count(*) FILTER (WHERE NOT ok AND started_at > $now - INTERVAL 1 DAY) AS failures_24h
    FROM recent GROUP BY owner_site, owner_instance, job
)
SELECT r.owner_site, r.owner_instance, r.job, r.started_at, r.duration_s, r.ok, r.rows,
       r.error, r.error_msg, r.detail, r.started_at = p.last_run AS newest,
       p.last_ok, p.runs_24h, p.failures_24h
FROM recent r JOIN per_job p USING (owner_site, owner_instance, job)
WHERE r.started_at = p.last_run
   OR (NOT r.ok AND r.started_at > $now - INTERVAL 1 DAY)
ORDER BY r.owner_site, r.owner_instance, r.job, r.started_at DESC
