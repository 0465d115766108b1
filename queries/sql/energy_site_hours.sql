-- params: lo, hi, site, subs, listed
-- Per site, series and UTC hour in [$lo, $hi) from energy_meter_15m: kWh at site level and
-- whether the hour is covered (ok), with the largest covered quarter's mean power (peak_kw).
-- A series is facility, cooling or it<category> (it1, it2, it3). Site level leaves out the
-- sub-meters ($subs: STRUCT(site, meter)[]). A quarter is covered when every meter of the
-- series that reported covered it (to within a second) and every listed meter of the series
-- ($listed: STRUCT(site, meter, series)[]) is among them; an hour when its four quarters are.
-- $site NULL: every site. NULL lists: none.
WITH q AS (
    SELECT quarter, site, meter,
           CASE WHEN scope = 'it' AND pue_category IS NOT NULL THEN 'it' || CAST(pue_category AS VARCHAR)
                WHEN scope IN ('facility', 'cooling') THEN scope END AS series,
           kwh, covered_s >= 899.0 AS complete
    FROM energy_meter_15m
    WHERE quarter >= $lo::TIMESTAMPTZ AND quarter < $hi::TIMESTAMPTZ AND ($site IS NULL OR site = $site)
),
subs AS (SELECT s.site, s.meter FROM (SELECT unnest(coalesce($subs, [])) AS s)),
listed AS (SELECT l.site, l.meter, l.series FROM (SELECT unnest(coalesce($listed, [])) AS l)),
expected AS (SELECT site, series, count(*) AS n FROM listed GROUP BY ALL),
kept AS (
    SELECT q.*, l.meter IS NOT NULL AS is_listed
    FROM q LEFT JOIN listed l ON l.site = q.site AND l.meter = q.meter AND l.series = q.series
    WHERE q.series IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM subs WHERE subs.site = q.site AND subs.meter = q.meter)
),
per_quarter AS (
    SELECT site, series, quarter, sum(kwh) AS kwh, count(*) AS n,
           count(*) FILTER (WHERE complete) AS n_complete,
           count(*) FILTER (WHERE complete AND is_listed) AS n_listed
    FROM kept GROUP BY ALL
),
judged AS (
    SELECT p.*, p.n_complete = p.n AND p.n_listed >= coalesce(e.n, 0) AS ok
    FROM per_quarter p LEFT JOIN expected e ON e.site = p.site AND e.series = p.series
)
SELECT site, series, bucket_1h(quarter) AS hour, sum(kwh) AS kwh,
       count(*) FILTER (WHERE ok) >= 4 AS ok, max(kwh * 4.0) FILTER (WHERE ok) AS peak_kw
FROM judged
GROUP BY ALL
ORDER BY site, series, hour
