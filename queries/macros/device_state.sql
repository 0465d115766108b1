-- Macros the queries share. Not migrations: the writer re-creates every file in
-- queries/macros/ each time it opens the database (after the migrations), so a macro
-- has one definition, changed in place, and the schema history stays in migrations/.
--
-- device_state(at_ts, stale_s): every known device's state at `at_ts`, from its
-- newest sample in the hour before and its endpoint's scrape history.
--   lost     its endpoint answered a cycle after the last one that carried the device
--            (direct targets: a successful collector_runs row whose sample_ts, the
--            oldest sample time of that scrape, is newer than the device's newest
--            sample; an exporter stamping its own times, e.g. npu-exporter's cache
--            times, cannot fake it. Through Prometheus: its other devices were seen
--            more than stale_s after it). devices.last_seen plays no part: the writer
--            refreshes it only every few minutes (see queries/store.py).
--   no_data  no sample within stale_s (the endpoint is down or slow)
--   unhealthy the exporter reports the device unhealthy (health = 0)
--   xid      the newest sample carries a non-zero XID
--   thermal  the newest sample's clocks-event mask has a thermal bit (0x08|0x20|0x40)
--   ok       otherwise
--
-- The newest sample is found in two steps, so a refresh at 10,000 GPUs reads minutes, not
-- the hour (2.4 M rows at 15 s): `recent` is each device's newest sample time within
-- stale_s (every reporting device); only the devices it lacks are looked up over the rest of
-- the hour (`older`: none when the whole floor reports, so that scan has nothing to find),
-- and the full rows are fetched for those (device, time) keys alone. (device_id, ts) is
-- device_samples' natural key, so each key is one row: the same rows as the newest of the hour.
CREATE OR REPLACE MACRO device_state(at_ts, stale_s) AS TABLE
WITH recent AS (
    SELECT device_id, max(ts) AS ts FROM device_samples
    WHERE ts > at_ts - to_seconds(least(stale_s, 3600)) AND ts <= at_ts
    GROUP BY device_id
),
unseen AS (
    SELECT device_id FROM devices WHERE device_id NOT IN (SELECT device_id FROM recent)
),
older AS (
    SELECT device_id, max(ts) AS ts FROM device_samples
    WHERE ts > at_ts - INTERVAL 1 HOUR AND ts <= at_ts - to_seconds(least(stale_s, 3600))
      AND device_id IN (SELECT device_id FROM unseen)
    GROUP BY device_id
),
latest AS (
    SELECT s.* FROM device_samples s JOIN recent n USING (device_id, ts)
    WHERE s.ts > at_ts - to_seconds(least(stale_s, 3600)) AND s.ts <= at_ts
    UNION ALL
    SELECT s.* FROM device_samples s JOIN older o USING (device_id, ts)
    WHERE s.ts > at_ts - INTERVAL 1 HOUR AND s.ts <= at_ts - to_seconds(least(stale_s, 3600))
),
endpoint AS (
    SELECT target, max(coalesce(sample_ts, started_at)) FILTER (WHERE ok) AS last_ok
    FROM collector_runs
    WHERE started_at > at_ts - INTERVAL 1 HOUR AND started_at <= at_ts
      -- only runs whose samples `latest` can see: an exporter stamping ahead of our clock
      -- must not make its own devices look left behind
      AND coalesce(sample_ts, started_at) <= at_ts
    GROUP BY target
),
carried AS (
    SELECT d.target, max(l.ts) AS last_ts
    FROM devices d JOIN latest l USING (device_id)
    GROUP BY d.target
)
SELECT
    d.device_id, d.host, d.cluster, d.site, d.gpu_index, d.model, d.catalogue_model,
    d.peak_dense_tflops, d.mig_parent, d.mig_profile,
    coalesce(d.mig_parent, d.device_id) AS physical_id,
    l.ts, l.util_pct, l.sm_active, l.tensor_active, l.mem_used_mib, d.mem_total_mib,
    l.power_w, l.temp_c, l.throttle_reasons, l.xid_last, l.health, l.energy_j,
    l.tenant, l.namespace, l.pod, d.vendor,
    CASE
        WHEN e.last_ok IS NOT NULL AND e.last_ok > coalesce(l.ts, d.first_seen) THEN 'lost'
        WHEN e.last_ok IS NULL AND c.last_ts > l.ts + to_seconds(stale_s) THEN 'lost'
        WHEN l.ts IS NULL OR l.ts < at_ts - to_seconds(stale_s) THEN 'no_data'
        WHEN l.health = 0 THEN 'unhealthy'
        WHEN coalesce(l.xid_last, 0) <> 0 THEN 'xid'
        WHEN (coalesce(l.throttle_reasons, 0) & 104) <> 0 THEN 'thermal'
        ELSE 'ok'
    END AS state,
    (l.pod IS NOT NULL OR l.tenant IS NOT NULL OR l.job IS NOT NULL) AS allocated
FROM devices d
LEFT JOIN latest l USING (device_id)
LEFT JOIN endpoint e ON e.target = d.target
LEFT JOIN carried c ON c.target = d.target;
