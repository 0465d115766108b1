-- What a device_state state counts as on the fleet figures (one definition for every query):
--   healthy  working: ok, or thermal (throttled, still computing)
--   faulted  needs a person: an XID error, fell off the bus (lost), or unhealthy by its exporter
--   no_data and anything else: neither
CREATE OR REPLACE MACRO state_healthy(state) AS state IN ('ok', 'thermal');
CREATE OR REPLACE MACRO state_faulted(state) AS state IN ('xid', 'lost', 'unhealthy');
