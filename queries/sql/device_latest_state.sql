-- Each device's newest XID, throttle mask and energy counter, to prime the event
-- tracker on start (no repeated XID events, energy deltas continue across restarts).
SELECT device_id, xid_last, throttle_reasons, energy_j
FROM device_samples
WHERE ts > (SELECT max(ts) FROM device_samples) - INTERVAL 1 DAY
QUALIFY row_number() OVER (PARTITION BY device_id ORDER BY ts DESC) = 1
