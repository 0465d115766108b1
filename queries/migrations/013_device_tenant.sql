-- 013: rollup_device_tenant_1h (docs/history.md "Tiers"): per device and tenant per UTC hour, the
-- hourly device tier's sums attributed as the group tiers are (leases, rules, namespaces), so the
-- reclaim list's devices and a tenant's drill-down are one GROUP BY, not an attribution per page
-- view. Sums as the device tier counts them (busy_s, useful_s and alloc_idle_s whether held or
-- not; the tenant says whether it was). A store migrated with history in its device tiers gets
-- the tier filled by the rollup job's next run (queries/rollup.py attribute_devices: attribution
-- needs the config, which a migration does not have).

CREATE TABLE rollup_device_tenant_1h (
    bucket             TIMESTAMPTZ NOT NULL,
    device_id          VARCHAR NOT NULL,
    tenant             VARCHAR NOT NULL,
    samples            BIGINT NOT NULL,
    observed_s         DOUBLE NOT NULL,
    available_s        DOUBLE NOT NULL,
    allocated_s        DOUBLE NOT NULL,
    busy_s             DOUBLE NOT NULL,
    useful_s           DOUBLE NOT NULL,
    alloc_idle_s       DOUBLE NOT NULL,
    util_s             DOUBLE NOT NULL,
    util_obs_s         DOUBLE NOT NULL,
    tflop_s            DOUBLE NOT NULL,
    energy_j           DOUBLE NOT NULL
);
