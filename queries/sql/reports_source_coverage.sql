-- params: first_hour, end_ts, now
-- Data coverage per source over the UTC hours whose start lies in [$first_hour, $end_ts) and
-- before $now: hours in the range, hours with at least one successful scrape of the source,
-- hours with no data (no successful scrape of any of its targets), failed scrapes, and the hours
-- in which some target failed every attempt (an exporter outage), from collector_runs.
WITH bounds AS (
    SELECT $first_hour::TIMESTAMPTZ AS lo, least($end_ts::TIMESTAMPTZ, $now::TIMESTAMPTZ) AS hi
),
runs AS (
    SELECT r.source, r.target, bucket_1h(r.started_at) AS hour, bool_or(r.ok) AS any_ok,
           count(*) FILTER (WHERE NOT r.ok) AS failed
    FROM collector_runs r, bounds b
    WHERE r.started_at >= b.lo AND r.started_at < b.hi
    GROUP BY ALL
),
per_source AS (
    SELECT source, count(DISTINCT hour) FILTER (WHERE any_ok) AS hours_with_data,
           sum(failed) AS failed_scrapes, count(DISTINCT target) AS targets,
           count(DISTINCT hour) FILTER (WHERE NOT any_ok) AS outage_hours
    FROM runs GROUP BY source
)
SELECT p.source, p.targets,
       greatest(ceil((epoch(b.hi) - epoch(b.lo)) / 3600), 0) AS hours,
       p.hours_with_data,
       greatest(ceil((epoch(b.hi) - epoch(b.lo)) / 3600), 0) - p.hours_with_data AS no_data_hours,
       p.outage_hours, p.failed_scrapes
FROM per_source p, bounds b
ORDER BY no_data_hours DESC, p.source
