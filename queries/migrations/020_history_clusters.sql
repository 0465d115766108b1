-- 020: rollup_cluster_1h (docs/history.md "Tiers"): per site, cluster and model per UTC hour, the
-- hourly group tier summed over its tenants (_unallocated included): the ladder of the fleet, a
-- site, a cluster or a model without a tenant filter reads it. Built with the group tiers, from
-- them, as rollup_tenant_1h (019); a store with history gets it filled by the rollup job's next
-- run (queries/rollup.py fill_tenants, whose kv mark changed with this migration).

CREATE TABLE rollup_cluster_1h (
    bucket             TIMESTAMPTZ NOT NULL,
    site               VARCHAR,
    cluster            VARCHAR,
    model              VARCHAR,
    samples            BIGINT NOT NULL,
    observed_s         DOUBLE NOT NULL,
    available_s        DOUBLE NOT NULL,
    allocated_s        DOUBLE NOT NULL,
    busy_s             DOUBLE NOT NULL,
    useful_s           DOUBLE NOT NULL,
    useful_basis       VARCHAR,
    alloc_idle_s       DOUBLE NOT NULL,
    util_s             DOUBLE NOT NULL,
    util_obs_s         DOUBLE NOT NULL,
    tflop_s            DOUBLE NOT NULL,
    energy_j           DOUBLE NOT NULL
);
