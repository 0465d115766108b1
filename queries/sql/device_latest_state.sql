-- Each device's newest XID and throttle mask, to prime the event tracker on start.
SELECT device_id, xid_last, throttle_reasons
FROM device_samples
WHERE ts > (SELECT max(ts) FROM device_samples) - INTERVAL 1 HOUR
QUALIFY row_number() OVER (PARTITION BY device_id ORDER BY ts DESC) = 1
