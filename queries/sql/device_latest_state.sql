-- params: none
-- Each device's newest XID, throttle mask, energy counter, health and ECC state, to
-- prime the event tracker on start (no repeated XID/ECC/unhealthy events, energy
-- deltas continue across restarts).
SELECT device_id, xid_last, throttle_reasons, energy_j, health,
       ecc_dbe_volatile, row_remap_pending, row_remap_failed
FROM device_samples
WHERE ts > (SELECT max(ts) FROM device_samples) - INTERVAL 1 DAY
QUALIFY row_number() OVER (PARTITION BY device_id ORDER BY ts DESC) = 1
