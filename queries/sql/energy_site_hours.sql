-- params: lo, hi, now, site, subs, listed, nodes
-- Per site and UTC hour in [$lo, $hi) that ended by $now (every such hour, metered or not), from
-- energy_meter_15m and rollup_group_1h: for each series (facility, cooling, it1, it2, it3: IT
-- by ISO/IEC 30134-2 category) the site-level kWh, whether the hour is covered (<series>_ok)
-- and the largest covered quarter's mean power (<series>_peak_kw); the board energy (kWh, MIG
-- folded) and the node-hours observed (GPU-seconds / the cluster's GPUs per node, $nodes).
-- Site level leaves out the sub-meters ($subs: STRUCT(site, meter)[]). A quarter is covered
-- when every meter of the series that reported covered it (to within a second) and every
-- listed meter of the series ($listed: STRUCT(site, meter, series)[]) is among them; an hour
-- when its four quarters are. $site NULL: every site. NULL lists: none.
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
nodes AS (SELECT n.cluster, n.gpus_per_node FROM (SELECT unnest(coalesce($nodes, [])) AS n)),
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
),
series_hours AS (
    SELECT site, series, bucket_1h(quarter) AS hour, sum(kwh) AS kwh,
           count(*) FILTER (WHERE ok) >= 4 AS ok, max(kwh * 4.0) FILTER (WHERE ok) AS peak_kw
    FROM judged GROUP BY ALL
),
board AS (
    SELECT g.bucket AS hour, g.site, sum(g.energy_j) / 3.6e6 AS board_kwh,
           sum(g.observed_s / coalesce(n.gpus_per_node, 8)) / 3600.0 AS node_h
    FROM rollup_group_1h g LEFT JOIN nodes n ON n.cluster = g.cluster
    WHERE g.bucket >= $lo::TIMESTAMPTZ AND g.bucket < $hi::TIMESTAMPTZ AND ($site IS NULL OR g.site = $site)
    GROUP BY ALL
),
sites AS (SELECT DISTINCT site FROM series_hours UNION SELECT DISTINCT site FROM board),
grid AS (
    SELECT s.site, h AS hour
    FROM sites s, generate_series($lo::TIMESTAMPTZ, $hi::TIMESTAMPTZ, INTERVAL 1 HOUR) g(h)
    WHERE h < $hi::TIMESTAMPTZ AND h + INTERVAL 1 HOUR <= $now::TIMESTAMPTZ
)
SELECT grid.site, grid.hour,
       any_value(sh.kwh) FILTER (WHERE sh.series = 'facility') AS facility_kwh,
       coalesce(bool_or(sh.ok) FILTER (WHERE sh.series = 'facility'), false) AS facility_ok,
       any_value(sh.peak_kw) FILTER (WHERE sh.series = 'facility') AS facility_peak_kw,
       any_value(sh.kwh) FILTER (WHERE sh.series = 'cooling') AS cooling_kwh,
       coalesce(bool_or(sh.ok) FILTER (WHERE sh.series = 'cooling'), false) AS cooling_ok,
       any_value(sh.peak_kw) FILTER (WHERE sh.series = 'cooling') AS cooling_peak_kw,
       any_value(sh.kwh) FILTER (WHERE sh.series = 'it1') AS it1_kwh,
       coalesce(bool_or(sh.ok) FILTER (WHERE sh.series = 'it1'), false) AS it1_ok,
       any_value(sh.peak_kw) FILTER (WHERE sh.series = 'it1') AS it1_peak_kw,
       any_value(sh.kwh) FILTER (WHERE sh.series = 'it2') AS it2_kwh,
       coalesce(bool_or(sh.ok) FILTER (WHERE sh.series = 'it2'), false) AS it2_ok,
       any_value(sh.peak_kw) FILTER (WHERE sh.series = 'it2') AS it2_peak_kw,
       any_value(sh.kwh) FILTER (WHERE sh.series = 'it3') AS it3_kwh,
       coalesce(bool_or(sh.ok) FILTER (WHERE sh.series = 'it3'), false) AS it3_ok,
       any_value(sh.peak_kw) FILTER (WHERE sh.series = 'it3') AS it3_peak_kw,
       coalesce(any_value(b.board_kwh), 0.0) AS board_kwh, coalesce(any_value(b.node_h), 0.0) AS node_h
FROM grid
LEFT JOIN series_hours sh ON sh.site = grid.site AND sh.hour = grid.hour
LEFT JOIN board b ON b.site = grid.site AND b.hour = grid.hour
GROUP BY grid.site, grid.hour
ORDER BY grid.site, grid.hour
